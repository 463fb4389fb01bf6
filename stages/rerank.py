"""DVC stage `rerank`: k-reciprocal re-ranking, the results table, ranked-list pictures."""

from reid.pipeline.evaluation import rerank
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: rerank(params, args.dataset))
