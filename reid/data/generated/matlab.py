"""MATLAB files with fixed bytes: v7.3 (HDF5) with cell arrays, and v5 with a fixed header.

Both writers leave out timestamps (HDF5 object times, the v5 header's creation date), so the
same content always gives the same bytes.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from reid.io import atomic_path

_MATLAB_HEADER = (
    "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015 "
    "HDF5 schema 1.00 ."
)
_MATLAB5_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015"


class MatWriter:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte MATLAB header, cell contents in ``#refs#``.

    Objects are written without timestamps so that the same content gives the same bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names = (
            "".join(chars)
            for size in itertools.count(1)
            for chars in itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=size)
        )

    def __enter__(self) -> MatWriter:
        self.file = h5py.File(self.path, "w", userblock_size=512)
        self.refs = _create_group(self.file, "#refs#")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.file.close()
        if exc_type is not None:
            return
        header = _MATLAB_HEADER.encode("ascii").ljust(116, b" ") + b" " * 8 + b"\x00\x02IM"
        with open(self.path, "r+b") as f:
            f.write(header)

    def store(self, data: np.ndarray, cell: bool = False, name: str = "") -> h5py.Reference:
        """Store a uint8 array, or with `cell` an object array of references (a cell array)."""
        group = self.file if name else self.refs
        dtype = h5py.ref_dtype if cell else data.dtype
        dataset = group.create_dataset(
            name or next(self.names), data=data, dtype=dtype, track_times=False
        )
        dataset.attrs["MATLAB_class"] = np.bytes_("cell" if cell else data.dtype.name)
        return dataset.ref

    def store_empty(self) -> h5py.Reference:
        """MATLAB stores ``[]`` as its dimensions (0, 0), flagged empty."""
        dataset = self.refs.create_dataset(
            next(self.names), data=np.zeros(2, np.uint64), track_times=False
        )
        dataset.attrs["MATLAB_class"] = np.bytes_("double")
        dataset.attrs["MATLAB_empty"] = np.uint8(1)
        return dataset.ref


def write_mat5(path: Path, fields: dict[str, np.ndarray]) -> None:
    """Write `fields` as a MATLAB v5 file whose header carries a fixed creation date."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, fields, format="5")
    data = bytearray(buffer.getvalue())
    data[:116] = _MATLAB5_HEADER.ljust(116, b" ")  # savemat stamps the time: make it fixed
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(data))


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A group without modification times, so that the same content gives the same bytes."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))
