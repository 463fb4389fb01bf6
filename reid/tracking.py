"""MLflow tracking: the only module that talks to MLflow.

The tracking URI is `MLFLOW_TRACKING_URI` when set, else `sqlite:///<DVC_ROOT>/mlflow.db`, so
runs started by `dvc exp run --temp/--queue` (which execute in a temporary copy) still land in
the real repository's store. With tracking disabled (e.g. on a machine without mlflow) every
call is a no-op.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from reid.params import as_flat_dict

log = logging.getLogger(__name__)


def tracking_uri() -> str:
    """Where runs go: `MLFLOW_TRACKING_URI`, else the sqlite store at the DVC root."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(os.environ.get("DVC_ROOT", ".")).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_tags(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Tags that tie a run to its code and DVC experiment."""
    tags = {
        "git_commit": git_commit() or "unknown",
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "dvc_stage": os.environ.get("DVC_STAGE", ""),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
    }
    tags.update(extra or {})
    return {k: v for k, v in tags.items() if v}


class Tracker:
    """One MLflow run (or nothing, when disabled). Use as a context manager.

    `params` (the run's `Params`) is flattened into MLflow params only when the run starts, so
    a disabled tracker reads none of it; `run_params` adds keys such as `run.dataset`.
    """

    def __init__(
        self,
        enabled: bool,
        experiment: str,
        run_name: str,
        *,
        params: Any = None,
        run_params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.experiment = experiment
        self.run_name = run_name
        self.params = params
        self.run_params = run_params or {}
        self.tags = tags or {}
        self.run_id = run_id
        self._mlflow: Any = None

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_experiment(self.experiment)
        run = mlflow.start_run(run_id=self.run_id, run_name=None if self.run_id else self.run_name)
        self.run_id = run.info.run_id
        flat = {**(as_flat_dict(self.params) if self.params is not None else {}),
                **self.run_params}
        if flat:
            existing = run.data.params
            fresh = {k: str(v) for k, v in flat.items() if k not in existing}
            if fresh:
                mlflow.log_params(fresh)
        mlflow.set_tags(run_tags(self.tags))
        log.info("MLflow run %s (%s) at %s", self.run_id, self.run_name, tracking_uri())
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)
