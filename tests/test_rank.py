"""`reid rank`: the ranking CSV against distances computed here, re-ranking, pictures, errors."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid.api import load_model
from reid.commands import main, rank
from reid.metrics.rerank import k_reciprocal_rerank
from reid.report.ranked import NEUTRAL

NUM_QUERY, NUM_GALLERY = 4, 10


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> dict[str, list[Path]]:
    """3 identities as colour patterns plus noise; the gallery holds one exact duplicate."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    colours = np.array([[200, 40, 40], [40, 160, 60], [50, 60, 210]])

    def crop(ident: int) -> np.ndarray:
        base = np.zeros((128, 64, 3))
        base[:64] = colours[ident]
        base[64:] = colours[(ident + 1) % 3] * 0.6
        return np.clip(base + rng.normal(0, 80, base.shape), 0, 255).astype(np.uint8)

    (root / "query").mkdir()
    (root / "gallery").mkdir()
    query = []
    for i in range(NUM_QUERY):
        query.append(root / "query" / f"q{i}.png")
        Image.fromarray(crop(i % 3)).save(query[-1])
    for i in range(NUM_GALLERY - 1):
        Image.fromarray(crop(i % 3)).save(root / "gallery" / f"g{i:02d}.png")
    shutil.copy(root / "gallery" / "g02.png", root / "gallery" / "g02b.png")
    gallery = sorted((root / "gallery").glob("*.png"))  # g02 then g02b: a tie, in this order
    # queries given in an order that is not sorted: the CSV must keep it
    return {"query": [query[i] for i in (2, 0, 3, 1)], "gallery": gallery,
            "gallery_dir": [root / "gallery"]}


@pytest.fixture(scope="module")
def features(model_file, crops) -> tuple[np.ndarray, np.ndarray]:
    model = load_model(model_file, device="cpu")
    return model.embed(crops["query"]), model.embed(crops["gallery"])


def read_ranking(out: Path) -> list[dict[str, str]]:
    with (out / "ranking.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def expected_rows(crops, distances: np.ndarray, k: int) -> list[tuple[str, int, str]]:
    rows = []
    for q, path in enumerate(crops["query"]):
        order = sorted(range(distances.shape[1]), key=lambda g: (distances[q, g], g))[:k]
        rows += [(str(path), r, str(crops["gallery"][g])) for r, g in enumerate(order, 1)]
    return rows


def check_ranking(rows, crops, distances: np.ndarray, k: int) -> None:
    assert list(rows[0]) == ["query", "rank", "gallery", "distance"]
    got = [(r["query"], int(r["rank"]), r["gallery"]) for r in rows]
    assert got == expected_rows(crops, distances, k)
    index = {str(p): i for i, p in enumerate(crops["gallery"])}
    query_index = {str(p): i for i, p in enumerate(crops["query"])}
    wanted = [distances[query_index[r["query"]], index[r["gallery"]]] for r in rows]
    np.testing.assert_allclose([float(r["distance"]) for r in rows], wanted, rtol=1e-5,
                               atol=1e-6)


def run_rank(model_file, crops, out: Path, *options: str) -> int:
    return main(["rank", str(model_file), "--query", *map(str, crops["query"]),
                 "--gallery", *map(str, crops["gallery_dir"]), "-o", str(out), *options])


def test_plain_ranking_is_squared_euclidean_argsort(model_file, crops, features, tmp_path,
                                                    capsys):
    q, g = (f.astype(np.float64) for f in features)
    np.testing.assert_array_equal(features[1][2], features[1][3])  # the duplicate: a tie
    distances = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    out = tmp_path / "out"
    assert run_rank(model_file, crops, out, "--top-k", "100", "--pictures", "2") == 0
    rows = read_ranking(out)
    assert len(rows) == NUM_QUERY * NUM_GALLERY  # --top-k capped at the gallery size
    check_ranking(rows, crops, distances, NUM_GALLERY)
    printed = capsys.readouterr().out
    assert f"ranked {NUM_QUERY} queries against {NUM_GALLERY} gallery images" in printed
    assert "capped at the gallery size" in printed and "2 ranked-list pictures" in printed

    pictures = sorted(p.name for p in (out / "ranked").iterdir())
    assert pictures == ["0000_q2.png", "0001_q0.png"]
    with Image.open(out / "ranked" / "0000_q2.png") as picture:
        # 128x64 tiles framed by 4: 11 cells of 76 px and the gap; 14 px of distances under
        assert picture.size == (11 * 76 + 12, 136 + 18 + 4 + 14)
        assert picture.getpixel((76 + 12 + 1, 18 + 1)) == NEUTRAL  # rank 1's frame: no ids
    assert not [p for p in out.rglob(".*")]  # no temporaries left


def test_rerank_and_top_k(model_file, crops, features, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_rank(model_file, crops, out, "--rerank", "--k1", "4", "--k2", "2",
                    "--lambda", "0.2", "--pictures", "9") == 0
    rows = read_ranking(out)
    reranked = k_reciprocal_rerank(*features, k1=4, k2=2, lambda_value=0.2)
    check_ranking(rows, crops, reranked, NUM_GALLERY)
    # the test means something: re-ranking (with these k1, k2, lambda) reorders the lists
    q, g = (f.astype(np.float64) for f in features)
    plain = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    got = [(r["query"], int(r["rank"]), r["gallery"]) for r in rows]
    assert got != expected_rows(crops, plain, NUM_GALLERY)
    assert got != expected_rows(crops, k_reciprocal_rerank(*features), NUM_GALLERY)
    assert len(list((out / "ranked").iterdir())) == NUM_QUERY  # --pictures capped at queries

    capsys.readouterr()
    assert run_rank(model_file, crops, out, "--top-k", "3", "--pictures", "0") == 0
    assert "pictures of an earlier ranking" in capsys.readouterr().err  # ranked/ is stale
    rows = read_ranking(out)
    assert len(rows) == NUM_QUERY * 3
    check_ranking(rows, crops, plain, 3)


def test_top_k_order_is_stable_in_blocks(monkeypatch):
    ties = np.random.default_rng(0).integers(0, 3, (3, 200)).astype(np.float32)
    unstable = np.argsort(ties, axis=1, kind="quicksort")[:, :90]
    assert (unstable != np.argsort(ties, axis=1, kind="stable")[:, :90]).any()  # ties matter
    order = rank.top_k_order(ties, 90)
    assert order.shape == (3, 90)
    for row, dist in zip(order, ties, strict=True):
        expected = sorted(range(200), key=lambda g, d=dist: (d[g], g))[:90]
        assert row.tolist() == expected
    monkeypatch.setattr(rank, "SORT_ROWS", 2)  # blocks of queries give the same rows
    dist = np.random.default_rng(0).random((5, 7))
    np.testing.assert_array_equal(rank.top_k_order(dist, 50), np.argsort(dist, axis=1))


@pytest.mark.parametrize("case", ["empty folder", "not an image", "not a model", "top-k 0",
                                  "no model", "lambda 2"])
def test_bad_input_is_one_error_line(case, model_file, crops, tmp_path, capsys):
    model, query, gallery = model_file, crops["query"], crops["gallery_dir"]
    options: list[str] = []
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        query, message = [tmp_path / "empty"], "empty: no images"
    elif case == "not an image":
        folder = tmp_path / "gallery"
        shutil.copytree(crops["gallery_dir"][0], folder)
        (folder / "notes.jpg").write_text("not an image")
        gallery, message = [folder], "notes.jpg: cannot read image"
    elif case == "not a model":
        model = tmp_path / "model.pt"
        model.write_text("text")
        message = "model.pt: not a model file of reid-pipeline"
    elif case == "no model":
        model, message = tmp_path / "absent.pt", "absent.pt: model file not found"
    elif case == "top-k 0":
        options, message = ["--top-k", "0"], "--top-k must be >= 1, got 0"
    else:
        options, message = ["--rerank", "--lambda", "2"], "--lambda must be in [0, 1]"
    out = tmp_path / "out"
    status = main(["rank", str(model), "--query", *map(str, query),
                   "--gallery", *map(str, gallery), "-o", str(out), *options])
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not (out / "ranking.csv").exists()


def test_an_image_in_both_sets_is_not_its_own_match(tmp_path):
    import numpy as np

    from reid.commands.rank import same_files, top_k_order

    images = [tmp_path / f"{i}.png" for i in range(3)]
    mask = same_files([images[2], images[0]], images)
    assert mask.tolist() == [[False, False, True], [True, False, False]]
    distances = np.where(mask, np.inf, np.zeros((2, 3)))
    assert top_k_order(distances, 2).tolist() == [[0, 1], [1, 2]]
