"""DVC stage `evaluate`: mAP / CMC / mINP per backbone, CMC plots, metrics JSON."""

from reid.cli import stage_main
from reid.pipeline.evaluation import evaluate

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: evaluate(params, args.dataset))
