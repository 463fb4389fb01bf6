"""DVC stages `train_resnet50`, `train_ibn`, `train_effnetv2`: one backbone on one dataset."""

from reid.cli import stage_main
from reid.pipeline.training import train_backbone

if __name__ == "__main__":
    stage_main(
        __doc__,
        lambda params, args: train_backbone(params, args.backbone, args.dataset,
                                            progress=not args.quiet),
        with_backbone=True,
    )
