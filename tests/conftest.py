"""Shared fixtures: the repository root, the real data in ../shared/data, a model file, crops,
and the tiny `dvc repro` the end-to-end tests share.

`make test` runs the tests in parallel (pytest-xdist, one worker per core, see pyproject.toml):
the tests that read the shared repro run in one worker, first, and each worker's torch and
OpenMP get its share of the cores (two torch processes on the same two cores each running two
threads slow each other down many times over).
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # set before torch is imported, inherited
    _share = (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _share)))

import numpy as np
import pytest
import torch
from PIL import Image

from reid.models import build_model
from reid.models.model_file import ModelFile
from reid.models.model_file import write_model_file as write_model_file_of_pipeline
from tests.param_reads import recording_env
from tests.tiny import copy_repo, pipeline_env, run

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def repo_root() -> Path:
    return REPO


def shared_data(relative: str) -> Path:
    """A path under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} is absent (real data lives in ../shared/data beside the repo)")
    return path


def write_model_file(path: Path, backbone: str = "resnet50", dataset: str = "market1501",
                     seed: int = 0, effnet_variant: str = "tf_efficientnetv2_s") -> Path:
    """A model file written by the pipeline's one writer, 64x32 input, seeded untrained weights
    (the embedding path is the same as a trained model's)."""
    torch.manual_seed(seed)
    model = build_model(backbone, 4, effnet_variant=effnet_variant)
    write_model_file_of_pipeline(path, ModelFile(
        backbone=backbone, dataset=dataset, num_classes=4, feature_dim=model.feature_dim,
        effnet_variant=effnet_variant, input_size=(64, 32), train_config={"lr": 1e-3},
        state_dict=model.state_dict(), history=[{"epoch": 1, "loss": 3.5}]))
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A ResNet50 model file (`write_model_file`), shared by the API, export and rank tests."""
    return write_model_file(tmp_path_factory.mktemp("models") / "market1501.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Five random 128x64 PNG crops."""
    folder = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    for i in range(5):
        pixels = rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return folder


# --- one tiny `dvc repro`, shared by the end-to-end tests that read its outputs -------------

# The test modules that read the shared repro: one unit of work for pytest-xdist, so that the
# repro is built once, in one worker. (pytest-xdist's own `xdist_group` marks do not group on
# pytest 9.2, whose node ids no longer come from the `_nodeid` that xdist 3.8 rewrites.)
REPRO_MODULES = ("tests/test_dvc_params.py", "tests/test_pipeline.py")


def in_repro_modules(nodeid: str) -> bool:
    return nodeid.split("::")[0] in REPRO_MODULES


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Each test is a unit of work, but for the repro modules, which are one unit; the largest
    unit goes out first (xdist's scope scheduling), so the other workers run beside it."""
    from xdist.scheduler import LoadScopeScheduling

    class ReproModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "repro" if in_repro_modules(nodeid) else nodeid

    return ReproModulesTogether(config, log)


def pytest_collection_modifyitems(config, items) -> None:
    """A test that reads the shared repro outside REPRO_MODULES would build it again in another
    worker: refused."""
    for item in items:
        if "repro" in getattr(item, "fixturenames", ()) and not in_repro_modules(item.nodeid):
            module = item.nodeid.split("::")[0]
            raise pytest.UsageError(f"{item.nodeid} reads the shared repro: add {module} to "
                                    "REPRO_MODULES in tests/conftest.py")


@pytest.fixture(scope="session")
def param_reads_dir(tmp_path_factory) -> Path:
    """Where the stage processes of `repro` write the params keys they read."""
    return tmp_path_factory.mktemp("param-reads")


@pytest.fixture(scope="session")
def repro_workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("repo")


@pytest.fixture(scope="session")
def repro_env(repro_workdir) -> dict[str, str]:
    """The environment of the pipeline's commands in `repro_workdir`."""
    return pipeline_env(repro_workdir)


@pytest.fixture(scope="session")
def repro(repro_workdir, repro_env, param_reads_dir) -> Path:
    """A copy of the repository, committed to git, after a tiny `dvc repro` whose stages
    recorded the params they read (tests/param_reads.py)."""
    work = copy_repo(repro_workdir)
    run(["git", "init", "-q"], work, repro_env)
    run(["git", "add", "-A"], work, repro_env)
    run(["git", "commit", "-qm", "copy"], work, repro_env)
    recording = recording_env(param_reads_dir, repro_env["PYTHONPATH"])
    run(["dvc", "repro"], work, {**repro_env, **recording})
    return work
