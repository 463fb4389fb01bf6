"""DVC stage `evaluate`: mAP / CMC / mINP per backbone, CMC plots, metrics JSON."""

from reid.pipeline.evaluation import evaluate
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: evaluate(params, args.dataset))
