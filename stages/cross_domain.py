"""DVC stage `cross_domain`: the cross-dataset matrix (metrics JSON, Markdown and CSV tables)."""

from reid.cli import stage_main
from reid.pipeline.cross_domain import cross_domain

if __name__ == "__main__":
    stage_main(__doc__, lambda params, args: cross_domain(params), with_dataset=False)
