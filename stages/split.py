"""DVC stage `split`: parse the raw dataset into data/split/<dataset>/manifest.csv."""

from reid.paths import raw_dir, split_dir
from reid.pipeline.split import split
from reid.stage_runner import stage_main

if __name__ == "__main__":
    stage_main(
        __doc__,
        lambda params, args: split(args.dataset, params.data[args.dataset],
                                   raw_dir(args.dataset), split_dir(args.dataset)),
    )
