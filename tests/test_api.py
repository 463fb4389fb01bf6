"""`reid.api.load_model(...).embed(...)` and the `reid embed` / `reid info` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid.api import load_model
from reid.commands import main
from reid.errors import InputError


def test_embed_is_the_pipelines_feature_for_every_input_kind(model_file, images):
    from reid.params import load_params
    from reid.pipeline.features import extract_splits
    from tests.dvc_stages import REPO

    model = load_model(model_file, device="cpu")
    paths = sorted(images.glob("*.png"))
    by_folder = model.embed(images)
    assert by_folder.shape == (5, 2048) and by_folder.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(by_folder, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(model.embed([str(p) for p in paths]), by_folder)
    pil = [Image.open(p) for p in paths]
    np.testing.assert_allclose(model.embed(pil), by_folder, atol=1e-6)
    array = np.stack([np.asarray(p.convert("RGB")) for p in pil])
    np.testing.assert_allclose(model.embed(array), by_folder, atol=1e-6)
    np.testing.assert_allclose(model.embed(array[2]), by_folder[2:3], atol=1e-6)
    # the same rows as the extract_features stage computes with the default eval params
    from torch.utils.data import DataLoader

    from reid.data.dataset import ImageDataset
    from reid.data.transforms import build_test_transform

    loader = DataLoader(ImageDataset(paths, [0] * 5, build_test_transform(64, 32)), batch_size=2)
    stage = extract_splits(load_params(REPO / "params.yaml"), model.network, {"query": loader},
                  torch.device("cpu"), "test")
    np.testing.assert_allclose(stage["query"], by_folder, atol=1e-6)
    assert not np.allclose(model.embed(images, flip=False), by_folder, atol=1e-4)


def test_bad_inputs_are_one_clear_error(model_file, images, tmp_path):
    model = load_model(model_file, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        model.embed(tmp_path / "empty")
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(InputError, match="notes.jpg: cannot read image"):
        model.embed([tmp_path / "notes.jpg"])
    with pytest.raises(InputError, match="uint8"):
        model.embed(np.zeros((4, 4), dtype=np.float32))
    (tmp_path / "model.pt").write_text("text")
    with pytest.raises(InputError, match="not a model file of reid-pipeline"):
        load_model(tmp_path / "model.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="missing backbone"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "absent.pt")


def test_embed_and_info_commands(model_file, images, tmp_path, capsys):
    out = tmp_path / "feats.npz"
    assert main(["embed", str(model_file), str(images), "-o", str(out)]) == 0
    with np.load(out) as saved:
        assert saved["features"].shape == (5, 2048)
        assert [Path(p).name for p in saved["paths"]] == [f"{i:02d}.png" for i in range(5)]
    assert "5 images x 2048 features" in capsys.readouterr().out
    assert main(["info", str(model_file)]) == 0
    info = capsys.readouterr().out
    assert "resnet50" in info and "64, 32" in info and "from scratch" in info
    assert main(["embed", str(model_file), str(tmp_path / "nothing"), "-o", str(out)]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_load_model_is_exported_lazily_by_the_package():
    """`from reid import load_model` works, yet `import reid` alone (every stage) loads no API."""
    import subprocess
    import sys

    from tests.dvc_stages import REPO

    code = ("import sys, reid; assert 'reid.api' not in sys.modules; "
            "from reid import load_model; import reid.api; "
            "assert load_model is reid.api.load_model; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "ok"


def test_the_reid_command_parses_without_torch():
    """`reid --help` and argument errors answer at once: no sub-command imports torch to build
    its parser (importing it takes seconds)."""
    import subprocess
    import sys

    from tests.dvc_stages import REPO

    code = ("import sys; from reid.commands import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
