"""DVC stage `rerank`: k-reciprocal re-ranking, the results table, ranked-list pictures."""

from reid.cli import stage_main
from reid.pipeline.evaluation import rerank

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: rerank(params, args.dataset))
