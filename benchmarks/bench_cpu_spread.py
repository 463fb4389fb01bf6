"""How far CPU training drifts between processors: the default ResNet50 / Market-1501 run under
environments that make PyTorch's CPU kernels behave as on other machines.

    python benchmarks/bench_cpu_spread.py [--configs default omp1 ...]

Needs the default run's `data/raw/market1501` and `data/split/market1501` (`dvc repro
split@market1501`). Each config trains `stages/train.py --backbone resnet50 --dataset
market1501` in a fresh process and a scratch copy of the workspace (tracking off), then
embeds and scores the model with the pipeline's own functions. oneDNN (the convolutions), MKL
(the matrix products) and ATen's vector code pick their kernels from the processor's
instruction sets and split work by thread count; capping them emulates a lesser processor (only
downwards: a run on this machine cannot emulate a processor with more than it has). Printed per
config: wall seconds, the epoch-2 and final losses, mAP / rank-1, and which configs ended with
bit-identical weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "default": {},
    "omp1": {"OMP_NUM_THREADS": "1"},  # another core count
    "mkl_avx2": {"MKL_CBWR": "AVX2"},  # MKL's AVX2 code path
    "onednn_avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},  # oneDNN's AVX2 convolutions
    "avx2_cpu": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                 "MKL_ENABLE_INSTRUCTIONS": "AVX2"},  # a processor without AVX-512
}
EVALUATE = """
import json
from reid.data.manifest import read_manifest
from reid.engine.runtime import select_device
from reid.metrics import evaluate_ranking
from reid.metrics.distance import pairwise_distance
from reid.params import load_params
from reid.paths import manifest_path
from reid.pipeline.features import extract_splits, query_gallery_loaders
from reid.models.model_file import build_network, read_model_file
from reid.pipeline.scoring import scores
params = load_params("params.yaml")
trained = read_model_file("models/resnet50/market1501.pt")
manifest = read_manifest(manifest_path("market1501"))
device = select_device(params.train.device)
loaders = query_gallery_loaders(params, manifest, trained.input_size, device)
f = extract_splits(params, build_network(trained), loaders, device, "resnet50")
q, g = (manifest[manifest["split"] == s] for s in ("query", "gallery"))
result = evaluate_ranking(pairwise_distance(f["query"], f["gallery"], params.eval.metric),
                          q["pid"].to_numpy(), g["pid"].to_numpy(), q["camid"].to_numpy(),
                          g["camid"].to_numpy(), max_rank=params.eval.max_rank)
print(json.dumps({k: scores(result)[k] for k in ("mAP", "rank1")}))
"""

def workspace(root: Path) -> Path:
    """A scratch copy holding what the train stage reads, with tracking off."""
    work = Path(tempfile.mkdtemp(prefix="cpu-spread-"))
    for part in ("data/raw/market1501", "data/split/market1501"):
        if not (root / part).is_dir():
            sys.exit(f"{root / part} is missing: run `dvc repro split@market1501` first")
        shutil.copytree(root / part, work / part, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tracking"]["enabled"] = False
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return work


def run_config(work: Path, name: str, env_vars: dict[str, str]) -> dict:
    env = {**os.environ, **env_vars, "PYTHONPATH": str(REPO)}
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "stages/train.py"), "--backbone", "resnet50",
                    "--dataset", "market1501", "--quiet"], cwd=work, env=env, check=True,
                   capture_output=True)
    seconds = time.perf_counter() - start
    curves = pd.read_csv(work / "plots/train/resnet50/market1501/curves.csv")
    digest = hashlib.sha256(subprocess.run(
        [sys.executable, "-c", "import sys; from reid.models.model_file import read_model_file;"
         " sd = read_model_file(sys.argv[1]).state_dict; sys.stdout.buffer.write(b''.join("
         "v.numpy().tobytes() for v in sd.values()))", str(work / "models/resnet50/market1501.pt")],
        capture_output=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    ).stdout).hexdigest()[:12]
    scores = json.loads(subprocess.run(
        [sys.executable, "-c", EVALUATE], cwd=work, check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}).stdout)
    return {"config": name, "env": " ".join(f"{k}={v}" for k, v in env_vars.items()) or "-",
            "wall_s": round(seconds, 1), "loss_epoch2": round(curves["loss"].iloc[1], 6),
            "final_loss": round(curves["loss"].iloc[-1], 6), **scores, "weights": digest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    work = workspace(REPO)
    try:
        rows = []
        for name in args.configs:
            rows.append(run_config(work, name, CONFIGS[name]))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    for key in ("final_loss", "mAP", "rank1"):
        values = table[key]
        print(f"{key}: min {values.min()}, max {values.max()}, mean {values.mean():.3f}, "
              f"sd {values.std():.3f}")


if __name__ == "__main__":
    main()
