"""The CUHK03 parser: release .mat + protocol files, the CUHK03-NP layout, real files, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from reid.data.cuhk03 import load_protocol_config, parse_cuhk03
from reid.data.generated import generate_cuhk03
from reid.data.manifest import summarize

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIRS, IDS, TEST_IDS = 2, 6, 4


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data absent: {path}")
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated release one folder below `raw` (raw/cuhk03/cuhk03_release/cuhk-03.mat)."""
    raw = tmp_path_factory.mktemp("raw")
    generate_cuhk03(
        raw / "cuhk03", num_pairs=PAIRS, ids_per_pair=IDS, num_test_ids=TEST_IDS, seed=5
    )
    return raw


@pytest.fixture(scope="module")
def extracted(release: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("split")
    return {v: parse_cuhk03(release, out / v / "images", v) for v in ("detected", "labeled")}


@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_release_manifest_follows_the_config(release: Path, extracted: dict, variant: str) -> None:
    df = extracted[variant]
    config = load_protocol_config(release / "cuhk03" / f"cuhk03_new_protocol_config_{variant}.mat")
    for split, idx in [
        ("train", config.train_idx),
        ("query", config.query_idx),
        ("gallery", config.gallery_idx),
    ]:
        rows = df[df["split"] == split]
        assert [Path(p).name for p in rows["path"]] == [config.filelist[i] for i in idx]
        assert rows["pid"].tolist() == config.labels[idx].tolist()
        assert rows["camid"].tolist() == config.camids[idx].tolist()
    summary = summarize(df)
    assert summary["num_train_ids"] == PAIRS * IDS - TEST_IDS
    assert summary["num_query_ids"] == summary["num_gallery_ids"] == TEST_IDS
    assert summary["num_query"] == 2 * TEST_IDS  # one query per camera per test id
    query = df[df["split"] == "query"]
    for _, cams in query.groupby("pid")["camid"]:
        assert sorted(cams) == [1, 2]
    train = df[df["split"] == "train"]
    assert sorted(train["label"].unique()) == list(range(PAIRS * IDS - TEST_IDS))


@pytest.mark.parametrize("variant", ["detected", "labeled"])
def test_extracted_images_equal_the_mat_pixels(
    release: Path, extracted: dict, variant: str
) -> None:
    df = extracted[variant]
    images = Path(df["path"].iloc[0]).parent
    assert images.name == "images" and images.parent.name == variant
    assert sorted(p.name for p in images.iterdir()) == sorted(Path(p).name for p in df["path"])
    with h5py.File(release / "cuhk03" / "cuhk03_release" / "cuhk-03.mat", "r") as mat:
        for path in df["path"].iloc[::7]:
            pair, pid, _, img = (int(v) for v in Path(path).stem.split("_"))
            cell = mat[mat[variant][0, pair - 1]]
            stored = mat[cell[img - 1, pid - 1]][()]  # (3, W, H)
            with Image.open(path) as image:
                assert image.format == "PNG"
                pixels = np.asarray(image)
            assert pixels.shape == (stored.shape[2], stored.shape[1], 3)
            np.testing.assert_array_equal(pixels, stored.transpose(2, 1, 0))


def test_extraction_replaces_the_images_folder(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "images"
    out.mkdir()
    (out / "stale.png").touch()
    df = parse_cuhk03(release, out, "labeled")
    assert not (out / "stale.png").exists()
    assert len(list(out.iterdir())) == len(df)
    assert [p.name for p in tmp_path.iterdir()] == ["images"]  # no temporary left


def _np_layout(df, root: Path) -> None:
    """Arrange a parsed split as CUHK03-NP: `root/cuhk03-np/detected/{bounding_box_*,query}`."""
    folders = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
    for path, pid, camid, split, _ in df.to_numpy():
        folder = root / "cuhk03-np" / "detected" / folders[split]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{pid:04d}_c{camid}_{Path(path).stem[-2:]}.png")


def test_np_layout(extracted: dict, tmp_path: Path) -> None:
    """The same split arranged as CUHK03-NP (`{label:04d}_c{cam}_{img:02d}`) parses alike."""
    df = extracted["detected"]
    _np_layout(df, tmp_path)
    out = tmp_path / "unused"
    np_df = parse_cuhk03(tmp_path, out, "detected")
    assert not out.exists()  # nothing extracted
    assert summarize(np_df) == summarize(df)
    assert sorted(np_df["pid"]) == sorted(df["pid"])
    with pytest.raises(FileNotFoundError, match=r"no labeled/ folder \(found detected/\)"):
        parse_cuhk03(tmp_path, out, "labeled")


def test_split_summary_says_where_the_split_came_from(
    release: Path, extracted: dict, tmp_path: Path
) -> None:
    from reid.data.provenance import write_source_record
    from reid.params import DatasetParams
    from reid.pipeline.split import split

    params = DatasetParams(format="cuhk03", source="/data/cuhk03", variant="detected")
    release_copy = tmp_path / "release"
    shutil.copytree(release, release_copy)
    np_root = tmp_path / "np"
    _np_layout(extracted["detected"], np_root)
    for raw in (release_copy, np_root):
        write_source_record(raw, {"source": params.source})
    from_files = split("cuhk03", params, release_copy, tmp_path / "split_a")["protocol"]
    from_folders = split("cuhk03", params, np_root, tmp_path / "split_b")["protocol"]
    assert "from the split files" in from_files
    assert "CUHK03-NP folders" in from_folders and "split files" not in from_folders


def test_unknown_variant(release: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown CUHK03 variant 'Detected'.*detected.*labeled"):
        parse_cuhk03(release, tmp_path / "images", "Detected")


def test_no_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no CUHK03 data in .*cuhk-03\.mat"):
        parse_cuhk03(tmp_path, tmp_path / "images", "detected")


def _copy_release(release: Path, dest: Path) -> Path:
    shutil.copytree(release / "cuhk03", dest)
    return dest


def test_mat_without_variant_key(release: Path, tmp_path: Path) -> None:
    root = _copy_release(release, tmp_path / "raw")
    mat_path = root / "cuhk03_release" / "cuhk-03.mat"
    with h5py.File(mat_path, "r+") as mat:
        del mat["detected"]
    with pytest.raises(ValueError, match=r"cuhk-03\.mat.*missing key 'detected'"):
        parse_cuhk03(root, tmp_path / "images", "detected")
    assert not (tmp_path / "images").exists()
    assert len(parse_cuhk03(root, tmp_path / "images", "labeled")) > 0


def test_config_without_field(release: Path, tmp_path: Path) -> None:
    root = _copy_release(release, tmp_path / "raw")
    config = root / "cuhk03_new_protocol_config_detected.mat"
    fields = {k: v for k, v in scipy.io.loadmat(config).items() if not k.startswith("__")}
    del fields["train_idx"]
    scipy.io.savemat(config, fields)
    with pytest.raises(ValueError, match=r"config_detected\.mat: missing field.*train_idx"):
        parse_cuhk03(root, tmp_path / "images", "detected")


def test_files_in_the_wrong_format(release: Path, tmp_path: Path) -> None:
    root = _copy_release(release, tmp_path / "raw")
    (root / "cuhk03_new_protocol_config_labeled.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match=r"config_labeled\.mat is not a readable MATLAB 5 file"):
        parse_cuhk03(root, tmp_path / "images", "labeled")
    (root / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(ValueError, match=r"cuhk-03\.mat is not a MATLAB v7\.3 \(HDF5\) file"):
        parse_cuhk03(root, tmp_path / "images", "detected")


def test_missing_config_file(release: Path, tmp_path: Path) -> None:
    root = _copy_release(release, tmp_path / "raw")
    (root / "cuhk03_new_protocol_config_labeled.mat").unlink()
    with pytest.raises(FileNotFoundError, match="cuhk03_new_protocol_config_labeled.mat"):
        parse_cuhk03(root, tmp_path / "images", "labeled")


@pytest.mark.parametrize(
    "name, problem",
    [("1_099_1_01.png", "holds 6 ids"), ("3_001_1_01.png", "camera pair 3"), ("x.png", "is not")],
)
def test_filelist_name_missing_from_mat(
    release: Path, tmp_path: Path, name: str, problem: str
) -> None:
    root = _copy_release(release, tmp_path / "raw")
    config = root / "cuhk03_new_protocol_config_detected.mat"
    fields = {k: v for k, v in scipy.io.loadmat(config).items() if not k.startswith("__")}
    fields["filelist"][0, 0] = np.array([name])
    scipy.io.savemat(config, fields)
    with pytest.raises(ValueError, match=rf"{name}.*{problem}"):
        parse_cuhk03(root, tmp_path / "images", "detected")
    assert not (tmp_path / "images").exists()  # the partial extraction was thrown away


def test_filelist_name_pointing_at_an_empty_cell(release: Path, tmp_path: Path) -> None:
    root = _copy_release(release, tmp_path / "raw")
    with h5py.File(root / "cuhk03_release" / "cuhk-03.mat", "r") as mat:
        cell = mat[mat["detected"][0, 0]]
        empty = next(
            (slot, pid)
            for pid in range(IDS)
            for slot in range(10)
            if mat[cell[slot, pid]].ndim == 1
        )
    name = f"1_{empty[1] + 1:03d}_{empty[0] // 5 + 1}_{empty[0] + 1:02d}.png"
    config = root / "cuhk03_new_protocol_config_detected.mat"
    fields = {k: v for k, v in scipy.io.loadmat(config).items() if not k.startswith("__")}
    fields["filelist"][0, 0] = np.array([name])
    scipy.io.savemat(config, fields)
    with pytest.raises(ValueError, match=rf"{name} .*not in CUHK03 release.*empty"):
        parse_cuhk03(root, tmp_path / "images", "detected")


@pytest.mark.parametrize(
    "variant, size, counts",
    [("detected", 14097, (7365, 1400, 5332)), ("labeled", 14096, (7368, 1400, 5328))],
)
def test_real_protocol_configs(variant: str, size: int, counts: tuple[int, int, int]) -> None:
    path = _shared(f"cuhk03-protocol/cuhk03_new_protocol_config_{variant}.mat")
    config = load_protocol_config(path)
    assert len(config.filelist) == len(config.labels) == len(config.camids) == size
    assert (len(config.train_idx), len(config.query_idx), len(config.gallery_idx)) == counts
    assert config.filelist[0] == "1_001_1_01.png" and config.train_idx[0] == 0  # 1-based in file
    assert config.filelist[-1].startswith("5_")
    all_idx = np.concatenate([config.train_idx, config.query_idx, config.gallery_idx])
    assert sorted(all_idx) == list(range(size))  # a partition of the filelist
    train_ids = set(config.labels[config.train_idx])
    query_ids = set(config.labels[config.query_idx])
    assert (len(train_ids), len(query_ids)) == (767, 700) and not train_ids & query_ids
    assert set(config.labels[config.gallery_idx]) == query_ids
    assert set(config.camids) == {1, 2}
    # one query per camera per test id, as the new protocol says
    pairs = set(zip(config.labels[config.query_idx], config.camids[config.query_idx], strict=True))
    assert len(pairs) == 1400
    # file name view agrees with camId
    views = np.array([int(name.split("_")[2]) for name in config.filelist])
    np.testing.assert_array_equal(views, config.camids)


def test_real_np_pair1(tmp_path: Path) -> None:
    raw = _shared("cuhk03-np-pair1")
    df = parse_cuhk03(raw, tmp_path / "images", "detected")
    assert not (tmp_path / "images").exists()
    assert summarize(df) == {
        "num_train_ids": 427,
        "num_train_images": 4145,
        "num_query": 828,
        "num_query_ids": 414,
        "num_gallery": 3189,
        "num_gallery_ids": 414,
    }
    assert Path(df["path"].iloc[0]).parent == raw / "detected" / "bounding_box_train"
    assert set(df["camid"]) == {1, 2}
    with pytest.raises(FileNotFoundError, match=r"no labeled/ folder"):
        parse_cuhk03(raw, tmp_path / "images", "labeled")
