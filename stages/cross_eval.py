"""DVC stage `cross_eval`: the models trained on one dataset scored on another's test set."""

from reid.pipeline.cross_eval import cross_eval
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: cross_eval(params, args.train, args.test),
               with_dataset=False, with_pair=True)
