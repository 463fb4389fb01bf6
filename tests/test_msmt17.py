"""The MSMT17 parser on generated V1 / V2 releases and on hand-made list files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from PIL import Image

from reid.data.generated import generate_msmt17
from reid.data.manifest import summarize
from reid.data.msmt17 import LIST_FILES, find_msmt17_root, parse_msmt17
from reid.errors import InputError

NUM_TRAIN, NUM_TEST, CAMERAS = 7, 5, 15
FOLDERS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
NAME = re.compile(r"(\d{4})_(\d{3})_(\d{2})_(\d{4})(morning|noon|afternoon)_(\d{4})_(\d)\.jpg")


@pytest.fixture(scope="module", params=["V1", "V2"])
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated release two wrapper levels below the returned folder, as archives unpack."""
    raw = tmp_path_factory.mktemp(f"raw{request.param}")
    generate_msmt17(
        raw / "msmt17",
        version=request.param,
        num_train_ids=NUM_TRAIN,
        num_test_ids=NUM_TEST,
        cameras=CAMERAS,
        seed=5,
    )
    return raw


def _lines(path: Path) -> list[tuple[str, int]]:
    pairs = (line.split() for line in path.read_text().splitlines())
    return [(rel, int(pid)) for rel, pid in pairs]


def test_generated_counts_cameras_and_disjoint_ids(generated: Path) -> None:
    root, version = find_msmt17_root(generated)
    expected_version = "V1" if generated.name.startswith("rawV1") else "V2"
    assert version == expected_version
    assert root == generated / "msmt17" / f"MSMT17_{version}"
    train_dir, test_dir = (root / name for name in FOLDERS[version])
    df = parse_msmt17(root, version)
    parts = {s: df[df["split"] == s] for s in ("train", "query", "gallery")}
    lists = {name: _lines(root / name) for name in LIST_FILES}
    assert lists["list_val.txt"]  # the generator puts some train images in the val list
    # train = list_train + list_val = every image of the train folder, in list order
    expected_train = [str(train_dir / rel) for rel, _ in
                      lists["list_train.txt"] + lists["list_val.txt"]]  # fmt: skip
    assert parts["train"]["path"].tolist() == expected_train
    assert len(parts["train"]) == len(list(train_dir.rglob("*.jpg")))
    assert len(parts["query"]) + len(parts["gallery"]) == len(list(test_dir.rglob("*.jpg")))
    assert len(parts["query"]) == len(lists["list_query.txt"])
    assert len(parts["gallery"]) == len(lists["list_gallery.txt"])
    summary = summarize(df)
    assert summary["num_train_ids"] == NUM_TRAIN
    assert summary["num_query_ids"] == summary["num_gallery_ids"] == NUM_TEST
    # cameras: the third field of each name, 1-based
    for path, camid in zip(df["path"], df["camid"], strict=True):
        match = NAME.fullmatch(Path(path).name)
        assert match is not None and int(match.group(3)) == camid
        assert Path(path).parent.name == match.group(1)
    assert df["camid"].between(1, CAMERAS).all() and df["camid"].nunique() > 3
    # the lists number both sets from 0; the manifest offsets test pids past the train pids
    assert {pid for _, pid in lists["list_query.txt"]} == set(range(NUM_TEST))
    assert set(parts["train"]["pid"]) == set(range(NUM_TRAIN))
    assert set(parts["query"]["pid"]) == set(range(NUM_TRAIN, NUM_TRAIN + NUM_TEST))
    assert set(parts["gallery"]["pid"]) == set(parts["query"]["pid"])
    assert not set(parts["train"]["pid"]) & set(parts["gallery"]["pid"])
    assert sorted(parts["train"]["label"].unique()) == list(range(NUM_TRAIN))
    assert (df.loc[df["split"] != "train", "label"] == -1).all()
    # one query per camera a test id appears in, each with a gallery match in that camera
    per_camera = parts["query"].groupby(["pid", "camid"]).size()
    assert (per_camera == 1).all()
    gallery_cams = parts["gallery"].groupby("pid")["camid"].apply(set)
    for pid, cams in parts["query"].groupby("pid")["camid"]:
        assert set(cams) == gallery_cams[pid] and len(set(cams)) >= 2


def test_generated_images_are_jpegs(generated: Path) -> None:
    df = parse_msmt17(*find_msmt17_root(generated))
    for path in df["path"].iloc[:: max(1, len(df) // 8)]:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (64, 128) and image.mode == "RGB"


def test_generator_is_deterministic_and_checks_arguments(tmp_path: Path) -> None:
    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    args = dict(num_train_ids=2, num_test_ids=2, cameras=3, images_per_camera=(1, 1))
    for name in ("a", "b"):
        generate_msmt17(tmp_path / name, **args, seed=9)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert {p.parent.name for p in (tmp_path / "a" / "MSMT17_V1" / "train").rglob("*.jpg")} == {
        "0000",
        "0001",
    }
    with pytest.raises(InputError, match="version"):
        generate_msmt17(tmp_path / "c", **args, version="V3")
    with pytest.raises(InputError, match="cameras"):
        generate_msmt17(tmp_path / "c", **{**args, "cameras": 16})


# --- hand-made layouts: the parser reads names only, so empty files will do --------------------

GOOD = {
    "list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                       "0003/0003_000_15_0113noon_0200_1.jpg 3"],
    "list_val.txt": ["0000/0000_001_02_0303morning_0020_0.jpg 0"],
    "list_query.txt": ["0000/0000_000_04_0302afternoon_0001_0.jpg 0",
                       "0001/0001_000_05_0302afternoon_0002_0.jpg 1"],
    "list_gallery.txt": ["0000/0000_001_06_0222noon_0003_0.jpg 0",
                         "0001/0001_001_07_0222noon_0004_0.jpg 1"],
}  # fmt: skip


def _layout(root: Path, lists: dict[str, list[str]], version: str = "V1") -> Path:
    """Write `lists` and an empty image file for each well-formed line."""
    train_dir, test_dir = (root / name for name in FOLDERS[version])
    for name, lines in lists.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("".join(f"{line}\n" for line in lines))
        image_dir = train_dir if LIST_FILES[name][0] == "train" else test_dir
        image_dir.mkdir(parents=True, exist_ok=True)
        for line in lines:
            fields = line.split()
            if fields and "/" in fields[0] and ".." not in fields[0]:
                (image_dir / fields[0]).parent.mkdir(parents=True, exist_ok=True)
                (image_dir / fields[0]).touch()
    return root


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_hand_made_rows_and_pid_offset(tmp_path: Path, version: str) -> None:
    root = _layout(tmp_path / "a" / f"MSMT17_{version}", GOOD, version)
    assert find_msmt17_root(tmp_path) == (root, version)
    train_dir, test_dir = (root / name for name in FOLDERS[version])
    df = parse_msmt17(root, version)
    rows = [(p, pid, cam, split, label) for p, pid, cam, split, label in df.to_numpy()]
    # test pids 0, 1 become 4, 5: offset = max train pid (3) + 1
    assert rows == [
        (str(train_dir / "0000/0000_000_01_0303morning_0015_0.jpg"), 0, 1, "train", 0),
        (str(train_dir / "0003/0003_000_15_0113noon_0200_1.jpg"), 3, 15, "train", 1),
        (str(train_dir / "0000/0000_001_02_0303morning_0020_0.jpg"), 0, 2, "train", 0),
        (str(test_dir / "0000/0000_000_04_0302afternoon_0001_0.jpg"), 4, 4, "query", -1),
        (str(test_dir / "0001/0001_000_05_0302afternoon_0002_0.jpg"), 5, 5, "query", -1),
        (str(test_dir / "0000/0000_001_06_0222noon_0003_0.jpg"), 4, 6, "gallery", -1),
        (str(test_dir / "0001/0001_001_07_0222noon_0004_0.jpg"), 5, 7, "gallery", -1),
    ]


def test_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _layout(tmp_path / "MSMT17_V1", GOOD)
    monkeypatch.chdir(tmp_path)
    df = parse_msmt17(Path("MSMT17_V1"), "V1")
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])


BAD_LINES = {
    "malformed: no pid": ("list_query.txt", "0001/0001_002_05_0302noon_0009_0.jpg", "expected"),
    "malformed: 3 fields": ("list_train.txt", "0000/0000_002_01_0303noon_0015_0.jpg 0 1", "got"),
    "pid not an integer": ("list_gallery.txt", "0001/0001_002_07_0222noon_0009_0.jpg x1", "pid"),
    "negative pid": ("list_val.txt", "0000/0000_002_02_0303noon_0020_0.jpg -2", "pid"),
    "camera 16": ("list_train.txt", "0000/0000_002_16_0303noon_0015_0.jpg 0", "camera 1-15"),
    "camera 0": ("list_query.txt", "0000/0000_002_00_0303noon_0015_0.jpg 0", "camera 1-15"),
    "camera not a number": ("list_val.txt", "0000/0000_002_c1_0303noon_0015_0.jpg 0", "camera"),
    "too few fields": ("list_gallery.txt", "0000/0000_002.jpg 0", "third '_' field"),
    "path escapes": ("list_train.txt", "../0000/0000_002_01_0303noon_0015_0.jpg 0", "inside"),
    "duplicate": ("list_gallery.txt", GOOD["list_query.txt"][0], "list_query.txt, line 1"),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_bad_line_names_file_and_line(tmp_path: Path, case: str) -> None:
    list_name, bad, fragment = BAD_LINES[case]
    lists = {**GOOD, list_name: [GOOD[list_name][0], bad]}  # the bad line is line 2
    root = _layout(tmp_path / "MSMT17_V1", lists)
    with pytest.raises(InputError) as err:
        parse_msmt17(root, "V1")
    assert f"{root / list_name}, line 2:" in str(err.value)
    assert fragment in str(err.value)


def test_missing_listed_image_names_file_and_line(tmp_path: Path) -> None:
    root = _layout(tmp_path / "MSMT17_V1", GOOD)
    missing = root / "test" / "0001" / "0001_001_07_0222noon_0004_0.jpg"
    missing.unlink()
    with pytest.raises(InputError) as err:
        parse_msmt17(root, "V1")
    assert f"{root / 'list_gallery.txt'}, line 2:" in str(err.value)
    assert f"listed image {missing} does not exist" in str(err.value)


def test_missing_list_file_is_named(tmp_path: Path) -> None:
    root = _layout(tmp_path / "wrap" / "MSMT17_V1", GOOD)
    (root / "list_val.txt").unlink()
    with pytest.raises(FileNotFoundError) as err:
        find_msmt17_root(tmp_path)
    message = str(err.value)
    assert f"closest match: {root}" in message and "missing list_val.txt (" in message
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "list_val.txt"))):
        parse_msmt17(root, "V1")


def test_missing_image_folder_is_named(tmp_path: Path) -> None:
    root = _layout(tmp_path / "MSMT17_V2", GOOD, "V2")
    (root / "mask_test_v2").rename(root / "test_v2")
    with pytest.raises(FileNotFoundError, match=r"missing mask_test_v2/ \("):
        find_msmt17_root(tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "mask_test_v2"))):
        parse_msmt17(root, "V2")


def test_empty_list_and_unknown_version(tmp_path: Path) -> None:
    root = _layout(tmp_path / "MSMT17_V1", {**GOOD, "list_query.txt": []})
    with pytest.raises(InputError, match=re.escape(f"{root / 'list_query.txt'} lists no images")):
        parse_msmt17(root, "V1")
    with pytest.raises(InputError, match="expected one of \\('V1', 'V2'\\)"):
        parse_msmt17(root, "v1")


def test_both_versions_in_one_folder_is_an_error(tmp_path: Path) -> None:
    root = _layout(tmp_path / "MSMT17", GOOD)
    _layout(root, GOOD, "V2")
    with pytest.raises(InputError, match="both the V1"):
        find_msmt17_root(tmp_path)
