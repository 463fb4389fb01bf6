"""dvc.yaml against the code: each stage declares every params key it actually reads.

Every stage runs once, in this process, on the tiny generated data, while the params objects
record each field read. A key read but not declared is a change to params.yaml that
`dvc repro` would not re-run; a declared key never read re-runs the stage for nothing.
"""

from __future__ import annotations

import dataclasses
import runpy
import shutil
import sys

import pytest

import reid.params
import reid.stage_runner
from tests.dvc_stages import REPO, dvc_stages
from tests.tiny import tiny_params

pytestmark = pytest.mark.slow

# Keys no stage output depends on, so no stage declares them.
NOT_DECLARED = {
    "tracking": "whether and where MLflow logs; DVC outputs do not change with it",
    "datasets": "which stages exist (foreach); a stage only checks its --dataset is listed",
}
STAGES = dvc_stages()
PARAMS_CLASSES = [
    obj for obj in vars(reid.params).values()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == "reid.params"
]


class ReadRecorder:
    """Records `section.key` for every field read on a registered `Params` tree."""

    def __init__(self) -> None:
        self.paths: dict[int, str] = {}
        self.reads: set[str] = set()

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
            if path is not None and name in {f.name for f in dataclasses.fields(type(obj))}:
                self.reads.add(_join(path, name))
            return value

        for cls in PARAMS_CLASSES:
            mp.setattr(cls, "__getattribute__", getattribute)

    def leaves(self) -> set[str]:
        """The reads, without those that only led to a deeper read (`data` -> `data.x.source`)."""
        return {r for r in self.reads if not any(o.startswith(r + ".") for o in self.reads)}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


@pytest.fixture(scope="module")
def reads_per_stage(tmp_path_factory) -> dict[str, set[str]]:
    """Run every stage of dvc.yaml in order in a tiny workspace; the keys each one read."""
    work = tmp_path_factory.mktemp("params-reads")
    shutil.copy(REPO / "params.yaml", work / "params.yaml")
    tiny_params(work / "params.yaml", tracking=False)
    recorder = ReadRecorder()
    real_load = reid.stage_runner.load_params

    def recording_load(path):
        params = real_load(path)
        recorder.register(params)
        return params

    reads = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setattr(reid.stage_runner, "load_params", recording_load)
        recorder.install(mp)
        for stage in STAGES:
            mp.setattr(sys, "argv", [str(stage.script), *stage.argv[1:]])
            runpy.run_path(str(stage.script), run_name="__main__")
            reads[stage.name] = recorder.leaves()
    return reads


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_declares_every_param_it_reads(reads_per_stage, stage):
    read = {k for k in reads_per_stage[stage.name]
            if not any(_under(k, exempt) for exempt in NOT_DECLARED)}
    undeclared = sorted(k for k in read if not any(_under(k, d) for d in stage.params))
    assert not undeclared, f"{stage.name} reads params it does not declare: {undeclared}"


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_stage_declares_no_param_it_never_reads(reads_per_stage, stage):
    # DVC has one params list for all the items of a foreach/matrix stage, so a key counts as
    # read when any item reads it: the diagonal cross_eval@<ds>-<ds> scores extracted features
    # and reads none of the extraction keys its off-diagonal items read.
    template = stage.name.split("@")[0]
    read = set().union(*(keys for name, keys in reads_per_stage.items()
                         if name.split("@")[0] == template))
    unread = sorted(d for d in stage.params
                    if not any(_under(k, d) or _under(d, k) for k in read))
    assert not unread, f"{stage.name} declares params it never reads: {unread}"


def test_recorder_sees_nested_reads_and_keeps_leaves():
    params = reid.params.load_params(REPO / "params.yaml")
    recorder = ReadRecorder()
    recorder.register(params)
    with pytest.MonkeyPatch.context() as mp:
        recorder.install(mp)
        assert params.train.lr > 0
        assert params.data["cuhk03"].variant in ("detected", "labeled")
        dataclasses.asdict(params.input)
        params.epochs_for("resnet50")
    assert recorder.leaves() == {
        "train.lr", "data.cuhk03.variant", "train.epochs", "models.resnet50.epochs",
        *(f"input.{f.name}" for f in dataclasses.fields(reid.params.InputParams)),
    }

