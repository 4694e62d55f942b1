"""Identical runs of one key at once, through the real CLI: the second waits on the key's lock and
reuses what the first published; nobody crashes, the store verifies clean, logs are not mixed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import IRFLOW, Store, irflow


def _both(args, env, cwd) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(IRFLOW + [str(a) for a in args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _verify_clean(store: Path, env, cwd) -> None:
    arts = [m.parent for m in store.rglob("manifest.json")]
    r = irflow(["verify", *arts], env, cwd)
    assert all(line.endswith(": ok") for line in r.stdout.splitlines()), r.stdout
    assert not [p for p in store.rglob("*") if ".tmp-" in p.name], "temporary directories left behind"


def test_two_identical_prepares_both_succeed(tmp_path, env):
    store = tmp_path / "store"
    runs = _both(["prepare", "--dataset", "synthetic:tiny", "--kind", "docs", "--store", store], env, tmp_path)
    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    assert "Traceback" not in runs[0].stderr + runs[1].stderr
    assert runs[0].stdout.strip() == runs[1].stdout.strip()
    assert len(list((store / "prepare").iterdir())) == 1
    _verify_clean(store, env, tmp_path)


def test_two_identical_trainings_both_succeed_with_one_log(tmp_path, env, tiny_bert):
    run = Store(tmp_path, env)
    store = run.path
    first = run.tiny_first_stage()
    queries, docs = first["queries"], first["docs"]
    examples = run("preprocess", "--qrels", "synthetic:tiny", "--queries", queries, "--run", first["bm25"],
                   "--test-size", "0.3", "--min-grade", 2)
    args = ["train", "cross-encoder", "--model", tiny_bert, "--examples", examples, "--queries", queries,
            "--docs", docs, "--max-steps", 6, "--checkpoint-every", 2, "--batch-queries", 2, "--group-size", 4,
            "--max-length", 48, "--precision", "fp32", "--threads", 1, "--store", store]
    runs = _both(args, env, tmp_path)
    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-3000:] for r in runs]
    assert runs[0].stdout.strip() == runs[1].stdout.strip()
    art = tmp_path / runs[0].stdout.strip()
    steps = [json.loads(line)["step"] for line in (art / "train_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == sorted(set(steps)), steps  # one process's log: every step once, in order
    assert any("reusing" in r.stderr for r in runs), [r.stderr[-1500:] for r in runs]
    _verify_clean(store, env, tmp_path)
