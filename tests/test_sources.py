"""Dataset sources: archives, folders, checksums and every bad input, on a tiny Market folder."""

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from reid.data.market1501 import find_market_root
from reid.data.sources import SourceError, extract_archive, fetch_dataset, verify_checksum

NAMES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg"],
    "query": ["0003_c1s1_000551_00.jpg"],
    "bounding_box_test": ["0003_c3s1_000576_01.jpg", "0000_c1s1_000000_01.jpg"],
}


def make_market(root: Path, *, skip: str | None = None) -> Path:
    top = root / "Market-1501-v15.09.15"
    for folder, names in NAMES.items():
        if folder == skip:
            continue
        (top / folder).mkdir(parents=True)
        for name in names:
            Image.new("RGB", (64, 128), (120, 30, 30)).save(top / folder / name)
    return top


def never(_: Path) -> None:
    raise AssertionError("generator must not be called for a file source")


def fetch(source, dest, **kw):
    return fetch_dataset(str(source), dest, generate=never, validate=find_market_root, **kw)


def make_zip(src: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src.parent))
    return archive


@pytest.fixture
def market(tmp_path) -> Path:
    return make_market(tmp_path / "src")


@pytest.fixture
def previous(tmp_path) -> Path:
    """An earlier run's output that a failing source must leave intact."""
    dest = tmp_path / "raw" / "market1501"
    dest.mkdir(parents=True)
    (dest / "earlier.txt").write_text("keep me")
    return dest


def test_zip_source(tmp_path, market):
    archive = make_zip(market, tmp_path / "Market-1501-v15.09.15.zip")
    dest = fetch(archive, tmp_path / "raw" / "market1501")
    assert (dest / "Market-1501-v15.09.15" / "query" / NAMES["query"][0]).is_file()
    assert find_market_root(dest).name == "Market-1501-v15.09.15"


def test_tar_gz_source_with_checksums(tmp_path, market):
    archive = tmp_path / "market.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(market, arcname=market.name)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    dest = fetch(archive, tmp_path / "raw", sha256=sha.upper(), md5=md5)
    assert len(list(dest.rglob("*.jpg"))) == 5


def test_folder_source_is_copied(tmp_path, market):
    dest = fetch(market.parent, tmp_path / "raw")
    assert len(list(dest.rglob("*.jpg"))) == 5
    assert market.is_dir()  # the user's folder is untouched


def test_generated_source_calls_generator(tmp_path):
    dest = fetch_dataset(
        "generated", tmp_path / "raw", generate=lambda d: make_market(d), validate=find_market_root
    )
    assert (dest / "Market-1501-v15.09.15" / "bounding_box_test").is_dir()


def test_wrong_checksum_keeps_previous_output(tmp_path, market, previous):
    archive = make_zip(market, tmp_path / "m.zip")
    with pytest.raises(SourceError, match=r"m\.zip: wrong sha256 checksum"):
        fetch(archive, previous, sha256="0" * 64)
    assert (previous / "earlier.txt").read_text() == "keep me"
    assert not list(previous.parent.glob(".market1501.*"))  # no temporary left behind


def test_truncated_zip(tmp_path, market, previous):
    archive = make_zip(market, tmp_path / "m.zip")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"m\.zip: corrupt or truncated zip"):
        fetch(archive, previous)
    assert (previous / "earlier.txt").exists()


def test_truncated_tar_gz(tmp_path, market):
    archive = tmp_path / "m.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(market, arcname=market.name)
    archive.write_bytes(archive.read_bytes()[:300])
    with pytest.raises(SourceError, match=r"m\.tar\.gz: corrupt or truncated tar"):
        fetch(archive, tmp_path / "raw")


def test_zip_path_traversal_refused(tmp_path, previous):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Market/query/0001_c1s1_000001_00.jpg", b"x")
        zf.writestr("../../escaped.txt", b"pwned")
    with pytest.raises(SourceError, match="escape the target folder"):
        fetch(archive, previous)
    assert not (tmp_path / "escaped.txt").exists()
    assert not (previous.parent.parent / "escaped.txt").exists()
    assert (previous / "earlier.txt").exists()


def test_zip_absolute_path_refused(tmp_path):
    archive = tmp_path / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("/etc/evil.txt", b"x")
    with pytest.raises(SourceError, match="escape"):
        extract_archive(archive, tmp_path / "out")


def test_tar_symlink_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("Market/query")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc"
        tf.addfile(info)
    with pytest.raises(SourceError, match="a link"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "Market").exists()


def test_zip_symlink_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("Market/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(SourceError, match="symbolic link"):
        extract_archive(archive, tmp_path / "out")


def test_tar_traversal_refused(tmp_path):
    archive = tmp_path / "t.tar"
    with tarfile.open(archive, "w") as tf:
        data = b"pwned"
        info = tarfile.TarInfo("../outside.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(SourceError, match="escape"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


def test_folder_missing_bounding_box_test(tmp_path, previous):
    src = make_market(tmp_path / "src", skip="bounding_box_test")
    with pytest.raises(SourceError, match="bounding_box_test"):
        fetch(src.parent, previous)
    assert (previous / "earlier.txt").exists()


def test_missing_source_and_unknown_archive(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        fetch(tmp_path / "nope.zip", tmp_path / "raw")
    odd = tmp_path / "data.rar"
    odd.write_bytes(b"Rar!")
    with pytest.raises(SourceError, match="unknown archive type"):
        fetch(odd, tmp_path / "raw")


def test_checksum_for_folder_refused(tmp_path, market):
    with pytest.raises(SourceError, match="not a folder"):
        fetch(market.parent, tmp_path / "raw", md5="abc")


def test_verify_checksum_ok(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"abc")
    verify_checksum(f, md5="900150983cd24fb0d6963f7d28e17f72")
    with pytest.raises(SourceError, match="x.bin: wrong md5"):
        verify_checksum(f, md5="0" * 32)


def test_real_market_mini_as_folder_source(tmp_path):
    from conftest import shared_data

    src = shared_data("market1501-mini")
    dest = fetch(src, tmp_path / "raw")
    assert len(list(find_market_root(dest).glob("query/*.jpg"))) == 32
    shutil.rmtree(dest)


def test_folder_link_outside_the_source_refused(tmp_path, market, previous):
    secret = tmp_path / "elsewhere" / "passwd"
    secret.parent.mkdir()
    secret.write_text("root:x:0:0")
    (market / "query" / "0003_c2s1_000551_00.jpg").symlink_to(secret)
    with pytest.raises(SourceError, match="outside the dataset folder"):
        fetch(market.parent, previous)
    assert (previous / "earlier.txt").exists()


def test_folder_link_inside_the_source_is_copied(tmp_path, market):
    (market / "query" / "0003_c2s1_000551_00.jpg").symlink_to(
        market / "query" / "0003_c1s1_000551_00.jpg")
    dest = fetch(market.parent, tmp_path / "raw")
    copied = dest / market.name / "query" / "0003_c2s1_000551_00.jpg"
    assert copied.is_file() and not copied.is_symlink()


def test_layout_error_names_the_source_not_the_temporary_folder(tmp_path):
    src = make_market(tmp_path / "src", skip="query")
    archive = make_zip(src, tmp_path / "market.zip")
    with pytest.raises(SourceError) as err:
        fetch(archive, tmp_path / "raw" / "market1501")
    assert str(archive) in str(err.value)
    assert ".tmp" not in str(err.value)


def test_split_refuses_data_of_another_source(tmp_path, market):
    from reid.data.provenance import check_source_record
    from reid.errors import InputError

    dest = fetch(market.parent, tmp_path / "raw")
    assert check_source_record(dest, str(market.parent))["source"] == str(market.parent)
    with pytest.raises(InputError, match="run the download stage again"):
        check_source_record(dest, "/data/other.zip")
    with pytest.raises(InputError, match="not written by the download stage"):
        check_source_record(market, str(market))
