"""The scale benchmark's smoke run: bench/bench_scale.py at 10k passages, through Snakemake, in CI.

The benchmark itself (10k to 1M passages, half an hour) is not part of CI; this run is (issue 9),
and keeps it working: every step of its pipeline must run and appear in its table with a time and a peak RSS.
Fewer evaluation queries, one teacher-scored candidate per training query, five training steps and
two shards keep it near two minutes on two idle cores.
"""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT

STEPS = ["prepare docs text", "prepare docs tokens", "prepare queries text", "index bm25", "index faiss",
         "encode", "search bm25", "search dense", "preprocess", "train lce", "score", "train kl",
         "rerank", "evaluate"]


def test_scale_benchmark_smoke_run_has_every_step(tmp_path, env):
    cmd = [sys.executable, str(ROOT / "bench" / "bench_scale.py"), "--sizes", "10k", "--queries", "200",
           "--valid", "50", "--score-depth", "1", "--train-steps", "5", "--shards", "2",
           "--work", str(tmp_path / "work")]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    rows = {}
    for line in r.stdout.splitlines():
        # | step | wall s / cpu s / MB[ (N jobs)] |: a single size, so no exponent columns
        m = re.match(r"^\| (.+?) \| ([\d.]+) / ([\d.]+) / (\d+)( \((\d+)( of \d+)? jobs\))? \|$", line)
        if m:
            assert m.group(7) is None, f"a job of {m.group(1)} was not measured: {line}"
            rows[m.group(1)] = (float(m.group(2)), int(m.group(4)), int(m.group(6) or 1), float(m.group(3)))
    missing = [s for s in STEPS if s not in rows]
    assert not missing, f"steps missing from the table: {missing}\n{r.stdout[-3000:]}"
    for step, (seconds, mb, jobs, cpu) in rows.items():
        assert seconds > 0 and mb > 0 and cpu >= 0, (step, seconds, mb, cpu)
    assert rows["encode"][2] == 2 and rows["index faiss"][2] == 2  # one job per shard, summed
    assert re.search(r"\*\*all steps \(wall of the run\)\*\* \| \d+ s \|", r.stdout)
    # the results are saved for --report, which prints the same table without running anything
    again = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_scale.py"), "--report",
                            str(tmp_path / "work")], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [ln for ln in again.stdout.splitlines() if ln.startswith("| encode")] == \
           [ln for ln in r.stdout.splitlines() if ln.startswith("| encode")]
