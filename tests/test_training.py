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
    index = run("index", "bm25", "--texts", docs)
    bm25 = run("search", "--index", index, "--queries", queries, "--k", 50)
    examples = run("preprocess", "--qrels", "synthetic:tiny", "--queries", queries, "--run", bm25,
                   "--test-size", "0.3", "--valid-size", "0.2", "--min-grade", 2)
    return {"queries": queries, "docs": docs, "bm25": bm25, "examples": examples, "store": store}


def _train(tmp_path, env, inputs, model, store, *extra, check=True):
    extra, family = list(extra), "cross-encoder"
    if "--family" in extra:  # the tests name the family as an option; the CLI takes it as a subcommand
        i = extra.index("--family")
        family = extra.pop(i + 1)
        extra.pop(i)
    args = ["train", family, "--model", model, "--examples", inputs["examples"], "--queries", inputs["queries"],
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
    assert list(train_dir.glob(".ckpt-*/step-*/state.json"))  # but a checkpoint survives
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


def test_bi_encoder_resume_with_tas_balanced_and_dual_teacher_equals_uninterrupted(tmp_path, env, training_inputs,
                                                                                  tiny_bert):
    """Sampler state included: TAS-Balanced batches, a ColBERT in-batch teacher, grad accumulation."""
    from safetensors.numpy import load_file

    inputs, store = training_inputs, training_inputs["store"]

    def run(*args):
        return tmp_path / irflow([*args, "--store", store], env, tmp_path).stdout.strip()

    teacher = run("score", "--model", tiny_bert, "--examples", inputs["examples"], "--queries", inputs["queries"],
                  "--docs", inputs["docs"], "--depth", 20, "--max-length", 64, "--precision", "fp32")
    clusters = run("cluster", "--examples", inputs["examples"], "--queries", inputs["queries"], "--model", tiny_bert,
                   "--k", 3, "--max-length", 16, "--precision", "fp32")
    common = ["--family", "bi-encoder", "--objective", "dual", "--sampler", "tas-balanced", "--teacher", teacher,
              "--clusters", clusters, "--colbert", tiny_bert, "--batch-size", 4, "--negatives-depth", 20,
              "--query-max-length", 16, "--passage-max-length", 48, "--max-steps", 7, "--checkpoint-every", 2,
              "--lr", "1e-3", "--validate-every", 3, "--grad-accum", 2]
    whole = _train(tmp_path, env, inputs, tiny_bert, tmp_path / "s1", *common)
    a = tmp_path / whole.stdout.strip()
    killed = _train(tmp_path, env, inputs, tiny_bert, tmp_path / "s2", *common, "--stop-after", 4, check=False)
    assert killed.returncode != 0
    resumed = _train(tmp_path, env, inputs, tiny_bert, tmp_path / "s2", *common)
    assert "resuming from step 4" in resumed.stderr
    b = tmp_path / resumed.stdout.strip()
    assert a.name == b.name
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    diff = max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)
    assert diff <= 1e-6, diff
    assert _log(a) == _log(b)
    # it did train: losses at every step; the published model is the best validated one, which on
    # this random tiny BERT may be the starting model (step 0) - then, and only then, unchanged
    manifest = json.loads((a / "manifest.json").read_text())
    losses = [r["loss"] for r in _log(a) if "loss" in r]
    assert len(losses) >= 2 and len(set(losses)) > 1, losses
    w0 = load_file(str(Path(tiny_bert) / "model.safetensors"))
    moved = max(float(np.abs(wa[k] - w0[k]).max()) for k in wa)
    assert (moved > 1e-4) == (manifest["stats"]["best_step"] != 0), (moved, manifest["stats"]["best_step"])
    assert manifest["params"]["dense"]["sampler"] == "tas-balanced"
    assert manifest["params"]["dense"]["alpha"] == 0.75


def test_cross_encoder_learns_on_held_out_queries(tmp_path, env, training_inputs):
    """all-MiniLM-L6-v2 with the cosine head, LCE on the tiny training queries: held-out nDCG@10 rises.

    The known trap (a fresh classifier on MiniLM's untrained CLS stays at the label prior) would
    leave the re-ranker where it started; this checks that training moves held-out effectiveness
    above both the untrained model and the first stage.
    """
    inputs, store = training_inputs, training_inputs["store"]

    def run(*args):
        return tmp_path / irflow([*args, "--store", store], env, tmp_path).stdout.strip()

    test_queries = run("prepare", "--dataset", "synthetic:tiny", "--kind", "queries", "--split", "test",
                       "--test-size", "0.3", "--valid-size", "0.2")
    trained = _train(tmp_path, env, inputs, "all-MiniLM-L6-v2", store, "--objective", "lce", "--max-steps", 30,
                     "--batch-queries", 2, "--group-size", 8, "--max-length", 128, "--lr", "1e-5",
                     "--head-lr", "1e-3", "--precision", "bf16").stdout.strip()
    runs = {"bm25": inputs["bm25"]}
    for name, model in (("untrained", "all-MiniLM-L6-v2"), ("trained", tmp_path / trained)):
        runs[name] = run("rerank", "--model", model, "--run", inputs["bm25"], "--queries", test_queries,
                         "--docs", inputs["docs"], "--depth", 30, "--max-length", 128)
    ev = run("evaluate", "--qrels", "synthetic:tiny", "--queries", test_queries, "--baseline", "bm25",
             *[a for n, d in runs.items() for a in ("--run", f"{n}={d}")])
    import csv

    rows = {r["system"]: float(r["nDCG@10"]) for r in csv.DictReader(open(ev / "ndcg.tsv"), delimiter="\t")}
    assert rows["trained"] > rows["untrained"], rows  # 0.5945 vs 0.5668 here
    assert rows["trained"] > rows["bm25"] + 0.03, rows  # BM25 0.5155


def test_two_identical_trainings_at_once(tmp_path, env, training_inputs, tiny_bert):
    """Both finish; the published log is one run's (each step once) and the weights are the single run's."""
    import subprocess

    from conftest import IRFLOW

    common = ["--objective", "lce", "--max-steps", 12, "--checkpoint-every", 1, "--batch-queries", 2,
              "--group-size", 4, "--max-length", 64, "--lr", "1e-3"]
    store = tmp_path / "s2"
    args = ["train", "cross-encoder", "--model", tiny_bert, "--examples", training_inputs["examples"], "--queries",
            training_inputs["queries"], "--docs", training_inputs["docs"], "--precision", "fp32", "--threads", 1,
            "--store", store, *common]
    procs = [subprocess.Popen(IRFLOW + [str(a) for a in args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0].strip() == outs[1][0].strip()
    a = tmp_path / outs[0][0].strip()
    single = irflow([str(x) if x != store else tmp_path / "s1" for x in args], env, tmp_path)  # same threads
    b = tmp_path / single.stdout.strip()
    assert _log(a) == _log(b)
    wa, wb = _weights(a / "model"), _weights(b / "model")
    assert max(float(np.abs(wa[k] - wb[k]).max()) for k in wa) <= 1e-6


def test_attention_dropout_is_a_stated_training_choice(tiny_bert, tmp_path):
    """attention_dropout sets the attention modules' dropout (not the hidden states'): with hidden
    dropout off and attention dropout 0, two training-mode forwards agree; at the model's 0.1 they
    do not. It enters the key only when given (default keys unchanged)."""
    import json
    import shutil

    import torch

    from irflow.models.dense import DenseModel
    from irflow.models.resolve import set_attention_dropout
    from irflow.train.params import BiEncoderTrainParams, CrossEncoderTrainParams

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_bert, model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.1)
    (model_dir / "config.json").write_text(json.dumps(cfg))
    m = DenseModel(str(model_dir), "mean", True, None).train()
    ids = torch.tensor([[1, 5, 7, 9, 11, 2], [1, 8, 6, 4, 2, 0]])
    mask = (ids > 0).long()
    torch.manual_seed(0)
    assert not torch.equal(m.encode(ids, mask), m.encode(ids, mask))  # attention dropout draws masks
    assert set_attention_dropout(m, 0.0) == cfg["num_hidden_layers"]
    assert torch.equal(m.encode(ids, mask), m.encode(ids, mask))
    M = "all-MiniLM-L6-v2"
    for cls in (CrossEncoderTrainParams, BiEncoderTrainParams):
        plain, zero = cls(model=M).key_params(), cls(model=M, attention_dropout=0).key_params()
        assert "attention_dropout" not in plain and zero["attention_dropout"] == 0
    with pytest.raises(Exception, match="attention_dropout"):
        CrossEncoderTrainParams(model=M, attention_dropout=1.0)


def test_cpu_training_attention_runs_float32_with_the_stock_function(tiny_bert, monkeypatch):
    """prepare_model switches the student to irflow's training attention: under bf16 autocast with
    gradients the fused kernel sees float32 inputs (its bf16 backward is 2.5x slower on a CPU);
    without gradients it keeps bf16. Outputs and gradients equal the stock kernel's in float32 to
    1e-5 and stay within bf16 rounding of them under autocast."""
    import copy

    import torch
    import torch.nn.functional as F

    from irflow.models.attention import NAME
    from irflow.models.dense import DenseModel
    from irflow.train.step import prepare_model

    torch.manual_seed(0)
    stock = DenseModel(str(tiny_bert), "mean", False, None)
    ours = copy.deepcopy(stock)
    prepare_model(ours, 0.0)
    prepare_model(stock, 0.0)
    stock.backbone.set_attn_implementation("sdpa")
    assert ours.backbone.config._attn_implementation == NAME
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, *a, **kw):
        seen.append(q.dtype)
        return real(q, *a, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    ids = torch.tensor([[1, 5, 7, 9, 11, 2], [1, 8, 6, 4, 2, 0]])
    mask = (ids > 0).long()

    def run(m, autocast: bool):
        m.eval()  # no dropout: the two models must see the same computation
        m.zero_grad()
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            v = m.encode(ids, mask)
        v.pow(2).sum().backward()
        return v.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    for autocast, tol in ((False, 1e-5), (True, 5e-2)):
        seen.clear()
        (va, ga), (vb, gb) = run(ours, autocast), run(stock, autocast)
        assert seen[:2] == [torch.float32] * 2  # ours: float32 whatever the autocast
        assert seen[2:] == [torch.bfloat16 if autocast else torch.float32] * 2  # stock
        assert torch.allclose(va, vb, atol=tol, rtol=tol)
        # all gradients as one vector (a key bias's true gradient is 0: per tensor it is only noise)
        flat_a, flat_b = (torch.cat([g[k].flatten() for k in sorted(gb)]) for g in (ga, gb))
        assert float((flat_a - flat_b).norm() / flat_b.norm()) <= tol
    seen.clear()
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
        ours.encode(ids, mask)
    assert seen == [torch.bfloat16] * 2  # no gradients: the stock low-precision kernel


def test_fast_dropout_draws_the_same_bernoulli_mask_distribution(tiny_bert):
    """FastDropout keeps each element with probability 1 - p (binomial test at 5 sigma), scales the
    kept ones by exactly 1 / (1 - p), is the identity in eval mode, passes gradients through the
    same mask, and prepare_model installs it in every dropout of the student."""
    import math

    import torch

    from irflow.models.dense import DenseModel
    from irflow.models.dropout import FastDropout
    from irflow.train.step import prepare_model

    torch.manual_seed(0)
    x = torch.randn(64, 100, 50, requires_grad=True)
    for p in (0.1, 0.5):
        d = FastDropout(p).train()
        y = d(x)
        kept = y != 0
        n, k = kept.numel(), int(kept.sum())
        assert abs(k - n * (1 - p)) <= 5 * math.sqrt(n * p * (1 - p))
        assert torch.allclose(y[kept], x[kept] / (1 - p))
        y.sum().backward()
        assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.full((k,), 1 / (1 - p)))
        x.grad = None
        assert torch.equal(d.eval()(x), x)
    m = DenseModel(str(tiny_bert), "mean", True, None)
    prepare_model(m, None)
    drops = [type(mod) for mod in m.modules() if isinstance(mod, torch.nn.Dropout)]
    assert drops and set(drops) == {FastDropout}
