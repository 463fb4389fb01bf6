"""The Market-1501 layout parser on hand-made folders, generated data and the real mini set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid.data.generated import generate_market1501
from reid.data.manifest import summarize
from reid.data.market1501 import find_market_root, parse_market_layout

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NUM_TRAIN, NUM_TEST, NUM_DISTRACTORS, NUM_JUNK = 12, 10, 7, 5


def _touch_layout(root: Path, files: dict[str, list[str]]) -> Path:
    """A Market-style layout of empty files (the parser reads names only)."""
    for folder, names in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).touch()
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated Market set two wrapper folders below `raw`, as an archive unpacks."""
    raw = tmp_path_factory.mktemp("raw")
    generate_market1501(
        raw / "market1501",
        num_train_ids=NUM_TRAIN,
        num_test_ids=NUM_TEST,
        num_distractors=NUM_DISTRACTORS,
        num_junk=NUM_JUNK,
        cameras=6,
        seed=3,
    )
    return raw


def test_parses_the_three_naming_styles(tmp_path: Path) -> None:
    root = _touch_layout(
        tmp_path,
        {
            "bounding_box_train": [
                "0002_c1s1_000451_03.jpg",
                "0001_c1_01.jpg",
                "0007_c2_f0046182.jpg",
            ],
            "query": ["0005_c2s1_000976_00.jpg"],
            "bounding_box_test": [
                "0005_c1s1_001351_02.jpg",
                "-1_c3s1_000001_00.jpg",
                "0000_c4s2_000001_01.jpg",
                "Thumbs.db",
            ],
        },
    )
    df = parse_market_layout(root)
    rows = {Path(p).name: (pid, cam, split, label) for p, pid, cam, split, label in df.to_numpy()}
    assert rows == {
        "0001_c1_01.jpg": (1, 1, "train", 0),  # sorted file order; labels by pid
        "0002_c1s1_000451_03.jpg": (2, 1, "train", 1),
        "0007_c2_f0046182.jpg": (7, 2, "train", 2),
        "0005_c2s1_000976_00.jpg": (5, 2, "query", -1),
        "0000_c4s2_000001_01.jpg": (0, 4, "gallery", -1),  # distractor kept
        "0005_c1s1_001351_02.jpg": (5, 1, "gallery", -1),
    }  # junk -1 dropped, Thumbs.db skipped
    assert df["path"].iloc[0] == str(root / "bounding_box_train" / "0001_c1_01.jpg")


def test_generated_counts_and_protocol(generated: Path) -> None:
    root = find_market_root(generated)
    assert root == generated / "market1501" / "Market-1501-v15.09.15"
    df = parse_market_layout(root)
    parts = {s: df[df["split"] == s] for s in ("train", "query", "gallery")}
    summary = summarize(df)
    assert summary["num_train_ids"] == NUM_TRAIN
    assert summary["num_query_ids"] == NUM_TEST
    assert summary["num_gallery_ids"] == NUM_TEST + 1  # + the distractor id 0
    # every file is in the manifest except the junk ones
    on_disk = {s: len(list((root / f).iterdir())) for s, f in
               [("train", "bounding_box_train"), ("query", "query"),
                ("gallery", "bounding_box_test")]}  # fmt: skip
    assert len(parts["train"]) == on_disk["train"]
    assert len(parts["query"]) == on_disk["query"]
    assert len(parts["gallery"]) == on_disk["gallery"] - NUM_JUNK
    assert (df["pid"] != -1).all()
    assert (parts["gallery"]["pid"] == 0).sum() == NUM_DISTRACTORS
    assert (parts["train"]["pid"] > 0).all() and (parts["query"]["pid"] > 0).all()
    # train relabelled 0..N-1; train and test ids disjoint; query ids == gallery ids but 0
    assert sorted(parts["train"]["label"].unique()) == list(range(NUM_TRAIN))
    assert not set(parts["train"]["pid"]) & set(parts["query"]["pid"])
    assert set(parts["query"]["pid"]) == set(parts["gallery"]["pid"]) - {0}
    assert df["camid"].between(1, 6).all()
    # as in Market: one query per camera an id appears in, and a match in another camera
    gallery_cams = parts["gallery"].groupby("pid")["camid"].apply(set)
    for pid, cams in parts["query"].groupby("pid")["camid"]:
        assert sorted(cams) == sorted(set(cams)) and set(cams) == gallery_cams[pid]
        assert len(set(cams)) >= 2


def test_generated_images_are_readable(generated: Path) -> None:
    df = parse_market_layout(find_market_root(generated))
    for path in df["path"].iloc[:: max(1, len(df) // 10)]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (64, 128) and image.mode == "RGB"


def test_find_root_names_the_missing_folder(tmp_path: Path) -> None:
    _touch_layout(
        tmp_path / "wrap" / "Market",
        {"bounding_box_train": ["0001_c1_01.jpg"], "query": ["0001_c2_01.jpg"]},
    )
    with pytest.raises(FileNotFoundError) as err:
        find_market_root(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "missing bounding_box_test/" in message
    assert "query/" not in message.split("missing")[1].split("(expected")[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_market_root(tmp_path / "absent")


def test_find_root_looks_only_two_levels_down(tmp_path: Path) -> None:
    files = {k: ["0001_c1_01.jpg"] for k in ("bounding_box_train", "query", "bounding_box_test")}
    _touch_layout(tmp_path / "a" / "b" / "c", files)
    with pytest.raises(FileNotFoundError, match="up to 2 levels"):
        find_market_root(tmp_path)
    assert find_market_root(tmp_path / "a") == tmp_path / "a" / "b" / "c"


def test_bad_file_name_is_named(tmp_path: Path) -> None:
    root = _touch_layout(
        tmp_path,
        {
            "bounding_box_train": ["0001_c1_01.jpg", "person_01.jpg"],
            "query": ["0002_c1_01.jpg"],
            "bounding_box_test": ["0002_c2_01.jpg"],
        },
    )
    with pytest.raises(ValueError, match=r"bounding_box_train/person_01\.jpg.*<pid>_c<camera>"):
        parse_market_layout(root)


def test_empty_split_folder_is_an_error(tmp_path: Path) -> None:
    root = _touch_layout(
        tmp_path,
        {"bounding_box_train": ["0001_c1_01.jpg"], "query": [], "bounding_box_test": ["x.txt"]},
    )
    with pytest.raises(ValueError, match=r"query holds no images"):
        parse_market_layout(root)


def test_real_market_mini() -> None:
    folder = SHARED_DATA / "market1501-mini"
    if not folder.is_dir():
        pytest.skip(f"real Market-1501 mini set absent: {folder}")
    df = parse_market_layout(find_market_root(folder))
    counts = df.groupby("split")["pid"].agg(["size", "nunique"])
    expected = pd.DataFrame(
        {"size": [32, 32, 32], "nunique": [16, 16, 16]}, index=["gallery", "query", "train"]
    )
    pd.testing.assert_frame_equal(counts, expected, check_names=False, check_dtype=False)
    train, query, gallery = (df[df["split"] == s] for s in ("train", "query", "gallery"))
    assert not set(train["pid"]) & set(query["pid"])
    assert set(query["pid"]) == set(gallery["pid"])
    assert sorted(train["label"].unique()) == list(range(16))
    assert set(df["camid"]) <= set(range(1, 7))
    first = train.iloc[0]
    assert Path(first["path"]).name == "0002_c1s1_069056_02.jpg"
    assert (first["pid"], first["camid"], first["label"]) == (2, 1, 0)
    with Image.open(first["path"]) as image:
        assert image.size == (64, 128)
    assert np.issubdtype(df["pid"].dtype, np.integer)
