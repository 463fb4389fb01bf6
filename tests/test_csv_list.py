"""The CSV list format: parsing, the manifest, the import step and every error's line number."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reid.data.csv_list import csv_manifest, import_csv_dataset, read_csv_list
from reid.data.manifest import MANIFEST_COLUMNS
from reid.errors import InputError

HEADER = "path,pid,camid,split"


def _image(path: Path, seed: int) -> Path:
    """A tiny distinct image (PNG or JPEG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """`ds/list.csv` listing images under ds/ (relative) and in two outside folders (absolute).

    The two outside images share the name q.jpg, so the import must keep them apart.
    """
    ds = tmp_path / "ds"
    for i, name in enumerate(["cam1/a.png", "cam2/b.jpg", "cam1/c.png", "cam2/sub/g.png"]):
        _image(ds / name, i)
    outside_q = _image(tmp_path / "other1" / "q.jpg", 10)
    outside_g = _image(tmp_path / "other2" / "q.jpg", 11)
    rows = [
        "cam1/a.png,8,1,train",
        "cam2/b.jpg,3,2,train",
        "",  # a blank line: skipped, still counted in line numbers
        "cam1/c.png,8,3,train",
        f"{outside_q},5,1,query",
        f"{outside_g},5,2,gallery",
        "cam2/sub/g.png,9,2,gallery",
    ]
    (ds / "list.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return ds / "list.csv"


def test_read_resolves_paths_and_keeps_line_numbers(dataset: Path, tmp_path: Path) -> None:
    rows = read_csv_list(dataset)
    ds = tmp_path / "ds"
    assert rows["path"].tolist() == [
        str(ds / "cam1/a.png"), str(ds / "cam2/b.jpg"), str(ds / "cam1/c.png"),
        str(tmp_path / "other1/q.jpg"), str(tmp_path / "other2/q.jpg"),
        str(ds / "cam2/sub/g.png"),
    ]
    assert all(Path(p).is_absolute() for p in rows["path"])
    assert rows["line"].tolist() == [2, 3, 5, 6, 7, 8]  # line 4 is blank
    assert rows["pid"].tolist() == [8, 3, 8, 5, 5, 9]
    assert rows["camid"].tolist() == [1, 2, 3, 1, 2, 2]
    assert rows["split"].tolist() == ["train"] * 3 + ["query", "gallery", "gallery"]
    for column in ("pid", "camid", "line"):
        assert rows[column].dtype == "int64"


def test_manifest_rows_labels_and_splits(dataset: Path, tmp_path: Path) -> None:
    manifest, _ = csv_manifest(dataset)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    ds = tmp_path / "ds"
    assert manifest["path"].tolist() == [
        str(ds / "cam1/a.png"), str(ds / "cam2/b.jpg"), str(ds / "cam1/c.png"),
        str(tmp_path / "other1/q.jpg"),
        str(tmp_path / "other2/q.jpg"), str(ds / "cam2/sub/g.png"),
    ]
    assert manifest["split"].tolist() == ["train"] * 3 + ["query"] + ["gallery"] * 2
    assert manifest["pid"].tolist() == [8, 3, 8, 5, 5, 9]
    assert manifest["camid"].tolist() == [1, 2, 3, 1, 2, 2]
    assert manifest["label"].tolist() == [1, 0, 1, -1, -1, -1]  # pids 3, 8 -> 0, 1


def test_lines_map_manifest_paths_to_csv_lines(dataset: Path, tmp_path: Path) -> None:
    manifest, lines = csv_manifest(dataset)
    assert sorted(lines) == sorted(manifest["path"])
    assert [lines[p] for p in manifest["path"]] == [2, 3, 5, 6, 7, 8]
    assert lines[str(tmp_path / "ds" / "cam2/sub/g.png")] == 8


def test_import_copies_images_and_rewrites_paths(dataset: Path, tmp_path: Path) -> None:
    dest = tmp_path / "raw" / "mine"
    new_list = import_csv_dataset(dataset, dest)
    assert new_list == dest / "list.csv"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mine"]  # no temporary left
    text = new_list.read_text().splitlines()
    assert text[0] == HEADER
    paths = [line.split(",")[0] for line in text[1:]]
    assert paths[:3] == ["images/cam1/a.png", "images/cam2/b.jpg", "images/cam1/c.png"]
    assert paths[5] == "images/cam2/sub/g.png"
    # the two outside q.jpg land in different folders under images/external/
    assert all(re.fullmatch(r"images/external/[0-9a-f]{10}/q\.jpg", p) for p in paths[3:5])
    assert paths[3] != paths[4]
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(
        [*paths, "list.csv"]
    )
    for p in dest.rglob("*"):
        assert not p.is_symlink()

    (original, _), (imported, lines) = csv_manifest(dataset), csv_manifest(new_list)
    assert all(p.startswith(str(dest / "images") + "/") for p in imported["path"])
    for before, after in zip(original["path"], imported["path"], strict=True):
        assert Path(before).read_bytes() == Path(after).read_bytes()
    columns = ["pid", "camid", "split", "label"]
    pd.testing.assert_frame_equal(imported[columns], original[columns])
    assert [lines[p] for p in imported["path"]] == [2, 3, 4, 5, 6, 7]  # no blank line now
    assert (imported["path"] != original["path"]).all()


def test_import_replaces_an_earlier_import(dataset: Path, tmp_path: Path) -> None:
    dest = tmp_path / "mine"
    (dest / "images").mkdir(parents=True)
    (dest / "images" / "stale.png").write_bytes(b"old")
    import_csv_dataset(dataset, dest)
    assert not (dest / "images" / "stale.png").exists()
    assert len(csv_manifest(dest / "list.csv")[0]) == 6


def test_import_failure_midway_leaves_nothing(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_copy = shutil.copy2
    copied: list[str] = []

    def copy_twice_then_fail(src, dst, *args, **kwargs):
        if len(copied) == 2:
            raise OSError("disk full")
        copied.append(str(src))
        return real_copy(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy_twice_then_fail)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OSError, match="disk full"):
        import_csv_dataset(dataset, out / "mine")
    assert len(copied) == 2  # the failure came midway, after real copies
    assert list(out.iterdir()) == []  # neither dest nor a temporary folder


def test_import_failure_keeps_the_earlier_import(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "out" / "mine"
    import_csv_dataset(dataset, dest)
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    (dest.parent / "keep.txt").write_text("x")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copy2", fail)
    with pytest.raises(OSError):
        import_csv_dataset(dataset, dest)
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before
    assert sorted(p.name for p in dest.parent.iterdir()) == ["keep.txt", "mine"]


def test_import_refuses_a_dest_holding_the_sources(dataset: Path) -> None:
    with pytest.raises(InputError, match="inside the import folder"):
        import_csv_dataset(dataset, dataset.parent)
    assert (dataset.parent / "cam1" / "a.png").is_file()


def _write(tmp_path: Path, text: str) -> Path:
    """`ds/bad.csv` beside the images a.png, b.jpg of the dataset fixture's layout."""
    ds = tmp_path / "ds"
    _image(ds / "a.png", 0)
    _image(ds / "b.jpg", 1)
    path = ds / "bad.csv"
    path.write_text(text)
    return path


def _error(csv_path: Path) -> str:
    with pytest.raises(InputError) as info:
        read_csv_list(csv_path)
    message = str(info.value)
    assert str(csv_path) in message
    return message


def _has_line(message: str, line: int) -> bool:
    return re.search(rf"\bline {line}:", message) is not None


GOOD = "a.png,1,1,train"


@pytest.mark.parametrize(
    ("rows", "line", "expected"),
    [
        (["a.png,7a,1,train"], 2, "pid '7a' is not an integer"),
        ([GOOD, "b.jpg,3.5,1,query"], 3, "pid '3.5' is not an integer"),
        ([GOOD, "", "b.jpg,2,,query"], 4, "camid '' is not an integer"),
        ([GOOD, "b.jpg,2,x1,query"], 3, "camid 'x1' is not an integer"),
        ([GOOD, "b.jpg,2,1,test"], 3, "unknown split 'test'; expected one of train, query"),
        ([GOOD, ",2,1,gallery"], 3, "empty path"),
        ([GOOD, "b.jpg,-1,1,gallery"], 3, "use ids >= 0"),
        ([GOOD, "b.jpg,2,1,gallery,extra"], 3, "5 field(s), expected 4"),
        ([GOOD, "b.jpg,2,1,query", "", "./a.png,2,1,gallery"], 5, "already listed at line 2"),
    ],
)
def test_bad_row_names_file_and_line(
    tmp_path: Path, rows: list[str], line: int, expected: str
) -> None:
    message = _error(_write(tmp_path, "\n".join([HEADER, *rows]) + "\n"))
    assert expected in message
    assert _has_line(message, line), message
    assert not any(_has_line(message, n) for n in range(1, 8) if n != line), message


def test_missing_image_names_the_resolved_path(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, f"{HEADER}\n{GOOD}\nsub/../nope.png,2,1,query\n")
    message = _error(csv_path)
    assert _has_line(message, 3)
    assert f"image {tmp_path / 'ds' / 'nope.png'} does not exist" in message
    assert "'sub/../nope.png'" in message


def test_a_folder_is_not_an_image(tmp_path: Path) -> None:
    csv_path = _write(tmp_path, f"{HEADER}\n{GOOD}\n.,2,1,query\n")
    assert "is not a file" in _error(csv_path)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("path,pid,split", "missing column(s) 'camid'"),
        ("path,pid,camid,split,note", "unknown column(s) 'note'"),
        ("path,pid,camid,split,pid", "repeated column(s) 'pid'"),
        ("image,pid,camid,split", "missing column(s) 'path'"),
    ],
)
def test_bad_header_says_the_expected_one(tmp_path: Path, header: str, expected: str) -> None:
    message = _error(_write(tmp_path, f"{header}\n{GOOD}\n"))
    assert expected in message
    assert "expected the header path,pid,camid,split" in message
    assert _has_line(message, 1)


def test_header_in_any_order_with_spaces(tmp_path: Path) -> None:
    rows = read_csv_list(_write(tmp_path, "split, camid ,pid,path\r\ntrain,4,2,a.png\r\n"))
    assert rows[["pid", "camid", "split", "line"]].iloc[0].tolist() == [2, 4, "train", 2]


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    assert "the file is empty" in _error(_write(tmp_path, ""))
    assert "no images listed" in _error(_write(tmp_path, f"{HEADER}\n\n"))


def test_several_bad_rows_reported_at_once(tmp_path: Path) -> None:
    rows = [GOOD] + [f"b.jpg,{pid},1,query" for pid in ("x", "y", "-2", "z", "w", "v", "u")]
    message = _error(_write(tmp_path, "\n".join([HEADER, *rows]) + "\n"))
    assert "7 bad rows" in message
    assert all(_has_line(message, n) for n in range(3, 8))  # the first five
    assert not _has_line(message, 8) and not _has_line(message, 9)
    assert "and 2 more bad row(s)" in message


def test_line_numbers_count_quoted_multiline_cells(tmp_path: Path) -> None:
    text = f'{HEADER}\n"a\nb.png",1,1,train\nb.jpg,oops,1,query\n'
    message = _error(_write(tmp_path, text))
    assert _has_line(message, 2) and "a\nb.png" in message  # the two-line path starts at 2
    assert _has_line(message, 4) and "pid 'oops'" in message
