"""Data-parallel training (irflow.train.dist) on the CPU: gloo, 2 processes launched by torchrun.

Equality with one process holds with dropout off (the model's config sets the dropout
probabilities to 0): with dropout on, each rank draws its own masks, which one process would draw
differently. End to end, training runs in fp64 (see _assert_same_training); the step itself is
compared in float32 and float64. Exact resume of a 2-process run holds with or without dropout (every rank's random
state is checkpointed).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IRFLOW, irflow
from test_training import _train, _weights, training_inputs  # noqa: F401,F811  (a fixture)

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(scope="session")
def tiny_bert_nodrop(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT with dropout off: one process and two then compute the same function."""
    out = tmp_path_factory.mktemp("tiny-bert-nodrop") / "model"
    shutil.copytree(tiny_bert, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.fixture()
def ddp_env(env):
    return {**env, "OMP_NUM_THREADS": "1", "IRFLOW_DIST_TIMEOUT": "300"}


def _ddp(tmp_path, env, inputs, model, store, *extra, check=True):
    """``irflow train`` under torchrun with 2 processes (the same arguments as conftest's runs)."""
    import subprocess

    extra, family = list(extra), "cross-encoder"
    if "--family" in extra:
        i = extra.index("--family")
        family = extra.pop(i + 1)
        extra.pop(i)
    args = ["train", family, "--model", model, "--examples", inputs["examples"], "--queries", inputs["queries"],
            "--docs", inputs["docs"], "--precision", "fp32", "--threads", 1, "--store", store, "--devices", 2,
            *extra]
    cmd = TORCHRUN + IRFLOW[1:] + [str(a) for a in args]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"torchrun irflow {args} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    return r


def _rows(artifact: Path) -> list[dict]:
    return [json.loads(line) for line in (artifact / "train_log.jsonl").read_text().splitlines()]


def _assert_same_training(a: Path, b: Path, tol: float = 1e-5) -> None:
    """Same weights (every element) and the same logged losses (and validation scores) within ``tol``.

    The runs train in fp64: in float32, parameters whose true gradient is zero (the score bias,
    attention key biases: a softmax or a margin is invariant to them) get rounding noise as their
    gradient, which AdamW divides by its own magnitude and so moves them by up to lr per step, in a
    direction the summation order picks (two single-process runs with other thread counts differ
    alike). In float64 that noise is ~1e-16 and AdamW's epsilon (1e-8) swamps it.
    """
    wa, wb = _weights_any(a / "model"), _weights_any(b / "model")
    assert wa.keys() == wb.keys()
    worst = max((float(np.abs(wa[k] - wb[k]).max()), k) for k in wa)
    assert worst[0] <= tol, worst
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        if x["step"] == 0:  # the starting model's validation: no loss yet
            assert abs(x["validation"] - y["validation"]) <= tol, (x, y)
            continue
        assert abs(x["loss"] - y["loss"]) <= tol * max(1.0, abs(x["loss"])), (x, y)
        assert abs(x["lr"] - y["lr"]) <= 1e-12
        assert ("validation" in x) == ("validation" in y)
        if "validation" in x:
            assert abs(x["validation"] - y["validation"]) <= tol, (x, y)


def _weights_any(model_dir: Path) -> dict:
    if (model_dir / "irflow_head.safetensors").exists():
        return _weights(model_dir)
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _moved(model_dir: Path, base: Path) -> float:
    from safetensors.numpy import load_file

    w, w0 = load_file(str(model_dir / "model.safetensors")), load_file(str(base / "model.safetensors"))
    return max(float(np.abs(w[k] - w0[k]).max()) for k in w if k in w0)


def _waits_for_the_key_lock_then_reuses(tmp_path, env, inputs, model, done: Path, common) -> None:
    """Only rank 0 takes the key's lock; rank 1 waits for its decision, so no deadlock: while another
    process holds the lock, the whole launch waits; once that process has published, every rank
    learns that the artifact is complete and nobody trains."""
    import fcntl
    import subprocess
    import time

    store = tmp_path / "s3"
    (store / ".locks").mkdir(parents=True)
    lock = open(store / ".locks" / f"train.{done.name}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    err = open(tmp_path / "s3.err", "w+")
    args = ["train", "bi-encoder", "--model", model, "--examples", inputs["examples"], "--queries",
            inputs["queries"], "--docs", inputs["docs"], "--precision", "fp32", "--threads", 1, "--store", store,
            "--devices", 2, *[a for a in common[2:]]]
    proc = subprocess.Popen(TORCHRUN + IRFLOW[1:] + [str(a) for a in args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        for _ in range(600):  # until rank 0 reports that it waits for the lock (or the launch ends)
            if "another process is building this artifact" in (tmp_path / "s3.err").read_text() \
                    or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "s3.err").read_text()[-3000:]
        shutil.copytree(done, store / "train" / done.name)  # "the other process" publishes
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    out, _ = proc.communicate(timeout=600)
    log = (tmp_path / "s3.err").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert out.strip() == str(Path("s3") / "train" / done.name) or Path(out.strip()).name == done.name
    assert "published by another process meanwhile; reusing it" in log
    assert "resuming" not in log and not list((store / "train").glob(".ckpt-*"))  # nobody trained


def test_bi_encoder_infonce_two_processes_killed_and_resumed_equal_one_process(tmp_path, ddp_env, training_inputs,
                                                                               tiny_bert_nodrop):
    """2 x b/2 (killed after step 4, resumed) == 1 x b: InfoNCE over negatives gathered from both ranks."""
    inputs, env = training_inputs, ddp_env
    common = ["--family", "bi-encoder", "--objective", "infonce", "--batch-size", 4, "--negatives-depth", 20,
              "--query-max-length", 16, "--passage-max-length", 48, "--max-steps", 7, "--checkpoint-every", 2,
              "--lr", "1e-3", "--grad-accum", 2, "--precision", "fp64"]
    # no validation: the step-0 model could win and nothing move
    # devices > 1 without torchrun is refused with one line, and nothing is published
    bad = _train(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s0", *common, "--devices", 2, check=False)
    assert bad.returncode == 2 and "torchrun --standalone --nproc-per-node 2" in bad.stderr, bad.stderr[-2000:]
    assert not list((tmp_path / "s0").glob("train/*/manifest.json"))

    one = tmp_path / _train(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s1", *common).stdout.strip()
    _waits_for_the_key_lock_then_reuses(tmp_path, env, inputs, tiny_bert_nodrop, one, common)
    killed = _ddp(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s2", *common, "--stop-after", 4, check=False)
    assert killed.returncode != 0
    train_dir = tmp_path / "s2" / "train"
    assert not list(train_dir.glob("*/manifest.json"))
    ck = sorted(train_dir.glob(".ckpt-*/step-*"))
    assert ck and (ck[-1] / "rng-rank1.json").exists()  # rank 1's random state is in the checkpoint
    resumed = _ddp(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s2", *common)
    assert "resuming from step 4" in resumed.stderr
    two = tmp_path / resumed.stdout.strip()  # rank 0 alone prints the artifact
    assert resumed.stdout.strip().count("\n") == 0
    assert one.name == two.name  # devices is not part of the key
    _assert_same_training(one, two)
    assert _moved(two / "model", tiny_bert_nodrop) > 1e-4  # it did train
    assert json.loads((two / "manifest.json").read_text())["stats"]["devices"] == 2
    assert not list(train_dir.glob(".ckpt-*"))
    # a second launch of the complete key reuses it (all ranks agree to skip)
    again = _ddp(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s2", *common)
    assert again.stdout.strip() == resumed.stdout.strip()


def test_cross_encoder_lce_two_processes_equal_one_process(tmp_path, ddp_env, training_inputs, tiny_bert_nodrop):
    inputs, env = training_inputs, ddp_env
    common = ["--objective", "lce", "--max-steps", 5, "--checkpoint-every", 2, "--batch-queries", 4,
              "--group-size", 4, "--max-length", 64, "--lr", "1e-3", "--grad-accum", 2, "--precision", "fp64"]
    one = tmp_path / _train(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s1", *common).stdout.strip()
    two = tmp_path / _ddp(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s2", *common).stdout.strip()
    assert one.name == two.name
    _assert_same_training(one, two)
    assert _moved(two / "model", tiny_bert_nodrop) > 1e-4


def test_bi_encoder_dual_tas_balanced_with_gradcache_two_processes_equal_one_process(
        tmp_path, ddp_env, training_inputs, tiny_bert_nodrop):
    """Dual supervision (pairwise + in-batch Margin-MSE against a ColBERT teacher gathered from both ranks),
    TAS-Balanced batches, and GradCache chunks under DDP, against one process without caching."""
    inputs, store, env = training_inputs, training_inputs["store"], ddp_env

    def run(*args):
        return tmp_path / irflow([*args, "--store", store], env, tmp_path).stdout.strip()

    teacher = run("score", "--model", tiny_bert_nodrop, "--examples", inputs["examples"], "--queries",
                  inputs["queries"], "--docs", inputs["docs"], "--depth", 20, "--max-length", 64, "--precision",
                  "fp32")
    clusters = run("cluster", "--examples", inputs["examples"], "--queries", inputs["queries"], "--model",
                   tiny_bert_nodrop, "--k", 3, "--max-length", 16, "--precision", "fp32")
    common = ["--family", "bi-encoder", "--objective", "dual", "--sampler", "tas-balanced", "--teacher", teacher,
              "--clusters", clusters, "--colbert", tiny_bert_nodrop, "--batch-size", 4, "--negatives-depth", 20,
              "--query-max-length", 16, "--passage-max-length", 48, "--max-steps", 5, "--checkpoint-every", 2,
              "--lr", "1e-3", "--grad-accum", 2, "--precision", "fp64"]
    one = tmp_path / _train(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s1", *common).stdout.strip()
    two = tmp_path / _ddp(tmp_path, env, inputs, tiny_bert_nodrop, tmp_path / "s2", *common,
                          "--cache-chunk", 1).stdout.strip()
    _assert_same_training(one, two)
    assert _moved(two / "model", tiny_bert_nodrop) > 1e-4


# ------------------------------------------------------------------------------- batch split


def _task(sampler, rank: int):
    """The bi-encoder task of one rank of two; batch composition needs no model."""
    from irflow.train.biencoder import BiEncoderTask, DenseConfig
    from irflow.train.dist import Dist

    cfg = DenseConfig(objective="margin-mse", sampler=sampler.name, batch_size=sampler.batch_size)
    return BiEncoderTask(None, sampler.pool, sampler, {}, {}, cfg, seed=13, device="cpu",
                         dist=Dist(rank=rank, world=2, local_rank=rank))


def test_tas_balanced_slices_of_two_ranks_are_the_global_batch_and_keep_its_statistics():
    from scipy.stats import chisquare
    from test_samplers import clustered_world, skewed_pool

    from irflow.train.loop import step_rng
    from irflow.train.samplers import TASBalancedSampler, TASSampler

    # the union of the ranks' slices, in rank order, is the global batch of one process
    pool, clusters = clustered_world()
    for cls in (TASSampler, TASBalancedSampler):
        sampler = cls(pool, clusters, 32, clusters_per_batch=2)
        tasks = [_task(sampler, r) for r in (0, 1)]
        for step in range(50):
            parts = [t.local_triples(step_rng(13, step)) for t in tasks]
            whole = sampler.batch(step_rng(13, step))
            assert all(tr == whole for tr, _ in parts)  # every rank drew the same global batch
            union = [x for tr, sl in parts for x in tr[sl]]
            assert union == whole
            assert [len(tr[sl]) for tr, sl in parts] == [16, 16]
    # ... so TAS-Balanced's statistics hold for what the ranks train on together: bins uniform over
    # the query's non-empty bins, pairs uniform inside a bin
    pool, nonempty = skewed_pool()
    sampler = TASBalancedSampler(pool, {"skew": 0}, 32)
    tasks = [_task(sampler, r) for r in (0, 1)]
    index = {x.pos: i for i, x in enumerate(pool.triples(np.arange(len(pool))))}  # positives are unique here
    pair_bin = pool.binning().pair_bin
    pairs = []
    for step in range(3000):
        for t in tasks:
            tr, sl = t.local_triples(step_rng(13, step))
            pairs += [index[x.pos] for x in tr[sl]]
    pairs = np.asarray(pairs)
    freq = np.bincount(pair_bin[pairs], minlength=10)
    assert freq[[1, 3, 4, 7, 8]].sum() == 0
    assert chisquare(freq[nonempty]).pvalue > 0.01
    inside = pairs[pair_bin[pairs] == 2]
    counts = np.bincount(inside, minlength=len(pool))[np.flatnonzero(pair_bin == 2)]
    assert counts.min() > 0 and chisquare(counts).pvalue > 0.01


# ------------------------------------------------------------------------------- parameters


def test_devices_is_not_in_the_key_and_must_divide_the_batch():
    from pydantic import ValidationError

    from irflow.errors import IrflowError
    from irflow.train.dist import Dist, check_devices, from_env
    from irflow.train.params import BiEncoderTrainParams, CrossEncoderTrainParams

    M = "all-MiniLM-L6-v2"  # packaged: its identity resolves offline
    a = BiEncoderTrainParams(model=M, objective="infonce", batch_size=8)
    b = BiEncoderTrainParams(model=M, objective="infonce", batch_size=8, devices=4)
    assert "devices" not in json.dumps(b.key_params())
    assert a.key_params() == b.key_params()
    with pytest.raises(ValidationError, match="multiple of devices"):
        BiEncoderTrainParams(model=M, objective="infonce", batch_size=6, devices=4)
    with pytest.raises(ValidationError, match="multiple of devices"):
        CrossEncoderTrainParams(model=M, batch_queries=3, devices=2)
    assert CrossEncoderTrainParams(model=M, batch_queries=4, devices=2).key_params() == \
        CrossEncoderTrainParams(model=M, batch_queries=4).key_params()
    assert from_env({}) == Dist()
    assert from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Dist(1, 2, 1)
    with pytest.raises(IrflowError, match="inconsistent"):
        from_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(IrflowError, match="torchrun started 2"):
        check_devices(4, Dist(0, 2, 0), rows=8, what="batch_size")
    with pytest.raises(IrflowError, match="nproc-per-node 2"):
        check_devices(2, Dist(), rows=8, what="batch_size")


# ------------------------------------------------------------------------------- gradients


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _one_step(rank: int, world: int, port: int, model_dir: str, objective: str, chunk, dtype: str, out: str) -> None:
    """One bi-encoder step of one rank: its loss and the gradients after the cross-rank reduction."""
    import os

    import torch
    from safetensors.torch import save_file

    from irflow.data.synthetic import generate
    from irflow.models.colbert import ColBERT
    from irflow.models.dense import DenseModel
    from irflow.train.biencoder import BiEncoderTask, DenseConfig
    from irflow.train.dist import Dist, reduce_gradients
    from irflow.train.samplers import PairPool, make_sampler

    torch.set_num_threads(1)
    dtype = getattr(torch, dtype)
    family, objective = ("colbert", "margin-mse") if objective == "colbert" else ("bi-encoder", objective)
    d = Dist(rank, world, rank) if world > 1 else Dist()
    if d.active:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    coll = generate("tiny")
    queries, docs = dict(coll.queries), dict(coll.docs)
    r = np.random.default_rng(5)
    qids = [q for q, _ in coll.queries for _ in range(3)]
    ids = list(docs)
    pool = PairPool.from_arrays(qids, [ids[i] for i in r.integers(0, len(ids), len(qids))],
                                [ids[i] for i in r.integers(0, len(ids), len(qids))],
                                r.normal(5, 1, len(qids)).tolist(), r.normal(0, 1, len(qids)).tolist())
    cfg = DenseConfig(objective=objective, batch_size=8, query_max_length=16, passage_max_length=32,
                      cache_chunk=chunk)
    torch.manual_seed(0)  # ColBERT's fresh projection: the same in every process
    if family == "colbert":  # the ColBERT teacher's own training: pairwise Margin-MSE
        model = ColBERT.from_pretrained(model_dir).train().to(dtype)
    else:
        model = DenseModel(model_dir, "mean", True, None).train().to(dtype)
    colbert = ColBERT.from_pretrained(model_dir).to(dtype) if objective in ("inbatch", "dual") else None
    task = BiEncoderTask(model, pool, make_sampler("random", pool, None, 8), queries, docs, cfg, seed=3,
                         device="cpu", colbert=colbert, dist=d)
    task._accum = 1
    loss, _ = task.loss(task._make(0)[0])
    loss.backward()
    reduce_gradients(model.parameters(), d, mean=not task.global_loss)
    losses = [torch.zeros(1, dtype=loss.dtype) for _ in range(world)]
    if d.active:
        torch.distributed.all_gather(losses, loss.detach().reshape(1))
    else:
        losses = [loss.detach().reshape(1)]
    if d.main:
        grads = {n: p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None}
        save_file({**grads, "__loss__": torch.cat(losses)}, out)
    if d.active:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("objective,chunk,dtype", [("infonce", None, "float32"), ("margin-mse", None, "float32"),
                                                   ("dual", None, "float32"), ("dual", 3, "float64"),
                                                   ("infonce", None, "float64"), ("colbert", None, "float32")])
def test_two_ranks_give_the_loss_and_gradients_of_one_process(tmp_path, tiny_bert_nodrop, objective, chunk, dtype):
    """The step itself: 2 x b/2 (gathered in-batch negatives, reduced gradients) == 1 x b.

    In-batch objectives compute the global loss in each rank (equal to one process's); the pairwise
    one a mean over each rank's half (their mean is one process's). GradCache chunks (3 rows,
    not dividing a rank's 4) run inside each rank. In float64 the two agree to 1e-10 of the largest
    gradient: the method is exact. In float32 the loss agrees within 1e-5, and the gradients within
    1e-5 where they are small (InfoNCE); the Margin-MSE gradients reach ~8 here (scale-20 scores
    against teacher margins), summed over all tokens in another order, so there they agree within
    1e-4 of the largest (2e-5 measured; the thread count changes it) - float rounding, as float64
    shows.
    """
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    import torch

    one, two = str(tmp_path / "one.safetensors"), str(tmp_path / "two.safetensors")
    threads = torch.get_num_threads()
    try:  # in this process: its thread count (set to 1 there) must not leak into later tests
        _one_step(0, 1, 0, str(tiny_bert_nodrop), objective, chunk, dtype, one)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_one_step, args=(2, _free_port(), str(tiny_bert_nodrop), objective, chunk, dtype, two), nprocs=2)
    a, b = load_file(one), load_file(two)
    la, lb = a.pop("__loss__"), b.pop("__loss__")
    if objective in ("margin-mse", "colbert"):
        assert abs(float(lb.mean()) - float(la[0])) <= 1e-5
        assert abs(float(lb[0]) - float(lb[1])) > 1e-6  # each rank's own half: not the global loss
    else:
        assert (lb - la[0]).abs().max() <= 1e-5, (la, lb)  # every rank computed the global loss
    assert a.keys() == b.keys() and len(a) > 10
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    scale = max(float(a[k].abs().max()) for k in a)
    tol = 1e-10 * scale if dtype == "float64" else 1e-4 * max(1.0, scale) if scale > 1 else 1e-5
    assert scale > 1e-3 and diff <= tol, (diff, scale)
