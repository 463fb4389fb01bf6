import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reid.params import ParamsError, as_flat_dict, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_load(raw):
    params = parse_params(raw)
    assert params.backbone in ("resnet50", "resnet50_ibn_a", "effnetv2")
    assert params.train.batch_size % params.train.num_instances == 0
    assert isinstance(params.train.lr, float)
    assert params.epochs_for("resnet50") == params.train.epochs


def test_model_epochs_override(raw):
    raw["models"]["effnetv2"]["epochs"] = 3
    assert parse_params(raw).epochs_for("effnetv2") == 3


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["train"].update(epochs="ten"), "train.epochs: expected int"),
        (lambda r: r["train"].update(epochs=True), "train.epochs: expected int"),
        (lambda r: r["train"].update(lr="fast"), "train.lr"),
        (lambda r: r["train"].update(epochz=3), "unknown key(s) train.epochz"),
        (lambda r: r.update(backbone="vgg16"), "backbone: unknown 'vgg16'"),
        (lambda r: r["datasets"].append("msmt17"), "datasets: unknown 'msmt17'"),
        (lambda r: r["data"]["cuhk03"].update(variant="both"), "data.cuhk03.variant"),
        (lambda r: r["train"].update(batch_size=30), "multiple of train.num_instances"),
        (lambda r: r["models"].pop("effnetv2"), "missing key models.effnetv2"),
        (lambda r: r["train"].update(milestones=[30, "x"]), "train.milestones[1]"),
        (lambda r: r["eval"].update(metric="manhattan"), "eval.metric"),
        (lambda r: r["train"].update(nproc=0), "train.nproc must be >= 1"),
        (lambda r: r["train"].update(input_pipeline="gpu"), "train.input_pipeline"),
        (lambda r: r["input"].update(padding=-2), "input.padding must be >= 0"),
    ],
)
def test_bad_params_name_the_key(raw, edit, message):
    edit(raw)
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert message in str(err.value)


def test_load_params_names_the_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("backbone: [unclosed\n")
    with pytest.raises(ParamsError, match=str(bad)):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_flat_dict_for_tracking(raw):
    flat = as_flat_dict(parse_params(raw))
    assert flat["train.lr"] == pytest.approx(raw["train"]["lr"])
    assert flat["rerank.k1"] == 20
    assert "data.market1501.source" in flat


def test_stage_exits_nonzero_with_clear_error(tmp_path, raw):
    raw["backbone"] = "vgg16"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    proc = subprocess.run(
        [sys.executable, "stages/download.py", "--params", str(bad), "--dataset", "market1501"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "backbone: unknown 'vgg16'" in proc.stderr
    assert "Traceback" not in proc.stderr
