"""Benchmark reid.metrics against its reference implementations: seconds, peak memory, agreement.

    python benchmarks/bench_evaluation.py --size market [--device cpu] [--skip-oracle]

The reference implementations (the oracles) live with the tests, in tests/reference_metrics.py.
Generates a problem with identity structure (id centre + camera bias + noise, L2-normalised
features; Market-like junk pid -1 and distractor pid 0 gallery entries), then runs every part in
a fresh spawned subprocess, so that each part's peak RSS (`ru_maxrss`, read in the child) is its
own: the oracle's peak cannot hide ours. Seconds are measured around the call only (best of
`--repeats` for the evaluation). The "inputs" row is a child that only imports and loads the
inputs: the baseline included in every peak.

Parts: evaluate_ranking vs the argsort oracle vs bare `np.argsort` of the matrix (in row blocks
of 1024, the same work with bounded memory); k_reciprocal_rerank vs the dense oracle (the
authors' algorithm, O(N^2) memory), and the bare distance products that re-ranking cannot avoid
(the "distance GEMM" floor). The MSMT size runs neither oracle nor the floor.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import queue as queue_module
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# Run as a script: the repository root first on the path, for `tests.reference_metrics` and
# this checkout's `reid`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reid.metrics.rerank as rerank  # noqa: E402
from reid.metrics import evaluate_ranking, k_reciprocal_rerank  # noqa: E402
from tests.reference_metrics import (  # noqa: E402
    evaluate_ranking_argsort,
    k_reciprocal_rerank_dense,
)

logger = logging.getLogger(__name__)

SIZES = {
    "small": dict(
        num_query=300,
        num_gallery=1500,
        num_ids=60,
        num_cams=6,
        dim=256,
        junk=0.19,
        distractors=0.14,
    ),
    "market": dict(
        num_query=3368,
        num_gallery=19732,
        num_ids=751,
        num_cams=6,
        dim=2048,
        junk=0.19,
        distractors=0.14,
    ),
    "msmt": dict(
        num_query=11659,
        num_gallery=82161,
        num_ids=3060,
        num_cams=15,
        dim=2048,
        junk=0.0,
        distractors=0.0,
    ),
}
CAMERA_BIAS = 0.7  # norm of a camera's offset relative to an identity centre
NOISE = 1.2  # median norm of an image's noise relative to an identity centre


def make_problem(num_query, num_gallery, num_ids, num_cams, dim, junk, distractors, seed=0):
    """Features (Q, dim), (G, dim) float32 with identity structure, and pids / camera ids."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids + 1, dim), dtype=np.float32) / dim**0.5
    cam_bias = CAMERA_BIAS * rng.standard_normal((num_cams, dim), dtype=np.float32) / dim**0.5
    q_pids = rng.integers(1, num_ids + 1, num_query)
    q_pids[: min(num_ids, num_query)] = np.arange(1, min(num_ids, num_query) + 1)
    g_pids = rng.integers(1, num_ids + 1, num_gallery)
    u = rng.random(num_gallery)
    g_pids[u < junk] = -1
    g_pids[(u >= junk) & (u < junk + distractors)] = 0  # distractors: nobody's identity
    q_cams = rng.integers(0, num_cams, num_query)
    g_cams = rng.integers(0, num_cams, num_gallery)

    def features(pids, cams):
        out = np.empty((len(pids), dim), dtype=np.float32)
        for s in range(0, len(pids), 4096):
            p, c = pids[s : s + 4096], cams[s : s + 4096]
            scale = np.exp(rng.normal(np.log(NOISE), 0.4, len(p))).astype(np.float32)
            f = rng.standard_normal((len(p), dim), dtype=np.float32) / dim**0.5
            f = f * scale[:, None] + cam_bias[c] + np.where(p[:, None] > 0, centres[p], 0)
            out[s : s + 4096] = f / np.linalg.norm(f, axis=1, keepdims=True)
        return out

    return features(q_pids, q_cams), features(g_pids, g_cams), q_pids, g_pids, q_cams, g_cams


def squared_distances(q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(Q, G) float32 squared Euclidean distances, in row blocks (torch GEMM)."""
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    g_sq = (gt * gt).sum(1)
    out = np.empty((len(q), len(g)), dtype=np.float32)
    for s in range(0, len(q), 1024):
        block = qt[s : s + 1024]
        d = torch.addmm((block * block).sum(1)[:, None] + g_sq[None, :], block, gt.T, alpha=-2)
        out[s : s + 1024] = d.clamp_min_(0).numpy()
    return out


def _load(workdir: Path, names: list[str]) -> list[np.ndarray]:
    return [np.load(workdir / f"{name}.npy") for name in names]


def _child(part: str, workdir: Path, device: str | None, repeats: int, queue) -> None:
    """Run one part; report seconds, peak RSS and the part's figures through `queue`."""
    ids = _load(workdir, ["q_pids", "g_pids", "q_cams", "g_cams"])
    result: dict = {}
    on_gpu = device is not None and device.startswith("cuda") and not part.endswith(" cpu")
    if part.endswith(" cpu"):  # the CPU path beside a GPU run
        part, device = part.removesuffix(" cpu"), None
    if on_gpu:  # CUDA context and kernels are loaded before the clock starts
        tiny = np.random.default_rng(0).random((8, 6), dtype=np.float32)
        pids, cams = np.array([0, 1, 0, 1, 2, 3]), np.array([0, 0, 1, 1, 1, 1])
        evaluate_ranking(tiny[:2], pids[:2], pids, cams[:2], cams, device=device)
        k_reciprocal_rerank(tiny[:2], tiny[2:], k1=2, k2=1, device=device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    if part == "inputs":
        _load(workdir, ["q_feats", "g_feats", "distmat"])
    elif part in ("evaluate", "evaluate oracle", "np.argsort"):
        (distmat,) = _load(workdir, ["distmat"])
        times = []
        for _ in range(repeats if part == "evaluate" else 1):
            start = time.perf_counter()
            if part == "evaluate":
                metrics = evaluate_ranking(distmat, *ids, device=device)
            elif part == "evaluate oracle":
                metrics = evaluate_ranking_argsort(distmat, *ids)
            else:
                for s in range(0, len(distmat), 1024):
                    np.argsort(distmat[s : s + 1024], axis=1)
            times.append(time.perf_counter() - start)
        result["seconds"] = min(times)
        if part != "np.argsort":
            result["metrics"] = metrics
    elif part == "distance GEMM":  # the floor: only the N^2 / 2 * dim products of re-ranking
        q, g = _load(workdir, ["q_feats", "g_feats"])
        feats = torch.from_numpy(np.concatenate([q, g])).to(device or "cpu")
        n, block = len(feats), rerank.BLOCK_ROWS
        start = time.perf_counter()
        for a in range(0, n, block):
            for c in range(a, n, block):
                torch.mm(feats[a : a + block], feats[c : c + block].T)
        if feats.is_cuda:
            torch.cuda.synchronize()
        result["seconds"] = time.perf_counter() - start
    else:  # "rerank" / "rerank oracle"
        q, g = _load(workdir, ["q_feats", "g_feats"])
        start = time.perf_counter()
        if part == "rerank":
            dist = k_reciprocal_rerank(q, g, device=device)
        else:
            dist = k_reciprocal_rerank_dense(q, g)
        result["seconds"] = time.perf_counter() - start
        path = "gpu" if on_gpu else "cpu"
        name = "rerank_oracle" if part == "rerank oracle" else f"rerank_{path}"
        np.save(workdir / f"{name}.npy", dist)
    result["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if on_gpu:
        result["gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    queue.put(result)


def run_part(part: str, workdir: Path, device: str | None, repeats: int) -> dict:
    """Run `part` in a fresh spawned process and return what it reported."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(part, workdir, device, repeats, queue))
    process.start()
    while True:  # a child that dies never reports: do not wait for it forever
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not process.is_alive():
                raise RuntimeError(
                    f"benchmark part {part!r} died (exit {process.exitcode})"
                ) from None
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"benchmark part {part!r} failed with exit code {process.exitcode}")
    return result


def _figures(metrics: dict) -> str:
    return f"mAP {metrics['mAP']:.4f}  R1 {metrics['cmc'][0]:.4f}  mINP {metrics['mINP']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--device", default=None, help="torch device; default: the CPU path")
    parser.add_argument("--skip-oracle", action="store_true", help="skip both oracles")
    parser.add_argument("--repeats", type=int, default=3, help="evaluate_ranking runs (best of)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    skip_oracle = args.skip_oracle or args.size == "msmt"

    size = SIZES[args.size]
    threads = torch.get_num_threads()
    print(f"size {args.size}: {size}; device {args.device}; torch threads {threads}")
    print(f"load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench_evaluation.") as tmp:
        workdir = Path(tmp)
        start = time.perf_counter()
        q, g, *ids = make_problem(**size, seed=args.seed)
        arrays = dict(zip(["q_pids", "g_pids", "q_cams", "g_cams"], ids, strict=True))
        arrays.update(q_feats=q, g_feats=g, distmat=squared_distances(q, g))
        for name, value in arrays.items():
            np.save(workdir / f"{name}.npy", value)
        del q, g, arrays
        print(f"generated the problem in {time.perf_counter() - start:.1f} s\n")

        parts = ["inputs", "evaluate", "np.argsort", "rerank"]
        if args.size != "msmt":
            parts[3:3] = ["distance GEMM"]
        if not skip_oracle:
            parts[2:2] = ["evaluate oracle"]
            parts.append("rerank oracle")
        gpu = args.device is not None and args.device.startswith("cuda")
        if gpu:  # the CPU path side by side
            parts[2:2] = ["evaluate cpu"]
            parts.append("rerank cpu")
        results = {}
        for part in parts:
            results[part] = run_part(part, workdir, args.device, args.repeats)
            logger.info(
                "  done: %-16s %.2f s",
                part,
                results[part]["seconds"] if "seconds" in results[part] else 0.0,
            )

        ids = _load(workdir, ["q_pids", "g_pids", "q_cams", "g_cams"])
        notes = {
            "inputs": "imports + loaded inputs only",
            "distance GEMM": "upper-triangle block products alone (the floor of rerank)",
        }
        ours = results["evaluate"]["metrics"]
        notes["evaluate"] = _figures(ours)
        if "evaluate oracle" in results:
            ref = results["evaluate oracle"]["metrics"]
            same = (
                ours["mAP"] == ref["mAP"]
                and ours["mINP"] == ref["mINP"]
                and np.array_equal(ours["cmc"], ref["cmc"])
            )
            notes["evaluate oracle"] = _figures(ref) + ("  IDENTICAL" if same else "  DIFFERENT")
        if "evaluate cpu" in results:
            cpu = results["evaluate cpu"]["metrics"]
            same = (ours["mAP"] == cpu["mAP"] and ours["mINP"] == cpu["mINP"]
                    and np.array_equal(ours["cmc"], cpu["cmc"]))
            notes["evaluate cpu"] = _figures(cpu) + ("  IDENTICAL" if same else "  DIFFERENT")
        reranked = np.load(workdir / ("rerank_gpu.npy" if gpu else "rerank_cpu.npy"))
        ours_rr = evaluate_ranking(reranked, *ids)
        notes["rerank"] = _figures(ours_rr)
        if "rerank cpu" in results:
            cpu_dist = np.load(workdir / "rerank_cpu.npy")
            notes["rerank cpu"] = (
                f"{_figures(evaluate_ranking(cpu_dist, *ids))}"
                f"  max|GPU - CPU dist| {np.abs(reranked - cpu_dist).max():.1e} (target <= 1e-4)"
            )
        if "rerank oracle" in results:
            dense = np.load(workdir / "rerank_oracle.npy")
            ref_rr = evaluate_ranking(dense, *ids)
            notes["rerank oracle"] = (
                f"{_figures(ref_rr)}  |dmAP| {abs(ours_rr['mAP'] - ref_rr['mAP']):.1e}"
                f"  max|d dist| {np.abs(reranked - dense).max():.1e}"
            )

    print(f"load average at end: {os.getloadavg()} (other processes slow the timings)")
    gpu_column = f" {'GPU GB':>7}" if gpu else ""
    print(f"\n{'part':<16} {'seconds':>9} {'peak GB':>8}{gpu_column}  figures")
    for part in parts:
        r = results[part]
        seconds = f"{r['seconds']:.2f}" if "seconds" in r else "-"
        gpu_cell = (f" {r['gpu_gb']:>7.2f}" if "gpu_gb" in r else f" {'-':>7}") if gpu else ""
        print(f"{part:<16} {seconds:>9} {r['peak_gb']:>8.2f}{gpu_cell}  {notes.get(part, '')}")
    print()
    ev, bare = results["evaluate"]["seconds"], results["np.argsort"]["seconds"]
    target = (" (target <= 0.2 s on the GPU)" if gpu else " (target <= 1 s)") \
        if args.size == "market" else ""
    print(f"evaluate: {ev:.2f} s{target}, np.argsort {bare:.2f} s", end="")
    if "evaluate cpu" in results:
        print(f", CPU path {results['evaluate cpu']['seconds']:.2f} s", end="")
    print()
    rr = results["rerank"]
    limits = "<= 600 s, <= 16 GB" if args.size == "msmt" else "peak <= 2 GB"
    if gpu and args.size == "market":
        limits = "<= 1 s on the GPU"
    if "rerank cpu" in results:
        limits += f"; CPU path {results['rerank cpu']['seconds']:.1f} s"
    print(f"rerank: {rr['seconds']:.1f} s, peak {rr['peak_gb']:.2f} GB (target {limits})", end="")
    if "distance GEMM" in results:
        print(f"; its distance products alone {results['distance GEMM']['seconds']:.1f} s", end="")
    if "rerank oracle" in results:
        dense = results["rerank oracle"]
        print(
            f"; oracle {dense['seconds']:.1f} s, peak {dense['peak_gb']:.2f} GB: "
            f"{dense['seconds'] / rr['seconds']:.1f}x faster (target >= 10x)"
        )
    else:
        print()


if __name__ == "__main__":
    main()
