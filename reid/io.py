"""Files: atomic output (write under a temporary name in the same folder, then rename) and digests.

A crash or Ctrl-C while writing leaves the previous file (if any) untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reid.errors import InputError


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`.

    Works for files and folders: whatever the caller creates at the yielded path replaces
    `target` as a whole. On an exception the temporary is removed and `target` is unchanged.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the caller decides whether it is a file or a folder
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary path for {target}")
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def write_text(target: str | Path, text: str) -> None:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON to `target` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_writable(*targets: str | Path) -> None:
    """Raise `InputError` unless each target could be written (checked before long work).

    A target's folder must be a folder or creatable: a file in its place, or a folder without
    write permission, fails now rather than after a training.
    """
    for target in map(Path, targets):
        if target.is_dir():
            raise InputError(f"{target} is a folder; the stage writes a file there")
        for parent in target.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise InputError(f"{parent} is a file, so {target} cannot be written")
                if not os.access(parent, os.W_OK | os.X_OK):
                    raise InputError(f"{parent} is not writable, so {target} cannot be written")
                break
