"""DVC stages `train_resnet50`, `train_ibn`, `train_effnetv2`: one backbone on one dataset.

With `train.nproc` > 1 the stage starts itself again under torchrun, one process per GPU.
"""

import sys

from reid.pipeline.training import train_stage
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(
        __doc__,
        lambda params, args: train_stage(params, args.backbone, args.dataset, argv=sys.argv,
                                         progress=not args.quiet),
        with_backbone=True,
    )
