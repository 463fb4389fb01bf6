"""Benchmark the bootstrap intervals and the paired comparison at the real test-set sizes.

    python benchmarks/bench_bootstrap.py [--resamples 1000] [--repeats 5]

Per-query AP and first-match ranks are drawn at random with the query identity structure of
Market-1501 (3,368 queries of 750 ids) and MSMT17 (11,659 queries of 3,060 ids); the figures
are the best of `--repeats` calls of `bootstrap_intervals` (mAP and rank-1) and of
`paired_difference` (mAP), in milliseconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from reid.metrics.bootstrap import bootstrap_intervals, paired_difference, per_query_scores

SIZES = {"market": (3368, 750), "msmt": (11659, 3060)}


def problem(num_queries: int, num_ids: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pids = rng.integers(0, num_ids, num_queries)
    ap = rng.beta(2, 2, num_queries)
    first = np.where(rng.random(num_queries) < ap, 1, rng.integers(2, 50, num_queries))
    return per_query_scores(ap, first), pids


def best_ms(fn, *args, repeats: int, **kwargs) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"resamples {args.resamples}, best of {args.repeats}")
    for name, (num_queries, num_ids) in SIZES.items():
        scores, pids = problem(num_queries, num_ids)
        other = scores["mAP"] + np.random.default_rng(1).normal(0, 5, num_queries)
        ci = best_ms(bootstrap_intervals, scores, pids, resamples=args.resamples,
                     repeats=args.repeats)
        paired = best_ms(paired_difference, scores["mAP"], other, pids,
                         resamples=args.resamples, repeats=args.repeats)
        intervals = bootstrap_intervals(scores, pids, resamples=args.resamples)
        print(f"{name:7s} {num_queries:6d} queries / {num_ids:5d} ids: intervals {ci:7.1f} ms, "
              f"paired {paired:7.1f} ms; mAP {scores['mAP'].mean():.2f} {intervals['mAP']}")


if __name__ == "__main__":
    main()
