"""The tiny generated-data params the end-to-end tests run the pipeline on, and the copy of
the repository that the shared tiny `dvc repro` (tests/conftest.py) runs in."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tiny_params(path: Path, *, tracking: bool = True) -> None:
    """Shrink the params file at `path` in place: a few ids, 1 epoch, no loader workers."""
    params = yaml.safe_load(path.read_text())
    params["data"]["market1501"]["generated"].update(
        num_train_ids=8, num_test_ids=6, num_distractors=4, num_junk=2, images_per_camera=[1, 2]
    )
    params["data"]["cuhk03"]["generated"].update(num_pairs=1, ids_per_pair=12, num_test_ids=6,
                                                 images_per_view=[2, 3])
    params["input"].update(height=32, width=16)
    params["train"].update(epochs=1, batch_size=16, num_instances=4, warmup_epochs=1,
                           milestones=[1], num_workers=0)
    params["eval"].update(batch_size=64)
    params["report"].update(num_queries=2, top_k=5)
    params["tracking"]["enabled"] = tracking
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run `cmd`; its stdout, or a failed assertion with the end of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{tail}"
    return proc.stdout


def run_stage(script: str, *args: str, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> None:
    """A stage script as DVC runs it, in this process (no second start of Python, torch and
    MLflow): in `cwd` (default: the current folder), with the variables `env` set."""
    path = REPO / "stages" / script
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", [str(path), *args])
        if cwd is not None:
            mp.chdir(cwd)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        runpy.run_path(str(path), run_name="__main__")


def copy_repo(work: Path) -> Path:
    """The repository's files (tracked or not ignored) copied into `work`, without the
    committed pipeline outputs, with the tiny params."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)
    for generated in ("metrics", "results", "plots", "dvc.lock"):
        target = work / generated
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    tiny_params(work / "params.yaml")
    return work


def pipeline_env(work: Path) -> dict[str, str]:
    """The environment the pipeline's commands run with in the copy `work`."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'test-mlflow.db'}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["PYTHONPATH"] = str(work)  # the copy's reid, whose files DVC hashes, not the repo's
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.com"
    return env
