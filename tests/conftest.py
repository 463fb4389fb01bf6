"""Shared fixtures: the repository root, the real data in ../shared/data, a model file, crops,
and the tiny `dvc repro` the end-to-end tests share."""

from __future__ import annotations

from pathlib import Path

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
                     seed: int = 0) -> Path:
    """A model file written by the pipeline's one writer, 64x32 input, seeded untrained weights
    (the embedding path is the same as a trained model's)."""
    torch.manual_seed(seed)
    model = build_model(backbone, 4)
    write_model_file_of_pipeline(path, ModelFile(
        backbone=backbone, dataset=dataset, num_classes=4, feature_dim=model.feature_dim,
        effnet_variant="tf_efficientnetv2_s", input_size=(64, 32), train_config={"lr": 1e-3},
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
