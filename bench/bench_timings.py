#!/usr/bin/env python
"""Time budgets of small hot paths, which tests must not assert (they flake on a loaded machine).

* **Samplers**: ``batch()`` of the random, TAS and TAS-Balanced samplers over a 100,000-pair pool
  (3,000 queries in 100 clusters), batches of 32: seconds per batch, best of ``--repeats`` runs of
  ``--steps`` batches. Budget: 1 ms per batch (the training loop's prefetcher calls it once a step).
* **Synthetic collection**: generating the ``demo`` preset from scratch (the cache bypassed).
  Budget: 1 s (``make demo`` and many tests generate it).

    python bench/bench_timings.py            # prints the numbers
    python bench/bench_timings.py --check    # exit 1 if a budget is exceeded

The load average is printed: on a shared machine, read the numbers against it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_load, log  # noqa: E402

BATCH_BUDGET_S = 1e-3
DEMO_BUDGET_S = 1.0


def sampler_seconds_per_batch(steps: int, repeats: int) -> dict[str, float]:
    import numpy as np

    from irflow.train.samplers import PairPool, make_sampler

    r = np.random.default_rng(0)
    n = 100_000
    qids = [f"q{i % 3000}" for i in range(n)]
    pool = PairPool.from_arrays(qids, [f"p{i}" for i in range(n)], [f"n{i}" for i in range(n)],
                                r.normal(size=n), r.normal(size=n))
    clusters = {f"q{i}": i % 100 for i in range(3000)}
    out = {}
    for name in ("random", "tas", "tas-balanced"):
        s = make_sampler(name, pool, clusters, 32)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for step in range(steps):
                s.batch(np.random.default_rng([13, step]))
            best = min(best, (time.perf_counter() - t0) / steps)
        out[name] = best
    return out


def demo_generation_seconds(repeats: int) -> float:
    from irflow.data import synthetic

    spec = synthetic.get_spec("demo")
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        synthetic._generate.__wrapped__(spec)  # bypass the cache
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="sampler batches per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    ap.add_argument("--check", action="store_true", help="exit 1 if a budget is exceeded")
    args = ap.parse_args()

    log(f"# bench_timings  {time.strftime('%Y-%m-%d %H:%M')}  load average {cpu_load():.1f}")
    failed = []
    for name, s in sampler_seconds_per_batch(args.steps, args.repeats).items():
        log(f"sampler {name:13s} {s * 1e3:7.3f} ms/batch  (budget {BATCH_BUDGET_S * 1e3:.1f} ms)")
        if s >= BATCH_BUDGET_S:
            failed.append(f"sampler {name}")
    s = demo_generation_seconds(args.repeats)
    log(f"synthetic demo  {s:7.3f} s  (budget {DEMO_BUDGET_S:.1f} s)")
    if s >= DEMO_BUDGET_S:
        failed.append("synthetic demo")
    log(f"# load average after: {cpu_load():.1f}")
    if args.check and failed:
        log(f"over budget: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
