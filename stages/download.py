"""DVC stage `download`: bring one dataset into data/raw/<dataset>/ in its original layout."""

from reid.paths import raw_dir
from reid.pipeline.download import download
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(
        __doc__,
        lambda params, args: download(args.dataset, params.data[args.dataset],
                                      raw_dir(args.dataset)),
    )
