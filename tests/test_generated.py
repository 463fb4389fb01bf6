"""The generated datasets: real formats, sizes from the arguments, determinism, look-alikes."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from reid.data.generated import generate_cuhk03, generate_market1501
from reid.data.generated.people import Person, random_people

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MARKET_NAME = re.compile(r"(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg")
MARKET_ARGS = dict(num_train_ids=6, num_test_ids=5, num_distractors=4, num_junk=3, cameras=4)
CUHK_ARGS = dict(num_pairs=2, ids_per_pair=5, num_test_ids=3)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_market1501(tmp_path_factory.mktemp("m"), **MARKET_ARGS, seed=11)


@pytest.fixture(scope="module")
def cuhk03(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_cuhk03(tmp_path_factory.mktemp("c"), **CUHK_ARGS, seed=11)


def _names(folder: Path) -> list[tuple[int, int, int]]:
    """(pid, camera, box) of each file name in `folder`; fails on a name not in Market form."""
    out = []
    for path in sorted(folder.iterdir()):
        match = MARKET_NAME.fullmatch(path.name)
        assert match, path.name
        out.append((int(match.group(1)), int(match.group(2)), int(match.group(5))))
    return out


def test_market_layout_names_and_counts(market: Path) -> None:
    assert market.name == "Market-1501-v15.09.15"
    assert sorted(p.name for p in market.iterdir()) == [
        "bounding_box_test",
        "bounding_box_train",
        "query",
    ]
    train, query, gallery = (
        _names(market / f) for f in ("bounding_box_train", "query", "bounding_box_test")
    )
    assert len({pid for pid, _, _ in train}) == 6
    assert {pid for pid, _, _ in query} == {pid for pid, _, _ in gallery} - {0, -1}
    assert len({pid for pid, _, _ in query}) == 5
    assert sum(pid == 0 for pid, _, _ in gallery) == 4
    assert sum(pid == -1 for pid, _, _ in gallery) == 3
    assert all(box == 0 for _, _, box in query) and all(box > 0 for _, _, box in gallery)
    assert {cam for _, cam, _ in train + query + gallery} <= {1, 2, 3, 4}
    # one query per camera the id is seen in; each id seen by at least two cameras
    for pid in {pid for pid, _, _ in query}:
        query_cams = [cam for p, cam, _ in query if p == pid]
        assert len(query_cams) == len(set(query_cams)) >= 2
        assert set(query_cams) == {cam for p, cam, _ in gallery if p == pid}
    for pid in {pid for pid, _, _ in train}:
        assert len({cam for p, cam, _ in train if p == pid}) >= 2
    # images_per_camera (1, 3) bounds the images of an id in a camera
    per_camera = {}
    for pid, cam, _ in train:
        per_camera[pid, cam] = per_camera.get((pid, cam), 0) + 1
    assert 1 <= min(per_camera.values()) and max(per_camera.values()) <= 3


def test_market_images(market: Path) -> None:
    paths = sorted(market.rglob("*.jpg"))
    means = []
    for path in paths[::3]:
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (64, 128), "RGB")
            pixels = np.asarray(image, dtype=np.float32)
        assert pixels.std() > 10  # a picture, not a flat colour
        means.append(pixels.mean(axis=(0, 1)))
    assert np.std(means, axis=0).min() > 5  # cameras and people differ


def test_market_is_deterministic(market: Path, tmp_path: Path) -> None:
    again = generate_market1501(tmp_path / "a", **MARKET_ARGS, seed=11)
    assert _digest(again) == _digest(market)
    other = generate_market1501(tmp_path / "b", **MARKET_ARGS, seed=12)
    assert _digest(other) != _digest(market)


def test_market_regenerates_in_place(tmp_path: Path) -> None:
    first = generate_market1501(tmp_path, **MARKET_ARGS, seed=1)
    (first / "query" / "stale.jpg").touch()
    second = generate_market1501(tmp_path, **MARKET_ARGS, seed=1)
    assert not (second / "query" / "stale.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Market-1501-v15.09.15"]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"images_per_camera": (0, 2)}, "images_per_camera"),
        ({"images_per_camera": (3, 2)}, "images_per_camera"),
        ({"num_train_ids": 0}, "num_train_ids"),
        ({"num_junk": -1}, "num_junk"),
        ({"cameras": 12}, "cameras"),
    ],
)
def test_market_bad_arguments(tmp_path: Path, override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_market1501(tmp_path, **{**MARKET_ARGS, **override})
    assert not (tmp_path / "Market-1501-v15.09.15").exists()


def test_cuhk03_release_layout(cuhk03: Path) -> None:
    mat_path = cuhk03 / "cuhk03_release" / "cuhk-03.mat"
    assert mat_path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    sizes: dict[str, list[tuple[int, int]]] = {"detected": [], "labeled": []}
    empty = 0
    with h5py.File(mat_path, "r") as mat:
        assert mat.userblock_size == 512
        assert {"#refs#", "detected", "labeled"} <= set(mat)
        for variant in sizes:
            cells = mat[variant]
            assert cells.shape == (1, 2) and h5py.check_ref_dtype(cells.dtype) is h5py.Reference
            assert cells.attrs["MATLAB_class"] == b"cell"
            for pair in range(2):
                refs = mat[cells[0, pair]]
                assert refs.shape == (10, 5)
                for slot, pid in np.ndindex(refs.shape):
                    data = mat[refs[slot, pid]]
                    if data.ndim == 1:  # an empty cell: MATLAB's [] is its two dimensions
                        assert data.shape == (2,) and data.attrs["MATLAB_empty"] == 1
                        empty += 1
                        continue
                    assert data.dtype == np.uint8 and data.shape[0] == 3
                    assert data.attrs["MATLAB_class"] == b"uint8"
                    sizes[variant].append(data.shape[1:])  # (W, H)
    assert empty > 0
    assert len(sizes["detected"]) == len(sizes["labeled"])
    for variant in sizes:
        w, h = np.array(sizes[variant]).T
        assert 45 <= w.min() and w.max() <= 170 and 140 <= h.min() and h.max() <= 340, variant
    det, lab = np.array(sizes["detected"]), np.array(sizes["labeled"])
    assert (det.prod(axis=1) > lab.prod(axis=1)).mean() > 0.8  # detected boxes are looser


def test_cuhk03_configs_mimic_the_real_files(cuhk03: Path) -> None:
    real_path = SHARED_DATA / "cuhk03-protocol" / "cuhk03_new_protocol_config_detected.mat"
    real = scipy.io.loadmat(real_path) if real_path.is_file() else None
    expected_types = {
        "camId": np.uint8,
        "filelist": np.object_,
        "labels": np.uint16,
        "train_idx": np.uint16,
        "query_idx": np.uint16,
        "gallery_idx": np.uint16,
    }
    configs = []
    for variant in ("detected", "labeled"):
        path = cuhk03 / f"cuhk03_new_protocol_config_{variant}.mat"
        assert path.read_bytes()[:19] == b"MATLAB 5.0 MAT-file"
        mat = scipy.io.loadmat(path)
        configs.append(mat)
        for field, dtype in expected_types.items():
            assert mat[field].dtype == dtype and mat[field].shape[1] == 1, field
            if real is not None:
                assert mat[field].dtype == real[field].dtype and mat[field].ndim == real[field].ndim
        assert mat["filelist"][0, 0].dtype.kind == "U" and mat["filelist"][0, 0].shape == (1,)
    for field in expected_types:
        np.testing.assert_array_equal(configs[0][field], configs[1][field])
    mat = configs[0]
    names = [item[0] for item in mat["filelist"].ravel()]
    assert names == sorted(names) and names[0] == "1_001_1_01.png"
    labels, cams = mat["labels"].ravel(), mat["camId"].ravel()
    assert set(labels) == set(range(1, 11))  # 2 pairs x 5 ids, labelled 1..10
    np.testing.assert_array_equal(cams, [int(n.split("_")[2]) for n in names])
    train, query, gallery = (mat[k].ravel().astype(int) - 1 for k in
                             ("train_idx", "query_idx", "gallery_idx"))  # fmt: skip
    assert sorted(np.concatenate([train, query, gallery])) == list(range(len(names)))
    assert len(set(labels[query])) == 3 and set(labels[gallery]) == set(labels[query])
    assert not set(labels[train]) & set(labels[query])
    assert sorted(zip(labels[query], cams[query], strict=True)) == sorted(
        {(pid, cam) for pid in set(labels[query]) for cam in (1, 2)}
    )  # one query per camera per test id


def test_cuhk03_is_deterministic(cuhk03: Path, tmp_path: Path) -> None:
    again = generate_cuhk03(tmp_path / "a", **CUHK_ARGS, seed=11)
    assert _digest(again) == _digest(cuhk03)
    other = generate_cuhk03(tmp_path / "b", **CUHK_ARGS, seed=12)
    assert (
        _digest(other)["cuhk03_release/cuhk-03.mat"]
        != _digest(cuhk03)["cuhk03_release/cuhk-03.mat"]
    )


@pytest.mark.parametrize(
    "override, message",
    [
        ({"num_test_ids": 10}, "num_test_ids"),
        ({"images_per_view": (2, 6)}, "at most 5"),
        ({"images_per_view": (0, 3)}, "images_per_view"),
    ],
)
def test_cuhk03_bad_arguments(tmp_path: Path, override: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_cuhk03(tmp_path, **{**CUHK_ARGS, **override})


def test_lookalikes_differ_in_one_attribute_group() -> None:
    rng = np.random.default_rng(0)
    people = random_people(rng, 200)
    fields = [f.name for f in dataclasses.fields(Person)]

    def differing(a: Person, b: Person) -> set[str]:
        return {f for f in fields if not np.array_equal(getattr(a, f), getattr(b, f))}

    closest = [min(len(differing(p, q)) for q in people[:i]) for i, p in enumerate(people) if i]
    lookalikes = sum(1 <= n <= 3 for n in closest)
    assert 0.15 * len(people) < lookalikes < 0.4 * len(people)
    assert min(closest) >= 1  # no two identities are the same person
