"""Evaluation during training: the validation split, and the test split left alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch

from reid.data.manifest import build_manifest, read_manifest
from reid.errors import InputError
from reid.params import ParamsError, load_params, parse_params
from reid.paths import manifest_path, model_path, raw_dir, split_dir, train_plot_dir
from reid.pipeline.validation import validation_split
from tests.dvc_stages import REPO
from tests.tiny import tiny_params


def train_rows(ids: int = 6) -> pd.DataFrame:
    """ids identities, each with 2 images on each of cameras 1-3."""
    entries = [(f"{pid}_{cam}_{i}.jpg", pid, cam)
               for pid in range(10, 10 + ids) for cam in (1, 2, 3) for i in range(2)]
    manifest = build_manifest(entries, [], [])
    return manifest[manifest["split"] == "train"]


def test_validation_split_holds_ids_out_and_relabels_the_rest():
    rows = train_rows()
    kept, val = validation_split(rows, 2, seed=0)
    assert set(kept["pid"]).isdisjoint(val["pid"]) and val["pid"].nunique() == 2
    assert sorted(kept["label"].unique()) == list(range(4))
    queries = val[val["split"] == "query"]
    assert len(queries) == 6 and not queries.duplicated(["pid", "camid"]).any()  # 1 per camera
    gallery = val[val["split"] == "gallery"]
    for pid, cam in zip(queries["pid"], queries["camid"], strict=True):
        assert (gallery[gallery["pid"] == pid]["camid"] != cam).any()  # a match elsewhere
    assert validation_split(rows, 2, seed=0)[1].equals(val)  # chosen by the seed
    assert any(set(validation_split(rows, 2, seed=s)[1]["pid"]) != set(val["pid"])
               for s in range(1, 6))


def test_validation_split_refuses_what_it_cannot_hold_out():
    with pytest.raises(InputError, match="eval.val_ids: 5 validation identities"):
        validation_split(train_rows(6), 5, seed=0)  # 1 id would be left to train on


def test_best_val_needs_a_validation_split():
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["eval"].update(select="best_val", val_ids=0)
    with pytest.raises(ParamsError, match="eval.select: best_val .* needs eval.val_ids > 0"):
        parse_params(raw)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The tiny generated Market-1501 downloaded and split in a working copy."""
    from reid.pipeline.download import download
    from reid.pipeline.split import split

    tiny_params(_copy_params(tmp_path), tracking=False)
    monkeypatch.chdir(tmp_path)
    params = load_params("params.yaml")
    data = params.data["market1501"]
    download("market1501", data, raw_dir("market1501"))
    split("market1501", data, raw_dir("market1501"), split_dir("market1501"))
    return params


def _copy_params(tmp_path: Path) -> Path:
    target = tmp_path / "params.yaml"
    target.write_text((REPO / "params.yaml").read_text())
    return target


def _train(params, **eval_changes):
    from reid.pipeline.training import train_backbone

    params = dataclasses.replace(
        params, eval=dataclasses.replace(params.eval, period=1, **eval_changes),
        train=dataclasses.replace(params.train, epochs=3, warmup_epochs=1, milestones=[2]))
    train_backbone(params, "resnet50", "market1501", progress=False)
    return pd.read_csv(train_plot_dir("resnet50", "market1501") / "eval.csv")


def test_with_a_validation_split_the_test_images_are_never_read(workdir):
    manifest = read_manifest(manifest_path("market1501"))
    test_images = manifest[manifest["split"] != "train"]["path"]
    for path in test_images:
        Path(path).unlink()  # reading any of them would fail
    evals = _train(workdir, val_ids=2, select="best_val")
    assert evals["split"].eq("validation").all() and evals["epoch"].tolist() == [1, 2, 3]
    saved = torch.load(model_path("resnet50", "market1501"), weights_only=True)
    best = evals.loc[evals["mAP"].idxmax()]  # the first of equal maxima
    assert saved["selected"]["epoch"] == best["epoch"] and saved["selected"]["by"] == (
        "best validation mAP")
    assert saved["num_classes"] == manifest[manifest["split"] == "train"]["pid"].nunique() - 2
    # without the validation split the same run scores the test split: it needs those images
    with pytest.raises(InputError, match="cannot read image"):
        _train(workdir, val_ids=0, select="last")


def test_without_a_validation_split_training_scores_the_test_split(workdir):
    evals = _train(workdir, val_ids=0, select="last")
    assert evals["split"].eq("test").all() and len(evals) == 3
    assert ((0 <= evals["mAP"]) & (evals["mAP"] <= 100)).all()
    saved = torch.load(model_path("resnet50", "market1501"), weights_only=True)
    assert saved["selected"] == {"epoch": 3, "by": "last", "split": "test",
                                 "mAP": evals["mAP"].iloc[-1]}


def test_decoded_images_embed_as_the_test_transforms(workdir):
    """extract_decoded on images decoded once == extract_features through the DataLoader."""
    from reid.data.batches import decode_images
    from reid.engine.extract import extract_decoded, extract_features
    from reid.pipeline.features import query_gallery_loaders
    from reid.pipeline.models import initial_model

    rows = read_manifest(manifest_path("market1501"))
    cpu, (height, width) = torch.device("cpu"), (workdir.input.height, workdir.input.width)
    torch.manual_seed(0)
    model = initial_model(workdir, "resnet50", 8).eval()
    loader = query_gallery_loaders(workdir, rows, (height, width), cpu)["gallery"]
    decoded = decode_images(rows[rows["split"] == "gallery"]["path"].tolist(), height, width,
                            num_workers=0, progress=False)
    for flip in (True, False):
        expected = torch.from_numpy(extract_features(model, loader, device=cpu, flip=flip))
        got = extract_decoded(model, decoded, device=cpu, batch_size=64, flip=flip)
        assert torch.allclose(got, expected, atol=1e-6)
        nhwc = extract_decoded(model, decoded, device=cpu, flip=flip, channels_last=True)
        assert torch.allclose(nhwc, got, atol=1e-5)  # the memory order the GPU path uses
    assert not torch.allclose(got, extract_decoded(model, decoded, device=cpu, flip=True))


@pytest.mark.parametrize(("flip", "period_flip"), [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("fits", [True, False])
def test_scoring_during_training_is_the_evaluate_stages(workdir, monkeypatch, flip,
                                                        period_flip, fits):
    """The evaluator's scores are the extract_features + evaluate path's, mirror-averaged
    when eval.period_flip whatever eval.flip says; the same when the decoded images do not
    fit in memory and the DataLoader decodes them at every evaluation."""
    import reid.pipeline.validation as validation
    from reid.engine.extract import extract_features
    from reid.pipeline.features import query_gallery_loaders
    from reid.pipeline.models import initial_model
    from reid.pipeline.scoring import score, scores

    monkeypatch.setattr(validation, "fits_in_host_memory", lambda nbytes: fits)
    decoded, decode = [], validation.decode_images
    monkeypatch.setattr(validation, "decode_images",
                        lambda *a, **k: decoded.append(1) or decode(*a, **k))
    rows = read_manifest(manifest_path("market1501"))
    rows = rows[rows["split"] != "train"]
    cpu, size = torch.device("cpu"), (workdir.input.height, workdir.input.width)  # tiny
    torch.manual_seed(0)
    model = initial_model(workdir, "resnet50", 8).eval()
    params = dataclasses.replace(workdir, eval=dataclasses.replace(
        workdir.eval, flip=flip, period_flip=period_flip))
    evaluator = validation.build_evaluator(params, rows, size, cpu)
    assert len(decoded) == (2 if fits else 0)  # query and gallery, once

    loaders = query_gallery_loaders(params, rows, size, cpu)
    arrays = {s: extract_features(model, loaders[s], device=cpu, flip=period_flip)
              for s in loaders}
    for s in loaders:
        part = rows[rows["split"] == s]
        arrays.update({f"{s}_pids": part["pid"].to_numpy(),
                       f"{s}_camids": part["camid"].to_numpy()})
    expected = scores(score(arrays, params.eval), digits=None)
    assert evaluator(model) == pytest.approx(expected, abs=1e-9)
    assert evaluator(model) == pytest.approx(expected, abs=1e-9)  # and again, same images

