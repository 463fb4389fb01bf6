"""DVC stage `cross_domain`: the cross-dataset matrix (metrics JSON, Markdown and CSV tables)."""

from reid.pipeline.cross_domain import cross_domain
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: cross_domain(params), with_dataset=False)
