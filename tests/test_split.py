"""The split stage on every format: parse, validate, summarise; bad data refused before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from reid.data.generated import generate_market1501
from reid.data.provenance import write_source_record
from reid.errors import InputError
from reid.params import DatasetParams, GeneratedMsmt17Params
from reid.pipeline.download import download
from reid.pipeline.split import split


@pytest.fixture
def market_raw(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    generate_market1501(raw, num_train_ids=4, num_test_ids=4, num_distractors=2, num_junk=1)
    write_source_record(raw, {"source": "generated"})
    return raw


def test_a_truncated_gallery_jpeg_fails_the_split_and_keeps_the_old_manifest(market_raw,
                                                                             tmp_path):
    params = DatasetParams(format="market1501", source="generated")
    out = tmp_path / "split"
    summary = split("duke", params, market_raw, out)
    assert summary["format"] == "market1501" and summary["num_images_decoded"] > 0
    before = (out / "manifest.csv").read_bytes()
    broken = sorted((market_raw / "Market-1501-v15.09.15/bounding_box_test").glob("0*.jpg"))[3]
    broken.write_bytes(broken.read_bytes()[:300])
    with pytest.raises(InputError, match=rf"do not decode: {broken}"):
        split("duke", params, market_raw, out)
    assert (out / "manifest.csv").read_bytes() == before


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_generated_msmt17_downloads_and_splits_with_its_version(tmp_path, version):
    generated = GeneratedMsmt17Params(version=version, num_train_ids=4, num_test_ids=4,
                                      cameras=4, images_per_camera=[1, 2], seed=2)
    params = DatasetParams(format="msmt17", source="generated", generated=generated)
    raw = download("msmt17", params, tmp_path / "raw")
    summary = split("msmt17", params, raw, tmp_path / "split")
    assert f"MSMT17 {version}" in summary["protocol"]
    assert summary["num_train_ids"] == 4 and summary["num_query_ids"] == 4
    assert summary["num_images_decoded"] == (summary["num_train_images"] + summary["num_query"]
                                             + summary["num_gallery"])


@pytest.fixture
def csv_source(market_raw, tmp_path) -> Path:
    """The generated Market images listed in a user's CSV (paths relative to it)."""
    from reid.data.market1501 import find_market_root, parse_market_layout

    root = find_market_root(market_raw)
    rows = parse_market_layout(root)
    rows["path"] = [str(Path(p).relative_to(root)) for p in rows["path"]]
    listing = root / "mine.csv"
    rows[["path", "pid", "camid", "split"]].to_csv(listing, index=False)
    return listing


def test_a_csv_dataset_is_imported_and_split_like_its_folders(csv_source, market_raw, tmp_path):
    from reid.data.manifest import read_manifest
    from reid.data.market1501 import find_market_root, parse_market_layout

    params = DatasetParams(format="csv", source=str(csv_source))
    raw = download("mydata", params, tmp_path / "imported")
    assert (raw / "list.csv").is_file() and not any(p.is_symlink() for p in raw.rglob("*"))
    split("mydata", params, raw, tmp_path / "split")
    manifest = read_manifest(tmp_path / "split/manifest.csv")
    assert manifest["path"].str.startswith(str(raw / "images")).all()
    expected = parse_market_layout(find_market_root(market_raw))
    columns = ["pid", "camid", "split", "label"]
    assert manifest[columns].equals(expected[columns])


def test_a_csv_image_that_does_not_decode_is_named_with_its_line(csv_source, tmp_path):
    params = DatasetParams(format="csv", source=str(csv_source))
    raw = download("mydata", params, tmp_path / "imported")
    lines = (raw / "list.csv").read_text().splitlines()
    victim = lines[5].split(",")[0]
    (raw / victim).write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match=rf"{victim} \(list.csv line 6, as imported from"):
        split("mydata", params, raw, tmp_path / "split")
    assert not (tmp_path / "split/manifest.csv").exists()


def test_overlapping_ids_in_a_csv_are_refused(csv_source, tmp_path):
    rows = csv_source.read_text().splitlines()
    query_pid = next(r for r in rows if r.endswith(",query")).split(",")[1]
    index = next(i for i, r in enumerate(rows) if r.endswith(",train"))
    path, _, camid, _ = rows[index].split(",")
    rows[index] = f"{path},{query_pid},{camid},train"  # a test identity in training
    csv_source.write_text("\n".join(rows) + "\n")
    params = DatasetParams(format="csv", source=str(csv_source))
    raw = download("mydata", params, tmp_path / "imported")
    with pytest.raises(InputError, match=rf"identities \[{int(query_pid)}\] are in both"):
        split("mydata", params, raw, tmp_path / "split")
