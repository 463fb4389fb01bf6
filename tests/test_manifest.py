"""The manifest: relabelling, CSV round trip, validation errors, summary counts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from reid.data.manifest import (
    MANIFEST_COLUMNS,
    SPLITS,
    build_manifest,
    read_manifest,
    summarize,
    write_manifest,
)
from reid.errors import InputError

TRAIN = [("a/7_1.jpg", 7, 1), ("a/3_2.jpg", 3, 2), ("a/7_3.jpg", 7, 3), ("a/10_1.jpg", 10, 1)]
QUERY = [("q/5_1.jpg", 5, 1), ("q/6_2.jpg", 6, 2)]
GALLERY = [("g/5_2.jpg", 5, 2), ("g/6_1.jpg", 6, 1), ("g/6_3.jpg", 6, 3), ("g/0_1.jpg", 0, 1)]


@pytest.fixture
def manifest() -> pd.DataFrame:
    return build_manifest(TRAIN, QUERY, GALLERY)


def test_build_relabels_train_ids_in_pid_order(manifest: pd.DataFrame) -> None:
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    train = manifest[manifest["split"] == "train"]
    # pids 3, 7, 10 -> labels 0, 1, 2, in the order the rows were given
    assert train["label"].tolist() == [1, 0, 1, 2]
    assert train["path"].tolist() == [p for p, _, _ in TRAIN]
    others = manifest[manifest["split"] != "train"]
    assert (others["label"] == -1).all()
    assert manifest["split"].tolist() == ["train"] * 4 + ["query"] * 2 + ["gallery"] * 4
    for column in ("pid", "camid", "label"):
        assert manifest[column].dtype == "int64"


def test_write_read_round_trip(manifest: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "split" / "manifest.csv"
    write_manifest(manifest, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest.csv"]  # no temp left
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, manifest)
    assert path.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)


def test_summarize_counts(manifest: pd.DataFrame) -> None:
    assert summarize(manifest) == {
        "num_train_ids": 3,
        "num_train_images": 4,
        "num_query": 2,
        "num_query_ids": 2,
        "num_gallery": 4,
        "num_gallery_ids": 3,  # 5, 6 and the distractor id 0
    }


def test_empty_splits_give_an_empty_manifest() -> None:
    df = build_manifest([], [], [])
    assert len(df) == 0 and tuple(df.columns) == MANIFEST_COLUMNS
    assert summarize(df)["num_train_ids"] == 0


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def test_missing_column_is_named(manifest: pd.DataFrame, tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "m.csv", manifest.drop(columns=["camid"]))
    with pytest.raises(ValueError, match=r"m\.csv.*missing column.*camid"):
        read_manifest(path)


def test_unknown_split_is_an_error(manifest: pd.DataFrame, tmp_path: Path) -> None:
    bad = manifest.copy()
    bad.loc[4, "split"] = "test"
    path = _write_csv(tmp_path / "m.csv", bad)
    with pytest.raises(ValueError, match=r"m\.csv.*unknown split.*'test'"):
        read_manifest(path)
    assert set(SPLITS) == {"train", "query", "gallery"}


def test_non_integer_pid_is_an_error(manifest: pd.DataFrame, tmp_path: Path) -> None:
    bad = manifest.astype({"pid": object})
    bad.loc[0, "pid"] = "seven"
    path = _write_csv(tmp_path / "m.csv", bad)
    with pytest.raises(ValueError, match=r"m\.csv.*'pid' must hold integers"):
        read_manifest(path)


def test_broken_train_labels_are_an_error(manifest: pd.DataFrame, tmp_path: Path) -> None:
    gap = manifest.copy()
    gap.loc[gap["label"] == 2, "label"] = 5
    with pytest.raises(ValueError, match=r"m\.csv.*0\.\.N-1"):
        read_manifest(_write_csv(tmp_path / "m.csv", gap))
    labelled_query = manifest.copy()
    labelled_query.loc[4, "label"] = 0
    with pytest.raises(ValueError, match="label -1"):
        read_manifest(_write_csv(tmp_path / "m.csv", labelled_query))


def test_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv.*empty"):
        read_manifest(tmp_path / "empty.csv")


def test_write_refuses_an_invalid_manifest(manifest: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing column.*label"):
        write_manifest(manifest.drop(columns=["label"]), tmp_path / "m.csv")
    assert not (tmp_path / "m.csv").exists()


@pytest.fixture
def image_dataset(tmp_path: Path):
    """The TRAIN/QUERY/GALLERY entries as real JPEG files under tmp_path; returns a builder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for path, _, _ in TRAIN + QUERY + GALLERY:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)).save(tmp_path / path)

    def build(train=TRAIN, query=QUERY, gallery=GALLERY) -> pd.DataFrame:
        def where(entries):
            return [(str(tmp_path / p), pid, cam) for p, pid, cam in entries]
        return build_manifest(where(train), where(query), where(gallery))
    return build


def test_validate_counts_decoded_images_and_same_camera_queries(image_dataset) -> None:
    from reid.data.manifest import validate_dataset

    # query 6 (camera 2) has gallery images from cameras 1 and 3; query 5 (camera 1) is moved
    # to camera 2, where its one gallery image is: the protocol skips it
    query = [("q/5_1.jpg", 5, 2), ("q/6_2.jpg", 6, 2)]
    checks = validate_dataset(image_dataset(query=query), num_threads=2)
    assert checks == {"num_images_decoded": 10, "num_queries_same_camera_only": 1}


def test_validate_refuses_a_truncated_image_naming_it(image_dataset, tmp_path: Path) -> None:
    from reid.data.manifest import validate_dataset

    broken = tmp_path / "g/6_3.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(InputError, match=r"1 image\(s\) do not decode: LINE 9 .*6_3\.jpg"):
        validate_dataset(image_dataset(), where=lambda p: f"LINE 9 {p}" if "6_3" in p else p)


@pytest.mark.parametrize("train, query, gallery, message", [
    (TRAIN + [("q/5_1.jpg", 5, 1)], QUERY, GALLERY, r"identities \[5\] are in both"),
    (TRAIN, QUERY + [("a/10_1.jpg", 11, 3)], GALLERY, r"query identities \[11\] have no galle"),
    (TRAIN, [("q/5_1.jpg", 5, 2)], GALLERY, "no valid query"),
])
def test_validate_refuses_broken_protocols(image_dataset, train, query, gallery,
                                            message) -> None:
    from reid.data.manifest import validate_dataset

    with pytest.raises(InputError, match=message):
        validate_dataset(image_dataset(train, query, gallery))
