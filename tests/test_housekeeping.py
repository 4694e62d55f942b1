"""``irflow ls`` and ``irflow gc`` on a store made by a real Snakemake run of the tiny collection.

gc keeps everything the current config's plan needs, removes the artifacts of a changed parameter
(and orphaned temporary folders of dead processes), deletes nothing in a dry run, and never
touches an artifact whose build lock is held.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

from conftest import irflow

from irflow.housekeeping import load_plan, usage


def bm25_config(k1: float) -> dict:
    return {"experiments": {"tiny": {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "baseline": "bm25",
        "systems": {"bm25": {"type": "bm25", "k1": k1}, "bm25-robertson": {"type": "bm25", "method": "robertson"}},
    }}}


def artifacts(store) -> set[tuple[str, str]]:
    return {(p.parent.name, p.name) for p in store.glob("*/*") if (p / "manifest.json").is_file()}


def test_gc_keeps_the_plan_and_removes_a_changed_parameter(workflow, env):
    wf = workflow.path
    store = wf / "results" / "store"
    workflow.write_config(bm25_config(0.9))
    workflow.snakemake("results/tiny/ndcg.tsv")
    old = artifacts(store)
    workflow.write_config(bm25_config(1.2))
    workflow.snakemake("results/tiny/ndcg.tsv")
    everything = artifacts(store)

    plan = load_plan(wf / "config" / "config.yaml", store)
    needed = set(usage(plan))
    assert needed <= everything
    stale = everything - needed
    # k1 changed: the old BM25 index, its search and the evaluation are garbage; prepare is shared
    assert {s for s, _ in stale} == {"index", "search", "evaluate"}, stale
    assert stale <= old

    # orphans: a temporary folder of a dead process (removed), one of a live process (kept)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    key = next(iter(needed))[1]
    orphan = store / "search" / f".{key}.tmp-{dead}-deadbeef"
    alive = store / "search" / f".{key}.tmp-{os.getpid()}-cafecafe"
    for d in (orphan, alive):
        d.mkdir()
        (d / "part").write_bytes(b"x" * 1000)
    # the checkpoint of a training no experiment needs (and its log beside it)
    ckpt = store / "train" / ".ckpt-0123456789abcdef"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text("{}")
    ckpt_log = store / "train" / ".ckpt-0123456789abcdef.train_log.jsonl"
    ckpt_log.write_text("{}\n")

    listing = irflow(["ls", "--store", store, "--config", "config/config.yaml"], env, wf).stdout
    lines = [line.split("\t") for line in listing.splitlines()[1:]]
    by_key = {(row[0], row[1]): row for row in lines}
    for step, key in needed:
        assert by_key[(step, key)][5] == "tiny", by_key[(step, key)]
    for step, key in stale:
        assert by_key[(step, key)][5] == "-"
    assert any("k1=1.2" in by_key[k][4] for k in needed if k[0] == "index")  # what made it: its parameters

    # a dry run lists the garbage and deletes (or creates) nothing
    locks = set((store / ".locks").iterdir())
    dry = irflow(["gc", "--store", store, "--config", "config/config.yaml"], env, wf).stdout
    assert artifacts(store) == everything and orphan.is_dir() and ckpt.is_dir()
    assert set((store / ".locks").iterdir()) == locks
    for step, key in stale:
        assert f"would remove\tartifact\t{store / step / key}" in dry
    assert str(orphan) in dry and str(alive) not in dry and str(ckpt) in dry and str(ckpt_log) in dry

    # a held build lock keeps its artifact, even with --yes
    locked = next(k for k in stale if k[0] == "evaluate")
    (store / ".locks").mkdir(exist_ok=True)
    fd = os.open(store / ".locks" / f"{locked[0]}.{locked[1]}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        out = irflow(["gc", "--yes", "--store", store, "--config", "config/config.yaml"], env, wf).stdout
    finally:
        os.close(fd)
    assert artifacts(store) == needed | {locked}
    assert f"kept (busy)\tartifact\t{store / locked[0] / locked[1]}" in out
    assert not orphan.exists() and alive.is_dir() and not ckpt.exists() and not ckpt_log.exists()
    freed = int(out.split("freed ", 1)[1].split(" bytes", 1)[0])
    assert freed >= 1000

    # the lock released: the next gc removes it; then there is nothing left to free
    out = irflow(["gc", "--yes", "--store", store, "--config", "config/config.yaml"], env, wf).stdout
    assert artifacts(store) == needed
    assert "freed 0 bytes" not in out
    out = irflow(["gc", "--yes", "--store", store, "--config", "config/config.yaml"], env, wf).stdout
    assert "freed 0 bytes" in out
    # what remains still satisfies the workflow: nothing to re-run
    assert not {"prepare", "index", "search", "evaluate"} & set(workflow.planned_jobs("results/tiny/ndcg.tsv"))


def test_gc_bad_config_is_one_line(workflow, env):
    workflow.path.joinpath("config").mkdir(parents=True, exist_ok=True)
    (workflow.path / "config" / "bad.yaml").write_text("experiments: [1, 2\n")
    r = irflow(["gc", "--config", "config/bad.yaml"], env, workflow.path, check=False)
    assert r.returncode == 2 and r.stderr.startswith("irflow gc: error:") and len(r.stderr.splitlines()) == 1
