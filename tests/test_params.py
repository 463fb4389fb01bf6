import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import reid.params as rp
from reid.params import BACKBONES, ParamsError, as_flat_dict, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repo_params_load(raw):
    params = parse_params(raw)
    assert params.backbone in BACKBONES
    assert params.train.batch_size % params.train.num_instances == 0
    assert isinstance(params.train.lr, float)
    assert params.epochs_for("resnet50") == params.train.epochs


def test_datasets_by_name_and_format(raw):
    """A format defaults to the dataset's name; any other name says its format."""
    raw["datasets"] += ["duke", "msmt17", "mydata"]
    raw["data"].update(duke={"format": "market1501", "source": "/data/DukeMTMC-reID.zip"},
                       msmt17={"format": "msmt17", "source": "/data/MSMT17_V1"},
                       mydata={"format": "csv", "source": "/data/mine/list.csv"})
    data = parse_params(raw).data
    assert {name: d.format for name, d in data.items()} == {
        "market1501": "market1501", "cuhk03": "cuhk03", "duke": "market1501",
        "msmt17": "msmt17", "mydata": "csv"}
    assert data["duke"].sha256 is None and data["duke"].variant == "detected"


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
        (lambda r: r["datasets"].append("msmt17"), "data.msmt17 is missing (it needs"),
        (lambda r: (r["datasets"].append("duke"), r["data"].update(duke={"source": "/d.zip"})),
         "data.duke.format is missing"),
        (lambda r: r["data"]["cuhk03"].update(format="viper"), "data.cuhk03.format"),
        (lambda r: (r["datasets"].append("mine"),
                    r["data"].update(mine={"format": "csv", "source": "generated"})),
         "no built-in generated data in the csv format"),
        (lambda r: r["data"]["cuhk03"].update(variant="both"), "data.cuhk03.variant"),
        (lambda r: r["train"].update(batch_size=30), "multiple of train.num_instances"),
        (lambda r: r["models"].pop("effnetv2"), "missing key models.effnetv2"),
        (lambda r: r["train"].update(milestones=[30, "x"]), "train.milestones[1]"),
        (lambda r: r["eval"].update(metric="manhattan"), "eval.metric"),
        (lambda r: r["train"].update(nproc=0), "train.nproc must be >= 1"),
        (lambda r: r["train"].update(input_pipeline="gpu"), "train.input_pipeline"),
        (lambda r: r["input"].update(padding=-2), "input.padding must be >= 0"),
        (lambda r: r["train"].update(lr=-1), "train.lr must be > 0, got -1"),
        (lambda r: r["train"].update(num_instances=0), "train.num_instances must be >= 1"),
        (lambda r: r["train"].update(epochs=0), "train.epochs must be >= 1, got 0"),
        (lambda r: r["train"].update(batch_size=4), "at least 2 identities per batch"),
        (lambda r: r["train"].update(gamma=1.5), "train.gamma must be in (0, 1]"),
        (lambda r: r["train"].update(milestones=[8, 0]), "train.milestones[1] must be >= 1"),
        (lambda r: r["models"]["resnet50"].update(epochs=0), "models.resnet50.epochs must be"),
        (lambda r: r["input"].update(erasing_p=2), "input.erasing_p must be in [0, 1]"),
        (lambda r: r["eval"].update(max_rank=5), "eval.max_rank must be >= 10, got 5"),
        (lambda r: r["eval"].update(bootstrap_resamples=10), "eval.bootstrap_resamples"),
        (lambda r: r["rerank"].update(lambda_value=-0.1), "rerank.lambda_value must be in"),
        (lambda r: r["data"]["market1501"].update(sha256=0), "quote it"),
        (lambda r: r["train"].pop("lr"), "missing key train.lr"),
        (lambda r: r.pop("eval"), "missing key eval"),
        (lambda r: r["datasets"].append("../evil"), "datasets[2] must be a plain name"),
        (lambda r: r["data"].update({"../evil": {"format": "csv", "source": "/l.csv"}}),
         "data key must be a plain name (letters, digits, _ and -), got '../evil'"),
        (lambda r: r["data"].update({"a b": {"format": "csv", "source": "/l.csv"}}),
         "data key must be a plain name"),
        (lambda r: r["data"]["cuhk03"].pop("source"), "missing key data.cuhk03.source"),
        (lambda r: r["data"]["market1501"]["generated"].update(num_train_ids="8"),
         "data.market1501.generated.num_train_ids: expected int, got '8'"),
        (lambda r: r["data"]["market1501"]["generated"].update(cameras=12),
         "data.market1501.generated.cameras must be in [2, 9], got 12"),
        (lambda r: r["data"]["cuhk03"]["generated"].update(cameras=6),
         "unknown key(s) data.cuhk03.generated.cameras; expected: num_pairs"),
        (lambda r: r["data"]["cuhk03"]["generated"].pop("seed"),
         "missing key data.cuhk03.generated.seed"),
        (lambda r: r["data"]["cuhk03"]["generated"].update(images_per_view=[5, 2]),
         "data.cuhk03.generated.images_per_view must be [min, max] with min <= max"),
        (lambda r: r["data"]["cuhk03"]["generated"].update(images_per_view=[2, 6]),
         "data.cuhk03.generated.images_per_view[1] must be in [1, 5], got 6"),
        (lambda r: r["data"]["cuhk03"].pop("generated"), "missing key data.cuhk03.generated"),
        (lambda r: (r["datasets"].append("mine"),
                    r["data"].update(mine={"format": "csv", "source": "/l.csv", "generated": {}})),
         "data.mine.generated must be absent: no built-in generated data in the csv format"),
    ],
)
def test_bad_params_name_the_key(raw, edit, message):
    edit(raw)
    with pytest.raises(ParamsError) as err:
        parse_params(raw)
    assert message in str(err.value)


def test_params_yaml_is_the_one_source_of_defaults():
    """The section classes hold no defaults of their own, which could drift from params.yaml."""
    for cls in (rp.InputParams, rp.TrainParams, rp.EvalParams, rp.RerankParams,
                rp.ReportParams, rp.TrackingParams, rp.Params, rp.GeneratedMarketParams,
                rp.GeneratedCuhk03Params, rp.GeneratedMsmt17Params):
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING
                        or f.default_factory is not dataclasses.MISSING]
        assert not with_default, f"{cls.__name__} defaults {with_default}"


def test_optional_keys_default_to_what_params_yaml_spells_out(raw):
    """A dataset's and a model's optional keys default to None (absent) or to the value that
    params.yaml gives them, wherever it spells them."""
    for cls, entries in ((rp.DatasetParams, raw["data"]), (rp.ModelParams, raw["models"])):
        for f in dataclasses.fields(cls):
            assert f.default_factory is dataclasses.MISSING, f"{cls.__name__}.{f.name}"
            if f.default is dataclasses.MISSING or f.default is None:
                continue
            spelled = {name: entry[f.name] for name, entry in entries.items() if f.name in entry}
            assert spelled, f"params.yaml never spells {cls.__name__}.{f.name}"
            assert set(spelled.values()) == {f.default}, f"{cls.__name__}.{f.name}: {spelled}"


def test_generated_data_is_read_in_the_schema_of_its_format(raw):
    raw["datasets"] += ["duke", "msmt17"]
    raw["data"].update(
        duke={"format": "market1501", "source": "generated",
              "generated": raw["data"]["market1501"]["generated"]},
        msmt17={"source": "generated", "generated": {
            "version": "V2", "num_train_ids": 4, "num_test_ids": 4, "cameras": 15,
            "images_per_camera": [1, 2], "seed": 2}})
    data = parse_params(raw).data
    assert isinstance(data["duke"].generated, rp.GeneratedMarketParams)
    assert data["duke"].generated == data["market1501"].generated
    assert data["duke"].generated.num_train_ids == raw["data"]["market1501"]["generated"][
        "num_train_ids"]
    assert isinstance(data["cuhk03"].generated, rp.GeneratedCuhk03Params)
    assert isinstance(data["msmt17"].generated, rp.GeneratedMsmt17Params)
    assert data["msmt17"].generated.version == "V2"
    raw["data"]["duke"]["generated"] = raw["data"]["cuhk03"]["generated"]  # the wrong format's
    with pytest.raises(ParamsError, match=r"unknown key\(s\) data.duke.generated.ids_per_pair"):
        parse_params(raw)


def test_a_dataset_that_is_not_generated_needs_no_generated_section(raw):
    raw["data"]["market1501"].update(source="/data/Market-1501-v15.09.15.zip")
    del raw["data"]["market1501"]["generated"]
    assert parse_params(raw).data["market1501"].generated is None


def test_a_dataset_name_that_is_a_path_is_refused(tmp_path, raw):
    """`../evil` would have its files written to data/raw/../evil."""
    raw["datasets"].append("../evil")
    raw["data"]["../evil"] = {"format": "market1501", "source": "generated",
                              "generated": raw["data"]["market1501"]["generated"]}
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"datasets\[2\] must be a plain name"):
        load_params(bad)


def test_importing_params_loads_no_torch():
    """Every module takes BACKBONES from reid.params, which the stages import first: it stays
    light (`reid --help` and the params checks never load torch)."""
    code = ("import sys, reid.params; "
            "print(sorted(m for m in ('torch', 'timm', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


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


def test_warmup_longer_than_the_run_warns(raw, caplog):
    from reid.pipeline.training import train_config

    raw["train"].update(epochs=3, warmup_epochs=5, warmup_factor=0.01)
    params = parse_params(raw)
    with caplog.at_level("WARNING"):
        cfg = train_config(params, "resnet50")
    assert cfg.epochs == 3
    assert "stays in the warm-up" in caplog.text and "0.406 times train.lr" in caplog.text
    caplog.clear()
    raw["train"].update(epochs=12, warmup_epochs=1)
    with caplog.at_level("WARNING"):
        train_config(parse_params(raw), "resnet50")
    assert "warm-up" not in caplog.text
