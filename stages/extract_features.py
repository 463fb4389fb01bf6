"""DVC stage `extract_features`: embed query and gallery with every trained backbone."""

from reid.pipeline.features import extract
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: extract(params, args.dataset))
