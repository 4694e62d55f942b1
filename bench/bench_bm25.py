"""BM25 at scale: today's build and search against the streamed build and the batched search.

Both sides run in one invocation on the same prepared synthetic collection (default: 100k passages
of ``synthetic:scale-100k`` and its first 10k training queries, top 1000 each):

* **index build**: today's ``cli.index`` path (``prepare.load_texts`` into Python lists, then
  ``bm25s.BM25.index`` via ``irflow.index.bm25.build``) and the streamed
  ``build_from_prepared`` (with 1 and with ``--threads`` tokenising workers), each in its own
  subprocess so that its peak RSS (``resource.getrusage``) is its own; the RSS right after the
  imports is printed too, and the size of the index files it wrote;
* **search**: today's path (``search_one_by_one``: bm25s ``retrieve`` per query on one thread) and
  the batched ``search`` on ``--threads`` threads, over the same index. The queries are cut into
  ``--slices`` slices and each slice is searched by both, alternating which goes first, so that a
  neighbour process that takes the CPU for a while slows both sides. Every slice's scores must be
  equal on both sides (they are the same ranking; only documents tied at the cut may differ).

It prints queries/s of both (wall clock, and per CPU second) and their ratio; ``--check`` exits 1
when the wall-clock ratio is below ``--min-ratio`` (5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_load, log  # noqa: E402

_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
how, docs, out, workers = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
from irflow.index import bm25
from irflow.prepare import load_texts
import bm25s, pyarrow, Stemmer  # imported before the baseline RSS is taken
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out.mkdir()
t, c = time.perf_counter(), time.process_time()
if how == "today":
    stats = bm25.build(bm25.BM25Params(), *load_texts(docs), out)
else:
    stats = bm25.build_from_prepared(bm25.BM25Params(), docs, out, workers=workers)
wall, cpu = time.perf_counter() - t, time.process_time() - c
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
size = sum(f.stat().st_size for f in (out / "bm25").iterdir())
print(json.dumps({"wall": wall, "cpu": cpu, "base_kb": base, "peak_kb": peak, "workers_peak_kb": kids,
                  "index_bytes": size, **stats}))
"""


def _build(how: str, docs: Path, out: Path, workers: int) -> dict:
    r = subprocess.run([sys.executable, "-c", _CHILD, how, str(docs), str(out), str(workers)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{how} build failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="synthetic:scale-100k", help="passages and queries (default: %(default)s)")
    ap.add_argument("--queries", type=int, default=10_000, help="first N queries of the dataset (default: %(default)s)")
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--slices", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the prepared data and indexes here")
    ap.add_argument("--no-build", action="store_true", help="skip the build comparison (search only)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--min-ratio", type=float, default=5.0)
    args = ap.parse_args()

    import bm25s
    import numpy as np

    from irflow.index import bm25
    from irflow.prepare import PrepareParams, load_texts, prepare

    log(f"# bench_bm25  {time.strftime('%Y-%m-%d %H:%M')}  cores={os.cpu_count()} threads={args.threads}  "
        f"bm25s={bm25s.__version__}  numpy={np.__version__}  python={sys.version.split()[0]}")
    load0 = cpu_load()
    if load0 > args.threads + 0.5:
        log(f"WARNING: load average {load0:.1f} > {args.threads} threads: other processes compete for the cores; "
            "absolute numbers are noisy (interleaved slices keep the ratio fair)")
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-bm25-")
        work = Path(tmp.name)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    docs, queries = work / "docs", work / "queries"
    for kind, d in (("docs", docs), ("queries", queries)):
        if not (d / "texts.arrow").is_file():
            d.mkdir(exist_ok=True)
            t = time.perf_counter()
            stats = prepare(PrepareParams(dataset=args.dataset, kind=kind), d)
            log(f"prepare {args.dataset} {kind}: {stats['rows']} rows in {time.perf_counter() - t:.1f} s")

    # ---- index build
    index = work / "index-streamed-1"
    if not args.no_build:
        rows = []
        for how, workers in (("today", 1), ("streamed", 1), ("streamed", args.threads)):
            out = work / f"index-{how}-{workers}"
            if out.exists():
                import shutil

                shutil.rmtree(out)
            r = _build(how, docs, out, workers)
            rows.append((how, workers, r))
            log(f"build {how:8s} workers={workers}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s cpu, peak RSS "
                f"{r['peak_kb'] / 1024:.0f} MB (after imports {r['base_kb'] / 1024:.0f} MB; workers' peak "
                f"{r['workers_peak_kb'] / 1024:.0f} MB), index files {r['index_bytes'] / 2**20:.0f} MB, "
                f"{r['documents']} docs")
        today, streamed = rows[0][2], rows[1][2]
        log(f"build: streamed/today wall {today['wall'] / streamed['wall']:.2f}x faster, peak RSS "
            f"{streamed['peak_kb'] / today['peak_kb']:.2f} of today's; build increment over the imports "
            f"{(streamed['peak_kb'] - streamed['base_kb']) / 1024:.0f} MB vs "
            f"{(today['peak_kb'] - today['base_kb']) / 1024:.0f} MB; index {today['index_bytes'] / 2**20:.0f} MB")
    elif not index.exists():
        index.mkdir(parents=True)
        bm25.build_from_prepared(bm25.BM25Params(), docs, index)

    # ---- search
    _, qtexts = load_texts(queries)
    qtexts = qtexts[: args.queries]
    bounds = np.linspace(0, len(qtexts), args.slices + 1).astype(int)
    wall = {"today": 0.0, "batched": 0.0}
    cpu = {"today": 0.0, "batched": 0.0}
    tie_rows = 0
    slice_ratios = []

    def today(q):
        return bm25.search_one_by_one(index, q, args.k)

    def batched(q):
        return bm25.search(index, q, args.k, threads=args.threads)

    batched(qtexts[:50])  # warm the page cache and the thread pool code path for both sides
    today(qtexts[:50])
    for n in range(args.slices):
        q = qtexts[bounds[n] : bounds[n + 1]]
        order = [("today", today), ("batched", batched)]
        if n % 2:
            order.reverse()
        got, dt = {}, {}
        for name, fn in order:
            t, c = time.perf_counter(), time.process_time()
            got[name] = fn(q)
            dt[name] = time.perf_counter() - t
            wall[name] += dt[name]
            cpu[name] += time.process_time() - c
        slice_ratios.append(dt["today"] / dt["batched"])
        (s0, r0), (s1, r1) = got["today"], got["batched"]
        if not np.array_equal(s0, s1):
            raise SystemExit(f"slice {n}: the two searches disagree on the scores")
        tie_rows += sum(set(a.tolist()) != set(b.tolist()) for a, b in zip(r0, r1))
        log(f"  slice {n + 1}/{args.slices}: {len(q)} queries  today {len(q) / dt['today']:.0f} q/s, "
            f"batched {len(q) / dt['batched']:.0f} q/s: {dt['today'] / dt['batched']:.2f}x  (load {cpu_load():.1f})")
    nq = len(qtexts)
    ratio = wall["today"] / wall["batched"]
    log(f"search {nq} queries over {docs.name} top {args.k}: today {nq / wall['today']:.0f} q/s "
        f"({wall['today']:.1f} s), batched {nq / wall['batched']:.0f} q/s ({wall['batched']:.1f} s, "
        f"{args.threads} threads): {ratio:.2f}x (per slice: median {np.median(slice_ratios):.2f}x, "
        f"min {min(slice_ratios):.2f}x, max {max(slice_ratios):.2f}x)")
    log(f"per CPU second: today {nq / cpu['today']:.0f} q/cpu-s, batched {nq / cpu['batched']:.0f} q/cpu-s: "
        f"{cpu['today'] / cpu['batched']:.2f}x")
    log(f"identical scores for all queries; {tie_rows} of {nq} keep other documents tied at the cut "
        "(today's choice among ties is argpartition's, the batched one the smallest doc ids)")
    log(f"load average {load0:.1f} at the start, {cpu_load():.1f} at the end")
    if tmp is not None:
        tmp.cleanup()
    if args.check and ratio < args.min_ratio:
        log(f"CHECK FAILED: ratio {ratio:.2f} < {args.min_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
