#!/usr/bin/env python
"""Cross-encoder throughput of irflow against sentence-transformers: re-ranking and training.

One run, one process, the same model and the same (query, document) pairs on both sides: the
packaged all-MiniLM-L6-v2 as a cross-encoder with the sequence-classification head (one logit),
the head that sentence-transformers' ``CrossEncoder`` builds; irflow loads it with
``head="seqcls"`` and is then given sentence-transformers' weights (the fresh classifier
included), so both score with identical parameters.

* **Inference** (what ``irflow rerank`` does): sentence-transformers' ``CrossEncoder.predict(pairs)``
  with every default (batch_size 32, fp32, length-sorted batches, tokenisation included) against
  :func:`irflow.models.crossencoder.score_pairs` — the scoring call of ``irflow rerank`` — with the
  autocast dtype ``--precision auto`` resolves to on this CPU (bf16 where the CPU has
  AVX512-BF16/AMX), token-budget length buckets, tokenisation included. The pairs are each demo
  query with its judged documents and random documents. They are cut into ``--chunks`` slices of
  one random permutation, timed alternately (ST then irflow, then irflow then ST, ...), so a
  neighbour that steals the CPU slows both sides rather than one. Agreement is printed too: the
  Pearson and Spearman correlation and max abs difference between irflow's bf16 and ST's fp32
  scores, and irflow fp32 against ST on a subset (should be ~1e-6).

* **Training**: sentence-transformers' ``CrossEncoderTrainer`` with ``CrossEncoderTrainingArguments``
  defaults (fp32, its default AdamW, dataloader defaults), batch size = irflow's pairs per step,
  its default loss for one label (``BinaryCrossEntropyLoss``), no evaluation, no saving, against
  :func:`irflow.train.loop.train` with a :class:`irflow.train.crossencoder.CrossEncoderTask`
  (objective ``lce``, ``--batch-queries`` groups of ``--group-size`` documents = the same number
  of pairs per step) at the resolved precision (bf16 autocast), in a temporary checkpoint
  directory (its final checkpoint is written, as in every irflow run, and counted). The pairs are
  the same: the groups irflow's task draws for steps 0..S-1 are flattened into (query, document,
  label) rows, label 1 for the positive, and that is ST's training set (which its sampler then
  shuffles). The two ``train()`` calls run *in lock-step*: in two threads that hand a baton over
  at every optimizer step, so only one computes at a time and the two steps of a pair are seconds
  apart, and a neighbour's load hits both alike (timing the two runs one after the other, on a
  machine at load 6-9, once gave 0.79x where lock-step runs give ~2x). Each side's time is the sum
  of its turns — setup, ``--train-steps`` steps and irflow's final checkpoint — without the waits.
  After an untimed warm-up run of ``--warmup-steps``, ``--rounds`` timed runs, the side that gets
  the main thread alternating; the ratio is the median over rounds of the pairs/s of the whole
  ``train()`` calls; per-step ratios (first and last step of each run left out) are printed too.

    python bench/bench_crossencoder.py [--pairs 1000] [--train-steps 6] [--rounds 2] [--threads 2] [--check]

Machine load matters: the script prints the load average before and after and warns when other
processes compete for the cores. The default run takes about 5-8 minutes on 2 busy cores (7 min at load 10).
Exit status 1 with ``--check`` when either ratio is below its ``--min-*-ratio``.
Needs ``sentence-transformers`` with its training extras (``datasets``, ``accelerate``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_attention_dropout_args, cpu_load, dropout_label, header, log, start_torch  # noqa: E402,F401  (log, cpu_load: used by bench_dense_train too)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="model (default %(default)s, the packaged copy)")
    ap.add_argument("--collection", default="demo", help="synthetic collection (default %(default)s)")
    ap.add_argument("--pairs", type=int, default=1000, help="inference pairs (default %(default)s)")
    ap.add_argument("--chunks", type=int, default=6, help="interleaved inference slices (default %(default)s)")
    ap.add_argument("--train-steps", type=int, default=6, help="optimizer steps per side per round (default %(default)s)")
    ap.add_argument("--warmup-steps", type=int, default=1, help="untimed warm-up steps per side (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=2, help="timed lock-step training runs (default %(default)s)")
    ap.add_argument("--batch-queries", type=int, default=4, help="irflow queries per step (default %(default)s)")
    ap.add_argument("--group-size", type=int, default=8, help="irflow documents per query (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both (default %(default)s)")
    ap.add_argument("--max-length", type=int, default=256, help="truncation length, both sides (default %(default)s)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="irflow's precision, resolved as the CLI does (default %(default)s)")
    ap.add_argument("--skip-inference", action="store_true")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--min-inference-ratio", type=float, default=1.5, help="(default %(default)s)")
    ap.add_argument("--min-training-ratio", type=float, default=1.5, help="(default %(default)s)")
    ap.add_argument("--st-bf16", action="store_true",
                    help="train sentence-transformers with bf16=True (its best CPU setting; use_cpu=True)")
    add_attention_dropout_args(ap)
    ap.add_argument("--check", action="store_true", help="exit 1 when a ratio is below its minimum")
    ap.add_argument("--seed", type=int, default=42)
    return ap.parse_args(argv)


def rankdata(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # average ties
    xs = x[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        if j > i:
            ranks[order[i : j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))[0, 1])


def spearman(a, b) -> float:
    return pearson(rankdata(np.asarray(a, dtype=np.float64)), rankdata(np.asarray(b, dtype=np.float64)))


# ---------------------------------------------------------------------------------------- data


def load_collection(name: str):
    from irflow.data.synthetic import generate

    c = generate(name)
    docs = {d: " ".join(t.split()) for d, t in c.docs}
    queries = {q: " ".join(t.split()) for q, t in c.queries}
    qrels: dict[str, dict[str, int]] = {}
    for q, d, g in c.qrels:
        qrels.setdefault(q, {})[d] = g
    return docs, queries, qrels


def inference_pairs(docs, queries, qrels, n: int, seed: int) -> list[tuple[str, str]]:
    """Each query with its judged documents and random ones, round-robin until ``n`` pairs."""
    rng = random.Random(seed)
    doc_ids = sorted(docs)
    qids = sorted(queries)
    per_q = max(1, -(-n // len(qids)))
    pairs = []
    for q in qids:
        judged = sorted(qrels.get(q, {}))
        rng.shuffle(judged)
        cands = judged[: per_q // 2]
        while len(cands) < per_q:
            d = rng.choice(doc_ids)
            if d not in cands:
                cands.append(d)
        pairs += [(queries[q], docs[d]) for d in cands]
    rng.shuffle(pairs)
    return pairs[:n]


def training_examples(docs, queries, qrels, seed: int, n_neg: int = 30):
    """Positives: grade >= 2; negatives: judged grade <= 1 plus random unjudged documents."""
    from irflow.train.crossencoder import Example

    rng = random.Random(seed + 1)
    doc_ids = sorted(docs)
    out = []
    for q in sorted(queries):
        judged = qrels.get(q, {})
        pos = sorted(d for d, g in judged.items() if g >= 2)
        neg = sorted(d for d, g in judged.items() if g <= 1)
        while len(neg) < n_neg:
            d = rng.choice(doc_ids)
            if d not in judged and d not in neg:
                neg.append(d)
        rng.shuffle(neg)
        if pos:
            out.append(Example(qid=q, positives=pos, negatives=neg))
    return out


# ----------------------------------------------------------------------------------- inference


def bench_inference(args, st, ir, pairs, dtype, prec) -> tuple[float, bool]:
    from irflow.models.crossencoder import score_pairs

    n = len(pairs)
    qs = [q for q, _ in pairs]
    ds = [d for _, d in pairs]
    tok = ir.tokenizer(qs, ds, truncation="longest_first", max_length=args.max_length)["input_ids"]
    lens = [len(t) for t in tok]
    log(f"\n## inference: {n} pairs, tokens per pair mean {statistics.mean(lens):.0f}, "
        f"max {max(lens)} (max_length {args.max_length})")
    log("sentence-transformers: CrossEncoder.predict(pairs) defaults: batch_size 32, fp32, sigmoid output")
    log(f"irflow: score_pairs(head=seqcls, autocast {prec}), max_tokens 16384, max_batch 256 (defaults)")

    def run_st(idx):
        return st.predict([pairs[i] for i in idx])

    def run_ir(idx, autocast=dtype):
        return score_pairs(ir, [qs[i] for i in idx], [ds[i] for i in idx], device="cpu", autocast_dtype=autocast)

    lengths = np.array([len(q) + len(d) for q, d in pairs])
    warm = np.argsort(lengths)[np.linspace(0, n - 1, min(n, 96)).astype(int)]
    for _ in range(2):
        run_st(warm)
        run_ir(warm)

    perm = np.random.default_rng(args.seed).permutation(n)
    slices = [s for s in np.array_split(perm, max(1, min(args.chunks, n))) if len(s)]
    st_scores = np.zeros(n)
    ir_scores = np.zeros(n)
    wall = {"st": 0.0, "irflow": 0.0}
    cpu = {"st": 0.0, "irflow": 0.0}
    ratios = []
    for k, sl in enumerate(slices):
        t = {}
        for name in (("st", "irflow") if k % 2 == 0 else ("irflow", "st")):
            t0, c0 = time.perf_counter(), time.process_time()
            out = run_st(sl) if name == "st" else run_ir(sl)
            t[name] = time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
            wall[name] += t[name]
            (st_scores if name == "st" else ir_scores)[sl] = np.asarray(out, dtype=np.float64)
        ratios.append(t["st"] / t["irflow"])
        log(f"  slice {k + 1}/{len(slices)}: {len(sl)} pairs, ST {len(sl) / t['st']:.1f} pairs/s, "
            f"irflow {len(sl) / t['irflow']:.1f} pairs/s, ratio {ratios[-1]:.2f}")
    ps_st, ps_ir = n / wall["st"], n / wall["irflow"]
    ratio = statistics.median(ratios)
    log(f"{'':24s}{'pairs/s':>10s}{'wall s':>10s}{'cpu s':>10s}")
    log(f"{'sentence-transformers':24s}{ps_st:10.1f}{wall['st']:10.1f}{cpu['st']:10.1f}")
    log(f"{'irflow (' + prec + ')':24s}{ps_ir:10.1f}{wall['irflow']:10.1f}{cpu['irflow']:10.1f}")
    log(f"INFERENCE ratio irflow/ST: {ratio:.2f}x median of {len(ratios)} interleaved slices "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}; whole-run {ps_ir / ps_st:.2f}x, "
        f"cpu-time {cpu['st'] / cpu['irflow']:.2f}x)")

    # agreement: ST returns sigmoid(logit); irflow returns the logit
    st_logit = np.log(st_scores / (1 - st_scores))
    ir_prob = 1 / (1 + np.exp(-ir_scores))
    log(f"agreement irflow {prec} vs ST fp32 over {n} pairs: Pearson {pearson(ir_scores, st_logit):.5f}, "
        f"Spearman {spearman(ir_scores, st_logit):.5f}, max abs diff {np.abs(ir_prob - st_scores).max():.2e} "
        f"(sigmoid scores), {np.abs(ir_scores - st_logit).max():.2e} (logits; logit std {st_logit.std():.3f})")
    sub = perm[: min(n, 128)]
    fp32 = np.asarray(run_ir(sub, autocast=None))
    log(f"agreement irflow fp32 vs ST fp32 over {len(sub)} pairs: max abs diff "
        f"{np.abs(1 / (1 + np.exp(-fp32)) - st_scores[sub]).max():.2e} (sigmoid scores)")
    ok = ratio >= args.min_inference_ratio
    log(f"inference check (ratio >= {args.min_inference_ratio}): {'PASS' if ok else 'FAIL'}")
    return ratio, ok


# ------------------------------------------------------------------------------------ training


class Baton:
    """Whose turn it is, between two threads; a side that has finished never blocks the other."""

    def __init__(self):
        self.cv = threading.Condition()
        self.turn: str | None = None
        self.done: set[str] = set()

    def take(self, me: str, other: str) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self.turn == me or other in self.done)
            self.turn = me

    def give(self, other: str, finished: str | None = None) -> None:
        with self.cv:
            if finished:
                self.done.add(finished)
            self.turn = other
            self.cv.notify_all()


class Side:
    """One side's turns: (wall, cpu) seconds of each; cpu is the process's, as only one side computes."""

    def __init__(self, me: str, other: str, baton: Baton):
        self.me, self.other, self.baton = me, other, baton
        self.segments: list[tuple[float, float]] = []
        self._t = self._c = None

    def _open(self):
        self._t, self._c = time.perf_counter(), time.process_time()

    def _close(self):
        if self._t is not None:
            self.segments.append((time.perf_counter() - self._t, time.process_time() - self._c))
            self._t = None

    def begin(self):
        self.baton.take(self.me, self.other)
        self._open()

    def step_done(self):
        self._close()
        self.baton.give(self.other)
        self.baton.take(self.me, self.other)
        self._open()

    def end(self):
        self._close()
        self.baton.give(self.other, finished=self.me)


class TurnTakingTask:
    """An irflow training task that hands the baton over between optimizer steps."""

    def __init__(self, task, side: Side):
        self.task, self.side, self.model = task, side, task.model
        self.first = True

    def micro_batches(self, step, rng, accum):
        if not self.first:  # the previous step is done (the loop asks for a step's batches first)
            self.side.step_done()
        self.first = False
        return self.task.micro_batches(step, rng, accum)

    def loss(self, batch):
        return self.task.loss(batch)

    def validate(self):
        return self.task.validate()

    def head_parameters(self):
        return self.task.head_parameters()



def bench_training(args, st, ir, docs, queries, qrels, dtype, prec) -> tuple[float, bool]:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import TrainerCallback

    from irflow.train.crossencoder import CrossEncoderTask, GroupConfig
    from irflow.train.loop import OptimConfig, train

    group = GroupConfig(objective="lce", batch_queries=args.batch_queries, group_size=args.group_size)
    per_step = args.batch_queries * args.group_size
    examples = training_examples(docs, queries, qrels, args.seed)
    task = CrossEncoderTask(ir, examples, queries, docs, group, seed=args.seed, device="cpu")

    def step_pairs(first: int, count: int) -> dict:
        rows = {"query": [], "document": [], "label": []}
        for step in range(first, first + count):
            rng = np.random.default_rng([args.seed, step])  # as irflow's loop draws a step's batch
            for qids, groups in task.micro_batches(step, rng, 1):
                for qid, (dids, _) in zip(qids, groups):
                    for c, d in enumerate(dids):
                        rows["query"].append(queries[qid])
                        rows["document"].append(docs[d])
                        rows["label"].append(1.0 if c == 0 else 0.0)
        return rows

    rows = step_pairs(0, max(args.train_steps, args.warmup_steps))
    lens = [len(t) for t in ir.tokenizer(rows["query"], rows["document"], truncation="longest_first",
                                           max_length=args.max_length)["input_ids"]]
    log(f"\n## training: {per_step} pairs per step ({args.batch_queries} queries x {args.group_size} docs), "
        f"{args.train_steps} steps per side per round in lock-step, {args.rounds} round(s) after a "
        f"{args.warmup_steps}-step warm-up; tokens per pair mean {statistics.mean(lens):.0f}, max {max(lens)}")
    log(f"attention dropout: irflow {dropout_label(args.attention_dropout)}, ST {dropout_label(args.st_attention_dropout)}; "
        f"ST {'bf16=True' if args.st_bf16 else 'fp32 (default)'}")
    log("sentence-transformers: CrossEncoderTrainer, CrossEncoderTrainingArguments defaults ("
        f"{'bf16=True' if args.st_bf16 else 'fp32'}, "
        f"optim {CrossEncoderTrainingArguments(output_dir=tempfile.gettempdir()).optim}), "
        f"batch {per_step}, BinaryCrossEntropyLoss, no eval, no save")
    log(f"irflow: train.loop.train + CrossEncoderTask(lce), autocast {prec}, AdamW, clip 10, final checkpoint")

    tmp = Path(tempfile.mkdtemp(prefix="bench_ce_"))

    def lockstep(steps: int, k: int, main_side: str) -> dict:
        """One ``trainer.train()`` and one irflow ``train()`` of ``steps`` steps, taking turns step by step.

        The two run in two threads that pass a baton at every optimizer step, so exactly one computes
        at a time and the two steps of a pair are seconds apart: a neighbour's load hits both alike.
        Each side's time is the sum of its turns: setup, steps and (irflow) the final checkpoint,
        without the time spent waiting for the other.
        """
        baton = Baton()
        sides = {"st": Side("st", "irflow", baton), "irflow": Side("irflow", "st", baton)}

        data = Dataset.from_dict({c: v[: steps * per_step] for c, v in rows.items()})
        targs = CrossEncoderTrainingArguments(
            output_dir=str(tmp / f"st-{k}"), per_device_train_batch_size=per_step, max_steps=steps,
            report_to="none", save_strategy="no", seed=args.seed, disable_tqdm=True,
            **({"bf16": True, "use_cpu": True} if args.st_bf16 else {}))

        class PassBaton(TrainerCallback):
            def on_step_end(self, a, s, c, **kw):
                sides["st"].step_done()

        trainer = CrossEncoderTrainer(model=st, args=targs, train_dataset=data, callbacks=[PassBaton()])
        ckpt = tmp / f"irflow-{k}" / "ckpt"
        ckpt.parent.mkdir(parents=True)
        cfg = OptimConfig(max_steps=steps, checkpoint_every=10**9, seed=args.seed, precision=args.precision)
        turn_task = TurnTakingTask(task, sides["irflow"])
        errors = []

        def run_irflow():
            stats = train(turn_task, cfg, ckpt=ckpt, log_path=ckpt.parent / "log.jsonl", device="cpu",
                          autocast_dtype=dtype, progress=False)
            assert stats["steps"] == steps, stats

        def side_run(name, fn, worker):
            if worker:
                torch.set_num_threads(args.threads)
            try:
                sides[name].begin()
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                errors.append(e)
            finally:
                sides[name].end()

        # which side gets the main thread alternates by round (it should not matter; this shows it)
        jobs = [("st", trainer.train), ("irflow", run_irflow)]
        main_job, worker_job = jobs if main_side == "st" else jobs[::-1]
        baton.turn = "st"  # sentence-transformers takes the first turn
        th = threading.Thread(target=side_run, args=(*worker_job, True), name=f"{worker_job[0]}-train")
        th.start()
        try:
            side_run(*main_job, False)
        finally:
            th.join()
            shutil.rmtree(ckpt.parent, ignore_errors=True)
        if errors:
            raise errors[0]
        return {name: side.segments for name, side in sides.items()}

    try:
        lockstep(args.warmup_steps, 0, "irflow")
        log(f"  (warm-up done: {args.warmup_steps} steps each; torch threads {torch.get_num_threads()})")
        round_ratios, step_ratios = [], []
        total = {"st": [0.0, 0.0], "irflow": [0.0, 0.0]}  # wall, cpu
        for r in range(args.rounds):
            main_side = "st" if r % 2 == 0 else "irflow"
            seg = lockstep(args.train_steps, r + 1, main_side)
            wall = {n: sum(w for w, _ in v) for n, v in seg.items()}
            for n, v in seg.items():
                total[n][0] += wall[n]
                total[n][1] += sum(c for _, c in v)
            # steps 2..S-1 of both sides: no setup, no final checkpoint
            pairs = list(zip(seg["st"], seg["irflow"]))[1 : args.train_steps - 1]
            step_ratios += [a[0] / b[0] for a, b in pairs]
            round_ratios.append(wall["st"] / wall["irflow"])
            n_pairs = args.train_steps * per_step
            log(f"  round {r + 1}/{args.rounds} ({main_side} in the main thread): ST {n_pairs / wall['st']:.2f} pairs/s, irflow "
                f"{n_pairs / wall['irflow']:.2f} pairs/s, ratio {round_ratios[-1]:.2f}; per-step ratios "
                + " ".join(f"{a[0] / b[0]:.2f}" for a, b in zip(seg["st"], seg["irflow"])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = args.rounds * args.train_steps * per_step
    log(f"{'':24s}{'pairs/s':>10s}{'wall s':>10s}{'cpu s':>10s}   (whole train() calls, waiting for the other "
        "side left out)")
    log(f"{'sentence-transformers':24s}{n / total['st'][0]:10.2f}{total['st'][0]:10.1f}{total['st'][1]:10.1f}")
    log(f"{'irflow (' + prec + ')':24s}{n / total['irflow'][0]:10.2f}{total['irflow'][0]:10.1f}"
        f"{total['irflow'][1]:10.1f}")
    ratio = statistics.median(round_ratios)
    steady = f"median {statistics.median(step_ratios):.2f}, min {min(step_ratios):.2f}, max {max(step_ratios):.2f}, " \
        f"n={len(step_ratios)}" if step_ratios else "n/a (needs --train-steps >= 3)"
    log(f"TRAINING ratio irflow/ST: {ratio:.2f}x (median of {len(round_ratios)} round(s); steady-state per-step "
        f"ratios: {steady}; cpu-time {total['st'][1] / total['irflow'][1]:.2f}x)")
    ok = ratio >= args.min_training_ratio
    log(f"training check (ratio >= {args.min_training_ratio}): {'PASS' if ok else 'FAIL'}")
    return ratio, ok


def main(argv=None) -> int:
    args = parse_args(argv)
    torch = start_torch(args.threads)

    import transformers
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    from irflow.devices import resolve_dtype
    from irflow.models.crossencoder import CrossEncoder
    from irflow.models.resolve import resolve, set_attention_dropout
    from irflow.train.step import prepare_model

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    t_start = time.perf_counter()
    path = resolve(args.model)
    load0 = header("bench_crossencoder", args.threads, "the interleaving")
    dtype = resolve_dtype("cpu", args.precision)
    prec = "bf16" if dtype == torch.bfloat16 else "fp32"
    log(f"model {args.model} ({path}) as a cross-encoder with the sequence-classification head, "
        f"max_length {args.max_length}; irflow precision {args.precision} -> {prec}")

    docs, queries, qrels = load_collection(args.collection)
    log(f"collection synthetic:{args.collection}: {len(docs)} docs, {len(queries)} queries, "
        f"{sum(len(v) for v in qrels.values())} qrels")

    def load_pair():
        torch.manual_seed(args.seed)  # the fresh classifier
        st = STCrossEncoder(path, num_labels=1, max_length=args.max_length, device="cpu")
        ir = CrossEncoder(path, head="seqcls", max_length=args.max_length)
        ir.backbone.load_state_dict(st[0].model.state_dict())  # identical weights, classifier included
        return st, ir

    ok = True
    results = {}
    if not args.skip_inference:
        st, ir = load_pair()
        pairs = inference_pairs(docs, queries, qrels, args.pairs, args.seed)
        results["inference"], good = bench_inference(args, st, ir, pairs, dtype, prec)
        ok = ok and good
        del st, ir
    if not args.skip_training:
        st, ir = load_pair()
        prepare_model(ir, args.attention_dropout)  # what `irflow train` does to its student
        if args.st_attention_dropout is not None:
            set_attention_dropout(st[0].model, args.st_attention_dropout)
        results["training"], good = bench_training(args, st, ir, docs, queries, qrels, dtype, prec)
        ok = ok and good
    log("\n## summary")
    for k, v in results.items():
        log(f"{k} speed-up irflow/sentence-transformers: {v:.2f}x")
    log(f"load average: {load0:.1f} at start, {cpu_load():.1f} at end (threads {args.threads}); "
        f"total {time.perf_counter() - t_start:.0f} s")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
