"""Which params keys a stage reads: a recorder on the `Params` tree, run inside the stage
processes of the shared tiny `dvc repro` (tests/conftest.py) for tests/test_dvc_params.py.

`python stages/<x>.py ...` started with `recording_env(folder)` imports
tests/param_reads_hook/sitecustomize.py, which calls `record_stage`: the params the stage
loads report every field read, and at exit the process writes its argv and the keys it read
to `folder/<pid>.json`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import reid.params

HOOK = Path(__file__).resolve().parent / "param_reads_hook"
FOLDER_VARIABLE = "REID_TEST_PARAM_READS"  # where the stage processes write their reads
PARAMS_CLASSES = [
    obj for obj in vars(reid.params).values()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == "reid.params"
]


class ReadRecorder:
    """Records `section.key` for every field read on a registered `Params` tree."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self.reads: set[str] = set()
        self.recording = True

    def register(self, params: reid.params.Params) -> None:
        self.paths.clear()
        self.reads.clear()
        self._walk(params, "")

    def _walk(self, obj: object, path: str) -> None:
        if dataclasses.is_dataclass(obj):
            self.paths[id(obj)] = path
            for f in dataclasses.fields(obj):
                self._walk(object.__getattribute__(obj, f.name), _join(path, f.name))
        elif isinstance(obj, dict):
            for key, value in obj.items():
                self._walk(value, _join(path, str(key)))

    def install(self, mp: pytest.MonkeyPatch) -> None:
        """Make every params dataclass report its field reads here (undone with `mp`)."""
        def getattribute(obj: object, name: str) -> object:
            value = object.__getattribute__(obj, name)
            path = self.paths.get(id(obj))
            if (self.recording and path is not None
                    and name in {f.name for f in dataclasses.fields(type(obj))}):
                self.reads.add(_join(path, name))
            return value

        for cls in PARAMS_CLASSES:
            mp.setattr(cls, "__getattribute__", getattribute)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Reads made inside are not recorded."""
        self.recording = False
        try:
            yield
        finally:
            self.recording = True

    def leaves(self) -> set[str]:
        """The reads, without those that only led to a deeper read (`data` -> `data.x.source`)."""
        return {r for r in self.reads if not any(o.startswith(r + ".") for o in self.reads)}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def recording_env(folder: Path, pythonpath: str) -> dict[str, str]:
    """The environment variables that make stage processes record their reads into `folder`."""
    return {FOLDER_VARIABLE: str(folder), "PYTHONPATH": os.pathsep.join([str(HOOK), pythonpath])}


def record_stage(folder: Path) -> None:
    """In a stage process: record the keys read on the params that `stage_main` loads, and
    write them with the process's argv to `folder/<pid>.json` at exit.

    An MLflow run logs every params key (`Tracker.__enter__` flattens them): that is no read
    a DVC output depends on (the `tracking` section says whether it happens), so it is not
    recorded, as with `tracking.enabled: false`.
    """
    import sys

    import reid.stage_runner
    import reid.tracking

    recorder = ReadRecorder()
    real_load = reid.stage_runner.load_params
    real_enter = reid.tracking.Tracker.__enter__

    def recording_load(path):
        params = real_load(path)
        recorder.register(params)
        return params

    def enter_unrecorded(tracker):
        with recorder.paused():
            return real_enter(tracker)

    mp = pytest.MonkeyPatch()  # never undone: the process ends with the stage
    mp.setattr(reid.stage_runner, "load_params", recording_load)
    mp.setattr(reid.tracking.Tracker, "__enter__", enter_unrecorded)
    recorder.install(mp)
    argv = list(sys.argv)
    atexit.register(lambda: (folder / f"{os.getpid()}.json").write_text(
        json.dumps({"argv": argv, "reads": sorted(recorder.leaves())})))


def recorded_reads(folder: Path) -> dict[tuple[str, ...], set[str]]:
    """The keys read by each stage command (its argv) recorded into `folder`."""
    reads: dict[tuple[str, ...], set[str]] = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        argv = tuple(record["argv"])
        assert argv not in reads, f"{' '.join(argv)} ran twice"
        reads[argv] = set(record["reads"])
    return reads
