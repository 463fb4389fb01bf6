"""`reid compare`: paired comparisons of two revisions' per-query results, read from git."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reid.commands import main
from reid.commands.compare import compare

FILE = "metrics/market1501/per_query/resnet50.csv"


def per_query(seed: int, gain: float = 0.0, num_ids: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pids = np.repeat(np.arange(num_ids), 3)
    ap = np.clip(rng.random(len(pids)) + gain, 0, 1)
    return pd.DataFrame({
        "query": np.arange(len(pids)), "path": [f"{i:04d}.jpg" for i in range(len(pids))],
        "pid": pids, "camid": 1, "ap": ap,
        "first_match_rank": np.where(ap > 0.5, 1, 4),
    })


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, table: pd.DataFrame, message: str, gallery: int = 100) -> str:
    (repo / FILE).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(repo / FILE, index=False)
    record = {"num_gallery": gallery, "gallery_sha256": str(gallery), "protocol": "Market"}
    (repo / FILE).with_name("gallery.json").write_text(json.dumps(record))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path) -> Path:
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    return tmp_path


def test_same_results_are_no_significant_difference(repo):
    first = commit(repo, per_query(0), "first")
    (repo / "README").write_text("docs only")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "docs")
    result = compare(first, "HEAD", repo, resamples=2000, seed=0)
    change = result["market1501"]["resnet50"]["plain"]["mAP"]
    assert change["delta"] == 0.0 and change["p_value"] == 1.0


def test_a_real_gain_is_significant_and_noise_is_not(repo):
    base = commit(repo, per_query(0), "base")
    better = commit(repo, per_query(0, gain=0.05), "better")
    change = compare(base, better, repo, resamples=2000, seed=0)["market1501"]["resnet50"]
    assert change["plain"]["mAP"]["interval"][0] > 0
    assert change["plain"]["mAP"]["p_value"] < 0.01
    noisy = commit(repo, per_query(1), "another random model")
    change = compare(base, noisy, repo, resamples=2000, seed=0)["market1501"]["resnet50"]
    lo, hi = change["plain"]["mAP"]["interval"]
    assert lo < 0 < hi


def test_workspace_and_experiment_names_are_revisions(repo, capsys):
    base = commit(repo, per_query(0), "base")
    exp = commit(repo, per_query(0, gain=0.05), "experiment")
    git(repo, "reset", "-q", "--hard", base)
    git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/bold-lamb", exp)
    per_query(0, gain=-0.05).to_csv(repo / FILE, index=False)  # uncommitted, worse
    via_exp = compare(base, "bold-lamb", repo, resamples=500, seed=0)
    assert via_exp["market1501"]["resnet50"]["plain"]["mAP"]["delta"] > 0
    via_workspace = compare("HEAD", "workspace", repo, resamples=500, seed=0)
    assert via_workspace["market1501"]["resnet50"]["plain"]["mAP"]["delta"] < 0


def test_different_query_sets_are_refused(repo):
    base = commit(repo, per_query(0), "base")
    fewer = commit(repo, per_query(0, num_ids=30), "other split")
    with pytest.raises(ValueError, match="different query sets"):
        compare(base, fewer, repo, resamples=100, seed=0)


def test_another_gallery_is_refused(repo):
    base = commit(repo, per_query(0), "base")
    more = commit(repo, per_query(0, gain=0.05), "distractors added", gallery=150)
    with pytest.raises(ValueError, match="different galleries .100 vs 150 images"):
        compare(base, more, repo, resamples=100, seed=0)


def test_command_prints_verdicts_and_one_line_errors(repo, monkeypatch, capsys):
    base = commit(repo, per_query(0), "base")
    commit(repo, per_query(0, gain=0.05), "better")
    monkeypatch.chdir(repo)
    assert main(["compare", base, "HEAD", "--resamples", "500"]) == 0
    out = capsys.readouterr().out
    assert "higher in B (significant)" in out and "market1501" in out
    assert "<2e-03" in out and "by chance alone" in out
    assert main(["compare", base, "HEAD", "--json", "--resamples", "500"]) == 0
    assert "plain" in json.loads(capsys.readouterr().out)["market1501"]["resnet50"]
    assert main(["compare", "no-such-rev", "HEAD"]) == 1
    assert "neither a git revision nor a DVC experiment" in capsys.readouterr().err


def test_python_dash_m_reid_runs():
    proc = subprocess.run([sys.executable, "-m", "reid", "compare", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "paired" in proc.stdout
