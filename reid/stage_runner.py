"""The DVC stage runner (`stages/*.py` call `stage_main`): logging, params loading and clean
error exits. The `reid` command a researcher runs lives in `reid/commands/`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from reid.errors import InputError, one_line
from reid.params import BACKBONES, Params, load_params


def stage_main(
    description: str,
    body: Callable[[Params, argparse.Namespace], object],
    *,
    with_dataset: bool = True,
    with_backbone: bool = False,
    with_pair: bool = False,
) -> None:
    """Parse `--params/--dataset/--backbone` (`--train/--test` with `with_pair`: a model's
    dataset and a test dataset), load the params and run `body`.

    Expected failures (`InputError`: bad input or params; a missing input file) print one
    clear line and exit with status 1; Ctrl-C prints one line and exits 130; anything else
    keeps its traceback.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file")
    if with_dataset:
        parser.add_argument("--dataset", required=True, help="dataset name from params.datasets")
    if with_backbone:
        parser.add_argument("--backbone", required=True, choices=BACKBONES)
    if with_pair:
        parser.add_argument("--train", required=True, help="the models' training dataset")
        parser.add_argument("--test", required=True, help="the dataset they are tested on")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        params = load_params(args.params)
        flags = (["dataset"] if with_dataset else []) + (["train", "test"] if with_pair else [])
        for flag in flags:
            if getattr(args, flag) not in params.datasets:
                raise InputError(f"--{flag} {getattr(args, flag)!r} is not in params datasets "
                                 f"{params.datasets}")
        body(params, args)
    except (InputError, FileNotFoundError) as err:
        # Expected: bad input or a missing upstream output. One line; everything else (a bug,
        # CUDA out of memory) propagates with its traceback.
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted (outputs written so far are complete; a train stage resumes from "
              "its last checkpoint)", file=sys.stderr)
        sys.exit(130)
