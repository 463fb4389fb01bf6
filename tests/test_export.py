"""`reid export` (ONNX), `reid.export.OnnxModel` and `reid embed model.onnx`."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import reid.export
from reid.api import load_model
from reid.commands import main
from reid.data.images import image_loader
from reid.data.manifest import build_manifest, write_manifest
from reid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from reid.errors import InputError
from reid.export import METADATA_KEYS, EmbeddingModule, load_onnx
from reid.paths import manifest_path


@pytest.fixture(scope="module")
def exported(model_file, images, tmp_path_factory) -> tuple[Path, str]:
    """`reid export` with its default parity images: the query rows of the dataset manifest."""
    workdir = tmp_path_factory.mktemp("workspace")
    paths = sorted(images.glob("*.png"))
    entries = [(str(p), 1 + i % 2, 1 + i % 3) for i, p in enumerate(paths)]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        write_manifest(build_manifest(entries[:1], entries[1:4], entries[4:]),
                       manifest_path("market1501"))
        out = workdir / "model.onnx"
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main(["export", str(model_file), "-o", str(out)]) == 0
    return out, stdout.getvalue()


def test_export_prints_the_parity_on_the_manifests_query_images(exported):
    path, printed = exported
    match = re.search(r"parity: max \|onnx - torch\| = (\S+) on 3 images \(tolerance 1e-04; "
                      r"query images of data/split/market1501/manifest.csv\)", printed)
    assert match, printed
    assert float(match.group(1)) <= 1e-4
    assert path.is_file() and {p.name for p in path.parent.iterdir()} == {"model.onnx", "data"}


def test_batch_axis_is_dynamic_and_matches_pytorch(exported, model_file, images):
    path, _ = exported
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["features"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a number
    model = load_model(model_file, device="cpu")
    batch = next(iter(image_loader(images, model.transform, batch_size=5)))[0]
    wrapper = EmbeddingModule(model.network, flip=True, normalize=True).eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (1, 3):
        out = session.run(None, {"images": batch[:size].numpy()})[0]
        with torch.no_grad():
            expected = wrapper(batch[:size]).numpy()
        assert out.shape == (size, 2048) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_metadata_says_what_the_graph_expects(exported, model_file):
    path, _ = exported
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["reid.backbone"] == "resnet50" and meta["reid.dataset"] == "market1501"
    assert meta["reid.input_size"] == "64,32"
    assert tuple(map(float, meta["reid.mean"].split(","))) == IMAGENET_MEAN
    assert tuple(map(float, meta["reid.std"].split(","))) == IMAGENET_STD
    assert meta["reid.flip_averaged"] == "true" and meta["reid.l2_normalized"] == "true"
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert meta["reid.source_model"] == f"market1501.pt sha256:{digest}"
    text = meta["reid.preprocessing"]
    assert "64x32" in text and "bilinear" in text and "never applied twice" in text
    embedder = load_onnx(path)
    assert (embedder.input_size, embedder.flip, embedder.normalize) == ((64, 32), True, True)
    assert embedder.feature_dim == 2048


def test_embed_onnx_equals_embed_pt(exported, model_file, images, tmp_path, capsys):
    path, _ = exported
    out_pt, out_onnx = tmp_path / "pt.npz", tmp_path / "onnx.npz"
    assert main(["embed", str(model_file), str(images), "-o", str(out_pt),
                 "--batch-size", "2"]) == 0
    assert main(["embed", str(path), str(images), "-o", str(out_onnx), "--batch-size", "2"]) == 0
    assert "5 images x 2048 features (resnet50, 64x32, ONNX Runtime)" in capsys.readouterr().out
    with np.load(out_pt) as pt, np.load(out_onnx) as ox:
        assert ox["features"].shape == (5, 2048) and ox["features"].dtype == np.float32
        np.testing.assert_array_equal(ox["paths"], pt["paths"])
        np.testing.assert_allclose(ox["features"], pt["features"], atol=1e-4, rtol=0)
    # flip / normalisation are baked in: asking for the other setting is refused, not ignored
    assert main(["embed", str(path), str(images), "-o", str(out_onnx), "--no-flip"]) == 1
    assert "exported with flip" in capsys.readouterr().err
    with pytest.raises(InputError, match="exported with normalize"):
        load_onnx(path).embed(images, normalize=False)


def test_rank_with_onnx_ranks_like_pt(exported, model_file, images, tmp_path, capsys):
    import pandas as pd

    path, _ = exported
    tables = {}
    for name, model in (("pt", model_file), ("onnx", path)):
        out = tmp_path / name
        assert main(["rank", str(model), "--query", str(images), "--gallery", str(images),
                     "--pictures", "0", "-o", str(out)]) == 0
        tables[name] = pd.read_csv(out / "ranking.csv")
    assert tables["pt"][["query", "rank", "gallery"]].equals(
        tables["onnx"][["query", "rank", "gallery"]])
    np.testing.assert_allclose(tables["pt"]["distance"], tables["onnx"]["distance"], atol=1e-4)
    capsys.readouterr()
    assert main(["rank", str(path), "--query", str(images), "--gallery", str(images),
                 "--device", "cuda", "-o", str(tmp_path / "gpu")]) == 1
    assert "runs on the CPU" in capsys.readouterr().err


@pytest.mark.parametrize("backbone", ["resnet50_ibn_a", "effnetv2"])
def test_the_other_backbones_export_with_parity(backbone, images, tmp_path):
    """IBN-a's instance norms and EfficientNet-v2's blocks go through the same exporter.

    EfficientNet-v2 as B0, the smallest variant: the same fused and depthwise blocks with
    squeeze-excitation as the default S, in 15 s of export instead of 33 s."""
    from tests.conftest import write_model_file

    model_file = write_model_file(tmp_path / "market1501.pt", backbone,
                                  effnet_variant="tf_efficientnetv2_b0")
    out = tmp_path / "model.onnx"
    diff = reid.export.export_onnx(model_file, out, images=[images])
    assert diff <= 1e-4 and out.is_file()
    onnx_feats = load_onnx(out).embed(images)
    torch_feats = load_model(model_file, device="cpu").embed(images)
    assert onnx_feats.shape == torch_feats.shape == (5, load_model(model_file).feature_dim)
    np.testing.assert_allclose(onnx_feats, torch_feats, atol=1e-4, rtol=0)


def test_failed_parity_fails_the_export_and_leaves_no_file(model_file, images, tmp_path,
                                                           monkeypatch, capsys):
    """A graph that differs from extract_features (here by 0.01) is caught by the real check."""
    forward = EmbeddingModule.forward
    monkeypatch.setattr(EmbeddingModule, "forward", lambda self, x: forward(self, x) + 0.01)
    target = tmp_path / "out" / "model.onnx"
    target.parent.mkdir()
    target.write_text("the previous export")
    assert main(["export", str(model_file), "-o", str(target), "--images", str(images),
                 "--no-flip"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "does not reproduce PyTorch: max |onnx - torch| = 1.0e-02" in err[0]
    assert "on 5 images, above the tolerance 1e-04" in err[0]
    assert target.read_text() == "the previous export"
    assert [p.name for p in target.parent.iterdir()] == ["model.onnx"]  # no temporary left


def test_onnx_without_our_metadata_is_refused_in_one_line(images, tmp_path, capsys):
    identity = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["images"], ["features"])], "other",
        [onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [None, 3, 64, 32])],
        [onnx.helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, [None, 3, 64, 32])],
    ), opset_imports=[onnx.helper.make_opsetid("", 18)])
    onnx.save(identity, tmp_path / "other.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    out = tmp_path / "feats.npz"
    for name, message in (("other.onnx", "not an ONNX model exported by `reid export` (missing "
                                         "reid.backbone"),
                          ("text.onnx", "not an ONNX model (")):
        assert main(["embed", str(tmp_path / name), str(images), "-o", str(out)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / name}: {message}")
    assert not out.exists()


def test_export_needs_parity_images_and_a_positive_tolerance(model_file, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(tmp_path)  # no data/split/market1501/manifest.csv here
    assert main(["export", str(model_file), "-o", "model.onnx"]) == 1
    assert "give real crops with --images" in capsys.readouterr().err
    with pytest.raises(InputError, match="tolerance must be positive"):
        reid.export.export_onnx(model_file, "model.onnx", images=[tmp_path], tolerance=0)
    assert not (tmp_path / "model.onnx").exists()


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--images", "--tolerance", "--no-flip", "--no-normalize", "parity"):
        assert option in text
    from reid.export import DEFAULT_OPSET, DEFAULT_TOLERANCE

    flat = " ".join(text.split())
    assert f"(default {DEFAULT_TOLERANCE:.0e}, fp32)" in flat  # the help names the defaults
    assert f"(default {DEFAULT_OPSET})" in flat
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "export" in capsys.readouterr().out
