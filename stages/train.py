"""DVC stages `train_resnet50`, `train_ibn`, `train_effnetv2`: one backbone on one dataset.

With `train.nproc` > 1 the stage starts itself again under torchrun, one process per GPU.
"""

import sys

from reid.cli import stage_main
from reid.distributed import launched_by_torchrun, relaunch
from reid.pipeline.training import train_backbone


def main(params, args) -> None:
    if params.train.nproc > 1 and not launched_by_torchrun():
        status = relaunch(params.train.nproc, sys.argv)
        if status:
            raise RuntimeError(f"torchrun with {params.train.nproc} processes failed "
                               f"(exit status {status})")
        return
    train_backbone(params, args.backbone, args.dataset, progress=not args.quiet)


if __name__ == "__main__":
    stage_main(__doc__, main, with_backbone=True)
