"""Bring a dataset into `data/raw/<dataset>/` in its original layout.

A source is `generated` (the built-in dataset, written in the real format), a local archive
(`.zip`, `.tar`, `.tar.gz`/`.tgz`) or folder holding the real dataset, or an http(s) URL. An
optional sha256/md5 is checked before anything is unpacked. Archives are unpacked into a
temporary folder beside the target (entries that would escape it, links and devices are
refused) and renamed onto the target only once complete, so a bad source never destroys the
data of an earlier run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from reid.errors import InputError
from reid.data.provenance import write_source_record
from reid.io import atomic_path, file_digest

log = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


class SourceError(InputError):
    """A dataset source that cannot be used: missing, corrupt, unsafe or the wrong checksum."""


def verify_checksum(path: Path, *, sha256: str | None = None, md5: str | None = None) -> None:
    """Raise `SourceError` naming the file if a given checksum does not match."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual.lower() != expected.strip().lower():
            raise SourceError(
                f"{path}: wrong {algorithm} checksum: expected {expected}, got {actual}"
            )
        log.info("%s: %s checksum ok", path, algorithm)


def _check_member_name(archive: Path, name: str) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise SourceError(f"{archive}: refusing entry {name!r}: it would escape the target folder")


def _extract_zip(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_member_name(archive, info.filename)
                mode = info.external_attr >> 16
                if (mode & 0o170000) == 0o120000:
                    raise SourceError(f"{archive}: refusing entry {info.filename!r}: a symbolic link")
            for info in tqdm(members, desc=f"unzip {archive.name}", unit="file", leave=False,
                             disable=None):
                zf.extract(info, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise SourceError(f"{archive}: corrupt or truncated zip archive ({err})") from err


def _extract_tar(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                _check_member_name(archive, member.name)
                if member.issym() or member.islnk():
                    raise SourceError(f"{archive}: refusing entry {member.name!r}: a link")
                if not (member.isfile() or member.isdir()):
                    raise SourceError(f"{archive}: refusing entry {member.name!r}: not a file")
            for member in tqdm(members, desc=f"untar {archive.name}", unit="file", leave=False,
                               disable=None):
                tf.extract(member, dest, filter="data")
    except (tarfile.TarError, zlib.error, EOFError, OSError) as err:
        raise SourceError(f"{archive}: corrupt or truncated tar archive ({err})") from err


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a .zip/.tar/.tar.gz into the (new, empty) folder `dest`, refusing unsafe entries."""
    name = archive.name.lower()
    dest.mkdir(parents=True)
    if name.endswith(".zip"):
        _extract_zip(archive, dest)
    elif name.endswith((".tar", ".tar.gz", ".tgz")):
        _extract_tar(archive, dest)
    else:
        raise SourceError(f"{archive}: unknown archive type; expected one of {ARCHIVE_SUFFIXES}")


def download_url(url: str, target: Path) -> Path:
    """Download `url` to `target` (atomically, with a progress bar). Only used on request."""
    with atomic_path(target) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, tmp.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                          disable=None) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            raise SourceError(f"{url}: download failed ({err})") from err
    return target


def fetch_dataset(
    source: str,
    dest: Path,
    *,
    generate: Callable[[Path], Any],
    validate: Callable[[Path], Any],
    sha256: str | None = None,
    md5: str | None = None,
) -> Path:
    """Materialise a dataset at `dest` from `source`; return `dest`.

    `generate(folder)` writes the built-in dataset into a folder; `validate(folder)` raises if
    the unpacked data does not have the dataset's layout (checked before `dest` is replaced).
    """
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        if source == "generated":
            if sha256 or md5:
                raise SourceError("a checksum was given for the generated source; remove it")
            tmp.mkdir(parents=True)
            generate(tmp)
        elif urllib.parse.urlparse(source).scheme in ("http", "https"):
            name = Path(urllib.parse.urlparse(source).path).name or "download"
            archive = download_url(source, dest.parent / ".downloads" / name)
            verify_checksum(archive, sha256=sha256, md5=md5)
            extract_archive(archive, tmp)
        else:
            path = Path(source).expanduser()
            if not path.exists():
                raise SourceError(f"{path}: dataset source not found (a file or folder)")
            if path.is_dir():
                if sha256 or md5:
                    raise SourceError(f"{path}: a checksum applies to an archive, not a folder")
                refuse_outside_links(path)
                shutil.copytree(path, tmp, symlinks=False)
            else:
                verify_checksum(path, sha256=sha256, md5=md5)
                extract_archive(path, tmp)
        try:
            validate(tmp)
        except (OSError, ValueError) as err:
            # name the user's source, not the temporary folder it was unpacked into
            message = str(err).replace(str(tmp), f"<{source}>")
            raise SourceError(f"{source}: not a usable dataset: {message}") from err
        write_source_record(tmp, {"source": source, "sha256": sha256, "md5": md5})
    return dest


def refuse_outside_links(folder: Path) -> None:
    """Raise `SourceError` for a symbolic link in `folder` that resolves outside it.

    Archives may hold no links at all; a folder's links are copied as the files they point to,
    so one pointing elsewhere (e.g. at a system file) would bring that file into the dataset.
    """
    root = folder.resolve()
    for current, dirs, files in os.walk(folder):
        for name in dirs + files:
            entry = Path(current) / name
            if entry.is_symlink() and not entry.resolve().is_relative_to(root):
                raise SourceError(f"{entry}: a symbolic link to {entry.resolve()}, outside the "
                                  f"dataset folder {folder}; copy the file in or remove the link")
