"""dvc.yaml against the code: each stage declares every params key it actually reads.

Every stage runs once, in its own process, in the tiny `dvc repro` that the end-to-end tests
share (tests/conftest.py), while the params objects record each field read
(tests/param_reads.py). A key read but not declared is a change to params.yaml that
`dvc repro` would not re-run; a declared key never read re-runs the stage for nothing.
"""

from __future__ import annotations

import dataclasses

import pytest

import reid.params
import reid.stage_runner
from tests.dvc_stages import REPO, dvc_stages
from tests.param_reads import ReadRecorder, recorded_reads

pytestmark = pytest.mark.slow

# Keys no stage output depends on, so no stage declares them.
NOT_DECLARED = {
    "tracking": "whether and where MLflow logs; DVC outputs do not change with it",
    "datasets": "which stages exist (foreach); a stage only checks its --dataset is listed",
}
STAGES = dvc_stages()


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


@pytest.fixture(scope="module")
def reads_per_stage(repro, param_reads_dir) -> dict[str, set[str]]:
    """The keys each stage of dvc.yaml read in the shared tiny `dvc repro`."""
    reads = recorded_reads(param_reads_dir)
    missing = [stage.name for stage in STAGES if stage.argv not in reads]
    assert not missing, f"no record of the params read by {missing} in {param_reads_dir}"
    return {stage.name: reads[stage.argv] for stage in STAGES}


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



def test_recorder_records_nothing_while_paused():
    params = reid.params.load_params(REPO / "params.yaml")
    recorder = ReadRecorder()
    recorder.register(params)
    with pytest.MonkeyPatch.context() as mp:
        recorder.install(mp)
        with recorder.paused():
            reid.params.as_flat_dict(params)
        assert params.train.lr > 0
    assert recorder.leaves() == {"train.lr"}
