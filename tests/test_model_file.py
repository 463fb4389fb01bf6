"""The model file's one owner (`reid.models.model_file`): safe to receive, same bytes for the
same training, one reader for the API, the commands, the stages and a resume."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import pytest
import torch

from reid.api import load_model
from reid.commands import main
from reid.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from reid.errors import InputError
from reid.models.model_file import ModelFile, read_model_file, write_model_file
from tests.conftest import write_model_file as write_test_model_file


class ShellPayload:
    """Unpickling this runs `touch MARKER`: what a pickled object in a received file can do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def poisoned(model_file, tmp_path) -> tuple[Path, Path]:
    """A real model file with one extra pickled object, and the marker its code would create."""
    marker = tmp_path / "payload-ran"
    saved = torch.load(model_file, weights_only=True)
    path = tmp_path / "market1501.pt"
    torch.save({**saved, "note": ShellPayload(marker)}, path)
    return path, marker


def test_a_pickled_payload_is_refused_everywhere_and_never_runs(poisoned, images, tmp_path,
                                                                capsys):
    path, marker = poisoned
    for read in (read_model_file, load_model):
        with pytest.raises(InputError, match=r"market1501\.pt: refused: .*system") as err:
            read(path)
        assert "\n" not in str(err.value)
    assert main(["info", str(path)]) == 1
    assert main(["embed", str(path), str(images), "-o", str(tmp_path / "f.npz")]) == 1
    assert main(["export", str(path), "-o", str(tmp_path / "m.onnx"), "--images",
                 str(images)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all("refused" in line and str(path) in line for line in errors)
    assert not marker.exists()
    # the payload is real: the unrestricted unpickler that reid no longer uses runs it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_checkpoint_with_a_payload_is_not_resumed_and_never_runs(tmp_path, caplog):
    marker = tmp_path / "payload-ran"
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, {"fingerprint": "abc", "epoch": 3, "extra": ShellPayload(marker)})
    with caplog.at_level(logging.WARNING):
        assert load_checkpoint(ckpt, "abc") is None
    assert "refused" in caplog.text and "starting fresh" in caplog.text
    assert not marker.exists()


def test_rng_states_round_trip_as_plain_data(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path / "c.pt", {"fingerprint": "f", "rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()  # move every stream on
    set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_same_model_written_twice_gives_the_same_bytes(tmp_path):
    """Times and paths stay out: only what trained the model decides the file's bytes."""
    model_file = read_model_file(write_test_model_file(tmp_path / "a" / "market1501.pt"))
    timed = [{"epoch": 1, "loss": 3.5, "epoch_seconds": 1.25, "images_per_s": 40.0,
              "eval_seconds": 0.5, "eval.mAP": 12.0}]
    write_model_file(tmp_path / "b.pt", dataclasses.replace(model_file, history=timed))
    timed[0].update(epoch_seconds=9.0, images_per_s=3.0, eval_seconds=2.0)
    write_model_file(tmp_path / "other-name.pt", dataclasses.replace(model_file, history=timed))
    assert (tmp_path / "b.pt").read_bytes() == (tmp_path / "other-name.pt").read_bytes()
    assert read_model_file(tmp_path / "b.pt").history == [
        {"epoch": 1, "loss": 3.5, "eval.mAP": 12.0}]


def test_a_model_file_of_earlier_versions_still_loads(model_file, tmp_path):
    """Files written before the one owner: a plain torch.save of the same dict, timings in the
    history (all tensors and plain data, so the restricted reader takes them)."""
    saved = torch.load(model_file, weights_only=True)
    old = tmp_path / "old.pt"
    torch.save({**saved, "history": [{"epoch": 1, "loss": 3.5, "epoch_seconds": 2.0}],
                "train_config": {"lr": 1e-3, "milestones": (5, 7)}}, old)
    model = load_model(old, device="cpu")
    assert model.backbone == "resnet50" and model.epochs == 1
    for key, value in model.network.state_dict().items():
        assert torch.equal(value, saved["state_dict"][key])


def test_the_network_is_built_from_the_file_not_from_params(tmp_path):
    """An EfficientNet variant other than params.yaml's is rebuilt as the file says."""
    from reid.models import build_model
    from reid.models.model_file import build_network

    net = build_model("effnetv2", 3, effnet_variant="tf_efficientnetv2_b0")
    path = tmp_path / "b0.pt"
    write_model_file(path, ModelFile(backbone="effnetv2", num_classes=3, input_size=(64, 32),
                                     state_dict=net.state_dict(),
                                     effnet_variant="tf_efficientnetv2_b0"))
    rebuilt = build_network(read_model_file(path))
    assert rebuilt.feature_dim == net.feature_dim
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(
        p.numel() for p in net.parameters())


def test_describe_and_results_info_share_one_init_rule(tmp_path):
    from reid.models.model_file import describe, results_info

    base = read_model_file(write_test_model_file(tmp_path / "m.pt"))
    for pretrained, init in ((None, "from scratch"), ("", "ImageNet"), ("w.pth", "ImageNet")):
        model_file = dataclasses.replace(base, pretrained=pretrained)
        assert describe(model_file)["init"] == init
        assert results_info(model_file, "0" * 64)["pretrained"] == (init == "ImageNet")
