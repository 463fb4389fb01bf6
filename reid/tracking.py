"""MLflow tracking: the only module that talks to MLflow.

One MLflow run per trained model (backbone x dataset): the train stage opens it (params, loss
curves, the model file's digest as the tag `model_sha256`); evaluate and rerank find it by that
digest and add the test metrics under the same keys for every model (`test.mAP`,
`test.rerank.mAP`, ...), so the runs table sorts models by mAP across experiments. When the
current params differ from the run's (an experiment that changed only eval params), they start
a new run for the same model instead, so a run's params always describe its metrics.

The tracking URI is `MLFLOW_TRACKING_URI` when set (e.g. a lab's `mlflow server`), else
`sqlite:///<DVC_ROOT>/mlflow.db`, so runs started by `dvc exp run --temp/--queue` (which execute
in a temporary copy) still land in the real repository's store. With tracking disabled (e.g. on
a machine without mlflow) every call is a no-op.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reid.params import as_flat_dict

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
# MLflow 3 opens an experiment without this tag in its GenAI view (traces), not on the runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def tracking_uri() -> str:
    """Where runs go: `MLFLOW_TRACKING_URI`, else the sqlite store at the DVC root."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = Path(os.environ.get("DVC_ROOT", ".")).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


# The code (not params.yaml or dvc.lock, which `dvc exp run` rewrites) that `git_dirty` checks.
CODE_PATHS = ("reid", "stages", "dvc.yaml", "requirements.txt", "pyproject.toml")


def git_state() -> dict[str, Any]:
    """The code a model was trained with: the commit and whether tracked code had changes."""
    commit = git_commit()
    status = (_git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
              if commit else None)
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def model_params(flat: dict[str, str], backbone: str, dataset: str) -> dict[str, str]:
    """The params that can change one model's training or test metrics: all but the headline
    choice, the pictures, tracking itself, and other datasets' and backbones' sections."""
    skip = ("backbone", "datasets", "report.", "tracking.", "run.")
    return {k: v for k, v in flat.items() if not k.startswith(skip)
            and not (k.startswith("data.") and not k.startswith(f"data.{dataset}."))
            and not (k.startswith("models.") and not k.startswith(f"models.{backbone}."))}


def model_run_name(backbone: str, dataset: str) -> str:
    """`resnet50-market1501`, with the DVC experiment's name when one is running."""
    exp = os.environ.get("DVC_EXP_NAME", "")
    return f"{backbone}-{dataset}" + (f" @ {exp}" if exp else "")


DIGEST_CHARS = 16  # of a sha256: MLflow keeps at most 36 characters of a dataset's digest


def rows_digest(rows: pd.DataFrame) -> str:
    """The digest of a table's rows (its CSV text, no index): the same rows, the same digest,
    whatever else the manifest they come from holds."""
    text = rows.to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


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
    a disabled tracker reads none of it; `run_params` adds keys such as `run.dataset`. With
    `find` (tags), the newest run carrying those tags whose params agree with these on the keys
    that `match(flat params)` keeps is continued; without a match, or without `find`, a new run
    starts (or `run_id`'s, when given). A new run that had `find` is nested
    (`mlflow.parentRunId`) under the newest run with the `find` and `parent` tags (the model's
    training run: `parent={"stage": "train_<backbone>"}`), when there is one.
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
        find: dict[str, str] | None = None,
        match: Any = None,
        parent: dict[str, str] | None = None,
    ) -> None:
        self.enabled = enabled
        self.experiment = experiment
        self.run_name = run_name
        self.params = params
        self.run_params = run_params or {}
        self.tags = tags or {}
        self.run_id = run_id
        self.find = find
        self.match = match or (lambda flat: flat)
        self.parent = parent
        self._mlflow: Any = None

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri())
        experiment_id = _experiment_id(mlflow, self.experiment)
        flat = {k: str(v) for k, v in {
            **(as_flat_dict(self.params) if self.params is not None else {}),
            **self.run_params}.items()}
        found = origin = None
        if self.find and not self.run_id:
            found = _matching_run(mlflow, experiment_id, self.find, self.match(flat))
            if found is None and self.parent:  # a new run of the model, nested under the
                origin = _matching_run(  # run that trained it
                    mlflow, experiment_id, {**self.find, **self.parent}, {})
        run = mlflow.start_run(run_id=found or self.run_id, experiment_id=experiment_id,
                               run_name=None if found or self.run_id else self.run_name)
        self.run_id = run.info.run_id
        fresh = {k: v for k, v in flat.items() if k not in run.data.params}
        if fresh:
            mlflow.log_params(fresh)
        # a found run keeps the tags of the stage that started it (its commit, its stage) and
        # says which code and experiment evaluated it last
        tags = {**(self.find or {}), **self.tags,
                **({"mlflow.parentRunId": origin} if origin else {})}
        mlflow.set_tags({**tags, **{f"evaluated_{k}": v for k, v in run_tags().items()
                                    if k in ("git_commit", "dvc_exp_name")}}
                        if found else run_tags(tags))
        log.info("MLflow run %s (%s) at %s", self.run_id, self.run_name, tracking_uri())
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._mlflow is not None:
            self._mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self._mlflow is not None:
            self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tags(self, tags: dict[str, str]) -> None:
        if self._mlflow is not None:
            self._mlflow.set_tags(tags)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._mlflow is not None and Path(path).exists():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dataset(self, rows: pd.DataFrame, name: str, source: str | Path, context: str,
                    tags: dict[str, str] | None = None) -> None:
        """`rows` as a dataset input of the run (the runs table's Dataset column): `name`, the
        digest of the rows (`rows_digest`), `source` (the file they were read from), `context`
        (`training`, `validation`, `test`) and input `tags`.

        Only the description is stored (schema, row count), never the rows. MLflow keeps one
        input per dataset name and digest in a run, so a resumed training that logs the same
        rows again adds nothing.
        """
        if self._mlflow is None:
            return
        import mlflow.data
        from mlflow.data.sources import LocalArtifactDatasetSource

        # the source's class, as a plain path string warns that it is ambiguous (mlflow#9702)
        local_file = LocalArtifactDatasetSource(Path(source).as_posix())
        with warnings.catch_warnings():  # a hint for model signatures, not for a data record
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            dataset = mlflow.data.from_pandas(rows, source=local_file, name=name,
                                              digest=rows_digest(rows))
            self._mlflow.log_input(dataset, context=context, tags=tags)

    def log_model(self, model: Any, name: str = "model") -> None:
        """The network as an MLflow PyTorch model (`mlflow.pytorch.load_model` reads it back).

        Pickled, so loading gives back the module itself (MLflow's default `pt2` is a traced
        graph that needs an example input), with the `reid` package alongside (`code_paths`):
        loading needs no checkout.
        """
        if self._mlflow is None:
            return
        import mlflow.pytorch

        mlflow.pytorch.log_model(
            model, name=name, code_paths=[str(Path(__file__).resolve().parent)],
            pip_requirements=_model_requirements(), serialization_format="pickle",
        )


def _experiment_id(mlflow: Any, name: str) -> str:
    """The experiment's id, created (or tagged, if older) so the UI opens on its runs."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        try:
            return mlflow.create_experiment(name, tags=EXPERIMENT_TAGS)
        except mlflow.exceptions.MlflowException:  # another stage created it meanwhile
            experiment = mlflow.get_experiment_by_name(name)
    for key, value in EXPERIMENT_TAGS.items():
        if experiment.tags.get(key) != value:
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def _matching_run(mlflow: Any, experiment_id: str, tags: dict[str, str],
                  wanted: dict[str, str]) -> str | None:
    """The newest run with `tags` whose params hold `wanted` exactly, or None."""
    for value in tags.values():  # digests and names: nothing to escape in the filter
        if not re.fullmatch(r"[\w.:-]+", value):
            raise ValueError(f"tag value {value!r} cannot be searched for")
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow.search_runs([experiment_id], filter_string=query, output_format="list",
                              order_by=["attributes.start_time DESC"])
    for run in runs:
        if {k: run.data.params.get(k) for k in wanted} == wanted:
            return run.info.run_id
    return None


def _model_requirements() -> list[str]:
    """Pinned torch and timm of this environment (no inference: it imports every module)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("torch", "torchvision", "timm")]
