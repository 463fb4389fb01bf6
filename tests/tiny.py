"""The tiny generated-data params the end-to-end tests run the pipeline on."""

from __future__ import annotations

from pathlib import Path

import yaml


def tiny_params(path: Path, *, tracking: bool = True) -> None:
    """Shrink the params file at `path` in place: a few ids, 1 epoch, no loader workers."""
    params = yaml.safe_load(path.read_text())
    params["data"]["market1501"]["generated"].update(
        num_train_ids=8, num_test_ids=6, num_distractors=4, num_junk=2, images_per_camera=[1, 2]
    )
    params["data"]["cuhk03"]["generated"].update(num_pairs=1, ids_per_pair=12, num_test_ids=6,
                                                 images_per_view=[2, 3])
    params["input"].update(height=64, width=32)
    params["train"].update(epochs=1, batch_size=16, num_instances=4, warmup_epochs=1,
                           milestones=[1], num_workers=0)
    params["eval"].update(batch_size=64)
    params["report"].update(num_queries=2, top_k=5)
    params["tracking"]["enabled"] = tracking
    path.write_text(yaml.safe_dump(params, sort_keys=False))
