"""dvc.yaml's `artifacts`: every model file of the train stages is a DVC artifact of type model.

The artifacts section has no foreach, so a dataset added to `datasets` needs its entries written
out; these tests say which are missing.
"""

from __future__ import annotations

import re

import yaml

from reid.paths import model_path
from tests.dvc_stages import REPO, dvc_stages

# DVC: "Artifact IDs must consist of letters and numbers, and use '-' as separator (but not at
# the start or end)"; lowercase here, as model names in a registry usually are.
NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


def artifacts() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]


def trained_models() -> dict[str, str]:
    """The model file of each train stage: `models/<backbone>/<dataset>.pt` -> stage name."""
    return {out: stage.name for stage in dvc_stages() if stage.name.startswith("train_")
            for out in stage.outs if out.endswith(".pt")}


def test_every_trained_model_is_an_artifact_of_type_model():
    models = trained_models()
    declared = {spec["path"]: (name, spec) for name, spec in artifacts().items()}
    missing = sorted(f"{stage}: {path}" for path, stage in models.items() if path not in declared)
    assert not missing, f"dvc.yaml `artifacts` has no entry for {missing}"
    for path in models:
        name, spec = declared[path]
        assert spec["type"] == "model", name
        backbone, dataset = path.removeprefix("models/").removesuffix(".pt").split("/")
        assert path == model_path(backbone, dataset).as_posix()
        assert name == f"{backbone.replace('_', '-')}-{dataset}"
        assert spec["labels"] == [backbone, dataset]


def test_artifacts_are_trained_models_with_valid_names():
    models = trained_models()
    for name, spec in artifacts().items():
        assert NAME.fullmatch(name), f"artifact {name!r}: letters, digits and '-' only"
        assert spec["path"] in models, f"artifact {name!r}: no train stage writes {spec['path']}"
    assert len({spec["path"] for spec in artifacts().values()}) == len(artifacts())
