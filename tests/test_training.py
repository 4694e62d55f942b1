"""Cross-encoder training end to end through the CLI: exact resume after a kill, and learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import irflow


@pytest.fixture()
def training_inputs(tmp_path, env):
    """Prepared queries/docs, a BM25 run and preprocessed examples of the tiny synthetic collection."""
    store = tmp_path / "store"

    def run(*args):
        return tmp_path / irflow([*args, "--store", store], env, tmp_path).stdout.strip()

    queries = run("prepare", "--dataset", "synthetic:tiny", "--kind", "queries")
    docs = run("prepare", "--dataset", "synthetic:tiny", "--kind", "docs")
    index = run("index", "--bm25", docs)
    bm25 = run("search", "--index", index, "--queries", queries, "--k", 50)
    examples = run("preprocess", "--qrels", "synthetic:tiny", "--queries", queries, "--run", bm25,
                   "--test-size", "0.3", "--valid-size", "0.2", "--min-grade", 2)
    return {"queries": queries, "docs": docs, "bm25": bm25, "examples": examples, "store": store}


def _train(tmp_path, env, inputs, model, store, *extra, check=True):
    args = ["train", "--model", model, "--examples", inputs["examples"], "--queries", inputs["queries"],
            "--docs", inputs["docs"], "--precision", "fp32", "--threads", 2, "--store", store, *extra]
    return irflow(args, env, tmp_path, check=check)


def _weights(model_dir: Path) -> dict:
    from safetensors.numpy import load_file

    w = load_file(str(model_dir / "model.safetensors"))
    w.update({"head." + k: v for k, v in load_file(str(model_dir / "irflow_head.safetensors")).items()})
    return w


def _log(artifact: Path) -> list[dict]:
    """The training log without its timing column."""
    rows = [json.loads(line) for line in (artifact / "train_log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "pairs_per_s"} for r in rows]


@pytest.mark.parametrize("objective", ["lce"])
def test_killed_and_resumed_training_equals_uninterrupted(tmp_path, env, training_inputs, tiny_bert, objective):
    common = ["--objective", objective, "--max-steps", 8, "--checkpoint-every", 3, "--batch-queries", 2,
              "--group-size", 4, "--max-length", 64, "--lr", "1e-3", "--validate-every", 4, "--grad-accum", 2]
    whole = _train(tmp_path, env, training_inputs, tiny_bert, tmp_path / "s1", *common)
    a = tmp_path / whole.stdout.strip()

    killed = _train(tmp_path, env, training_inputs, tiny_bert, tmp_path / "s2", *common, "--stop-after", 6,
                    check=False)
    assert killed.returncode != 0
    train_dir = tmp_path / "s2" / "train"
    assert not list(train_dir.glob("*/manifest.json"))  # nothing published
    assert list(train_dir.glob(".ckpt-*/state.json"))  # but a checkpoint survives
    resumed = _train(tmp_path, env, training_inputs, tiny_bert, tmp_path / "s2", *common)
    assert "resuming from step 6" in resumed.stderr
    b = tmp_path / resumed.stdout.strip()
    assert a.name == b.name  # same key: same parameters and inputs

    wa, wb = _weights(a / "model"), _weights(b / "model")
    assert wa.keys() == wb.keys()
    diff = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    assert diff <= 1e-6, diff
    assert _log(a) == _log(b)  # same losses, learning rates and validation scores, step by step
    assert not list(train_dir.glob(".ckpt-*"))  # the checkpoint is gone once the model is published
