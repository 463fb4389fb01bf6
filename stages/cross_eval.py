"""DVC stage `cross_eval`: the models trained on one dataset scored on another's test set."""

from reid.cli import stage_main
from reid.pipeline.cross_eval import cross_eval

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: cross_eval(params, args.train, args.test),
               with_dataset=False, with_pair=True)
