#!/usr/bin/env python
"""Bi-encoder training throughput of irflow against sentence-transformers (Margin-MSE).

One run, one process, the same model and the same training triples on both sides: the packaged
all-MiniLM-L6-v2 as a bi-encoder (mean pooling, L2 normalisation — its sentence-transformers
pipeline), batch ``--batch-size`` triples (query, positive, negative) per optimizer step, queries
truncated at ``--query-max-length`` and passages at ``--passage-max-length`` tokens, pairwise
Margin-MSE on the dot product of the two L2-normalised embeddings.

* **sentence-transformers**: ``SentenceTransformerTrainer`` with
  ``SentenceTransformerTrainingArguments`` defaults (fp32 — or ``bf16=True`` with ``--st-bf16`` —,
  its default fused AdamW, linear schedule, clipping at 1.0, dataloader defaults: ``num_workers`` 0,
  tokenisation by its collator in the training loop), ``per_device_train_batch_size`` =
  ``--batch-size``, ``losses.MarginMSELoss(model)`` (default ``pairwise_dot_score``), no
  evaluation, no saving, no logging, ``use_cpu=True`` (the
  benchmark is a CPU one; transformers requires it for ``bf16=True`` on a CPU). Its dataset is a
  ``datasets.Dataset`` with the columns query / positive / negative / label, label = teacher
  positive score - teacher negative score (MarginMSELoss's format). ST has one ``max_seq_length``
  for every column: it is set to the passage length, and the query texts are cut to
  ``--query-max-length`` tokens beforehand (tokenised with truncation and decoded), so queries are
  30 tokens and passages 200 on both sides; irflow gets the same cut query texts (its own
  truncation at 30 is then a no-op: the script counts the queries whose tokens differ, normally 0).
  ST's batch sampler is the documented callable form of ``batch_sampler`` returning its
  ``DefaultBatchSampler`` over a ``SequentialSampler`` (instead of a ``RandomSampler``), so
  its batches are exactly irflow's, in irflow's order.

* **irflow**: :func:`irflow.train.loop.train` with a :class:`irflow.train.biencoder.BiEncoderTask`
  (objective ``margin-mse``, sampler ``random`` over a :class:`~irflow.train.samplers.PairPool`
  built by :func:`~irflow.train.biencoder.teacher_pairs`, the real
  :class:`~irflow.train.samplers.Prefetcher` that samples and tokenises the next steps in a thread) on a
  :class:`irflow.models.dense.DenseModel` with ``pooling="mean", normalize=True, scale=1.0`` — the
  same score as MarginMSELoss (irflow's default ``scale`` 20 for normalised models would change the
  loss, not the cost) — at the precision ``--precision`` resolves to as the CLI does (``auto``:
  bf16 autocast over fp32 weights on a CPU with AVX512-BF16/AMX), AdamW, clipping at 10, in a
  temporary checkpoint directory (``checkpoint_every`` huge; the final checkpoint every irflow run
  writes is counted). ST's rows are the triples irflow's sampler draws for steps 0..S-1 with
  ``np.random.default_rng([seed, step])`` — what the training loop hands the task — so both train
  on identical batches. Before timing, one batch is scored by both in fp32 (eval mode, identical
  pretrained weights): the token ids and the two losses must agree.

The data: queries with their qrels positives (relevance >= ``--min-rel``) and ``--negatives``
random other documents each; teacher scores are fixed random numbers per (query, document)
(positives ~ N(6, 2), negatives ~ N(0, 3)), since only throughput is measured. The default
collection is irds:cranfield (passages mean ~214 tokens, about half longer than 200, so the
truncation at 200 matters; ~19% of queries longer than 30 tokens).

**Timing** (as in ``bench_crossencoder.py``, since the machine is shared): per round, one
``trainer.train()`` and one irflow ``train()`` of ``--steps`` steps run *in lock-step*, in two
threads that hand a baton over at every optimizer step, so only one computes at a time and a
neighbour's load hits both alike. A side's time is the sum of its turns (setup, its steps,
irflow's final checkpoint) without the waits. After an untimed warm-up run of ``--warmup-steps``,
``--rounds`` timed runs, the side that takes the first turn alternating; the headline ratio is the
median over rounds of the triples/s of the whole ``train()`` calls; steady-state per-step ratios
(first and last step of each run left out) are printed too. Two differences from the
cross-encoder benchmark: both sides run in worker threads (neither gets the main thread), and all
threads allocate from one glibc malloc arena (``mallopt(M_ARENA_MAX, 1)`` at start, as the main
thread of a real run does; see :func:`_one_malloc_arena`): with the default per-thread arenas
irflow ran 25-30% slower in every round where sentence-transformers took the first turn than in
the others (round ratios 1.6-1.8 against 2.1-2.2) and a third of the CPU time was system time
(page faults); with one arena both sides are faster and the rounds agree (1.98 / 2.06, 1.90 / 1.82).
irflow's prefetcher tokenises the next steps while ST computes (in a real run it overlaps irflow's
own compute): ~25 ms a step.

Worker threads matter on a *busy* machine for another reason: libgomp's default active waiting.
Computing in the main thread of a process, as a real run does, with other jobs on the cores, both
sides were much slower than in a worker thread (irflow 14-23 s a step against 7-9, ST ~22 against
~16), irflow more so (many small parallel regions), so a real run there is only ~1.0-1.5x faster;
with ``OMP_WAIT_POLICY=PASSIVE`` main-thread runs are as fast as worker threads (irflow 7.4-9.3 s,
ST 16-18 s a step: ~2x). The worker threads of this benchmark behave like passive waiting; the
header prints ``OMP_WAIT_POLICY``. On an idle machine active waiting costs nothing.

    python bench/bench_dense_train.py [--dataset irds:cranfield] [--steps 4] [--rounds 5] [--check]

Machine load matters: the load average is printed before and after, with a warning when other
processes compete for the cores. Exit status 1 with ``--check`` when the ratio is below
``--min-ratio`` (1.5). Needs ``sentence-transformers`` with its training extras (``datasets``,
``accelerate``); an ``irds:`` dataset needs ``IR_DATASETS_HOME`` (or ``--irds-home``) holding it.
"""

from __future__ import annotations

import ctypes
import os
import sys


def _one_malloc_arena() -> bool:
    """Make every thread allocate from glibc's main arena, as the main thread of a real run does.

    Must run before any thread allocates (numpy's BLAS starts threads at import), hence here.
    The two sides train in worker threads; with glibc's default per-thread arenas their large
    activation buffers were returned and re-faulted far more often (a third of the run's CPU time
    was system time) and irflow ran 25-30% slower in the rounds where ST went first than in the
    others, so the harness rather than the libraries set the ratio. ``--glibc-arenas`` or
    ``MALLOC_ARENA_MAX`` in the environment leave glibc's default alone.
    """
    if "--glibc-arenas" in sys.argv[1:] or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(-8, 1))  # M_ARENA_MAX = -8
    except (OSError, AttributeError):
        return False


ONE_ARENA = _one_malloc_arena()

import argparse  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the lock-step machinery of the cross-encoder benchmark: same timing method, same code
from bench_crossencoder import Baton, Side, TurnTakingTask  # noqa: E402
from common import add_attention_dropout_args, cpu_load, dropout_label, header, log, start_torch  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="all-MiniLM-L6-v2",
                    help="model (default %(default)s, the packaged copy)")
    ap.add_argument("--dataset", default="irds:cranfield",
                    help="irds:<id> or synthetic:<name> with queries and qrels (default %(default)s)")
    ap.add_argument("--irds-home", default=None, help="sets IR_DATASETS_HOME (default: the environment's)")
    ap.add_argument("--steps", type=int, default=4,
                    help="optimizer steps per side per round (default %(default)s)")
    ap.add_argument("--warmup-steps", type=int, default=1,
                    help="untimed warm-up steps per side (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="timed lock-step training runs (default %(default)s)")
    ap.add_argument("--batch-size", type=int, default=32, help="triples per step (default %(default)s)")
    ap.add_argument("--query-max-length", type=int, default=30, help="(default %(default)s)")
    ap.add_argument("--passage-max-length", type=int, default=200, help="(default %(default)s)")
    ap.add_argument("--negatives", type=int, default=20,
                    help="random negatives per query (default %(default)s)")
    ap.add_argument("--min-rel", type=int, default=1,
                    help="qrels relevance of a positive (default %(default)s)")
    ap.add_argument("--lr", type=float, default=2e-5, help="learning rate, both sides (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for both (default %(default)s)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="irflow's precision, resolved as the CLI does (default %(default)s)")
    ap.add_argument("--st-bf16", action="store_true",
                    help="sentence-transformers with bf16=True (autocast) instead of its fp32 default")
    add_attention_dropout_args(ap)
    ap.add_argument("--min-ratio", type=float, default=1.5, help="(default %(default)s)")
    ap.add_argument("--check", action="store_true", help="exit 1 when the ratio is below --min-ratio")
    ap.add_argument("--glibc-arenas", action="store_true",
                    help="keep glibc's per-thread malloc arenas (default: one arena for all threads, see "
                         "_one_malloc_arena)")
    ap.add_argument("--seed", type=int, default=42)
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------- data


def load_collection(spec: str):
    from irflow.data.sources import iter_qrels, iter_texts

    docs = {i: " ".join(t.split()) for i, t, _, _ in iter_texts(spec, "docs")}
    queries = {i: " ".join(t.split()) for i, t, _, _ in iter_texts(spec, "queries")}
    qrels: dict[str, dict[str, int]] = {}
    for q, d, g in iter_qrels(spec):
        qrels.setdefault(q, {})[d] = g
    return docs, queries, qrels


def build_pool(docs, queries, qrels, n_neg: int, min_rel: int, seed: int):
    """Examples (qrels positives, random negatives), fixed random teacher scores, irflow's pair pool."""
    from irflow.train.biencoder import teacher_pairs
    from irflow.train.crossencoder import Example
    from irflow.train.samplers import PairPool

    rng = np.random.default_rng(seed + 1)
    doc_ids = sorted(docs)
    examples, teacher = [], {}
    for q in sorted(queries):
        judged = qrels.get(q, {})
        pos = sorted(d for d, g in judged.items() if g >= min_rel and d in docs)
        if not pos:
            continue
        neg: list[str] = []
        while len(neg) < min(n_neg, len(doc_ids) - len(pos)):
            d = doc_ids[int(rng.integers(len(doc_ids)))]
            if d not in pos and d not in neg:
                neg.append(d)
        examples.append(Example(qid=q, positives=pos, negatives=neg))
        # teacher scores: fixed random numbers (only throughput is measured)
        teacher[q] = {**{d: float(rng.normal(6.0, 2.0)) for d in pos},
                      **{d: float(rng.normal(0.0, 3.0)) for d in neg}}
    pool = PairPool.from_arrays(*teacher_pairs(examples, teacher, n_neg))
    return examples, pool


def cut_queries(tokenizer, queries: dict[str, str], max_length: int) -> tuple[dict[str, str], int, int]:
    """Query texts cut to ``max_length`` tokens (specials included): tokenise with truncation, decode.

    Returns the cut texts, how many were longer, and how many do not re-tokenise to the same ids.
    """
    qids = sorted(queries)
    full = tokenizer([queries[q] for q in qids], truncation=True, max_length=max_length)["input_ids"]
    cut = tokenizer.batch_decode(full, skip_special_tokens=True)
    again = tokenizer(cut, truncation=True, max_length=max_length)["input_ids"]
    longer = sum(1 for x in tokenizer([queries[q] for q in qids])["input_ids"] if len(x) > max_length)
    differ = sum(1 for a, b in zip(full, again) if a != b)
    return dict(zip(qids, cut)), longer, differ


# ------------------------------------------------------------------------------------ training


def sequential_batch_sampler(dataset, batch_size, drop_last, valid_label_columns=None, generator=None,
                             seed=0):
    """ST's ``DefaultBatchSampler`` over the rows in order (the documented callable ``batch_sampler``)."""
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import SequentialSampler

    return DefaultBatchSampler(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last,
                               valid_label_columns=valid_label_columns, generator=generator, seed=seed)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch = start_torch(args.threads, args.irds_home)

    import transformers
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback

    from irflow.devices import resolve_dtype
    from irflow.models.dense import DenseModel
    from irflow.models.resolve import resolve, set_attention_dropout
    from irflow.train.step import prepare_model
    from irflow.train.biencoder import BiEncoderTask, DenseConfig
    from irflow.train.loop import OptimConfig, train
    from irflow.train.samplers import make_sampler

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    t_start = time.perf_counter()
    path = resolve(args.model)
    load0 = header("bench_dense_train", args.threads, "the lock-step")
    arenas = os.environ.get("MALLOC_ARENA_MAX", "unset")
    log("malloc: " + ("one glibc arena for all threads (M_ARENA_MAX 1)" if ONE_ARENA
                      else f"glibc default arenas (MALLOC_ARENA_MAX={arenas})")
        + f"; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    dtype = resolve_dtype("cpu", args.precision)
    prec = "bf16" if dtype == torch.bfloat16 else "fp32"
    b, qlen, plen = args.batch_size, args.query_max_length, args.passage_max_length

    # ---- models: identical pretrained weights on both sides
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = plen
    ir = DenseModel(path, pooling="mean", normalize=True, scale=1.0)
    ir.to("cpu").train()
    prepare_model(ir, args.attention_dropout)  # what `irflow train` does to its student
    if args.st_attention_dropout is not None:
        set_attention_dropout(st[0].auto_model, args.st_attention_dropout)
    log(f"model {args.model} ({path}): ST modules {[type(m).__name__ for m in st]}; irflow "
        f"DenseModel(mean, normalize, scale 1); queries {qlen} / passages {plen} tokens; irflow precision "
        f"{args.precision} -> {prec}; ST {'bf16=True' if args.st_bf16 else 'fp32 (default)'}; attention "
        f"dropout irflow {dropout_label(args.attention_dropout)}, ST {dropout_label(args.st_attention_dropout)}")

    # ---- data: the same triples for both sides
    docs, queries, qrels = load_collection(args.dataset)
    queries, n_long, n_differ = cut_queries(ir.tokenizer, queries, qlen)
    examples, pool = build_pool(docs, queries, qrels, args.negatives, args.min_rel, args.seed)
    cfg = DenseConfig(objective="margin-mse", sampler="random", batch_size=b, negatives_depth=args.negatives,
                      query_max_length=qlen, passage_max_length=plen)
    sampler = make_sampler("random", pool, None, b)
    task = BiEncoderTask(ir, pool, sampler, queries, docs, cfg, seed=args.seed, device="cpu")

    n_rows = max(args.steps, args.warmup_steps)
    rows = {"query": [], "positive": [], "negative": [], "label": []}
    for step in range(n_rows):
        rng = np.random.default_rng([args.seed, step])  # as irflow's loop draws a step's batch
        for t in sampler.batch(rng):
            rows["query"].append(queries[t.qid])
            rows["positive"].append(docs[t.pos])
            rows["negative"].append(docs[t.neg])
            rows["label"].append(t.pos_score - t.neg_score)
    dl = np.array([len(x) for x in ir.tokenizer(sorted(docs.values()))["input_ids"]])
    bl = np.array([len(x) for x in ir.tokenizer(rows["positive"] + rows["negative"], truncation=True,
                                                max_length=plen)["input_ids"]])
    ql = np.array([len(x) for x in ir.tokenizer(rows["query"], truncation=True,
                                                max_length=qlen)["input_ids"]])
    n_r = len(rows["query"])
    width_d = np.array([max(bl[i:i + b].max(), bl[n_r + i:n_r + i + b].max()) for i in range(0, n_r, b)])
    width_q = np.array([ql[i:i + b].max() for i in range(0, n_r, b)])
    log(f"dataset {args.dataset}: {len(docs)} docs (tokens mean {dl.mean():.0f}, median "
        f"{np.median(dl):.0f}, {(dl > plen).mean():.0%} longer than {plen}), {len(queries)} queries "
        f"({n_long} longer than {qlen} tokens, cut; {n_differ} re-tokenise differently), "
        f"{len(examples)} with positives; pool {len(pool)} triples "
        f"({args.negatives} random negatives per query, random teacher scores); timed passages: mean "
        f"{bl.mean():.0f} tokens after truncation, {(bl == plen).mean():.0%} at {plen}, batches padded to "
        f"{width_d.mean():.0f} (padding {1 - bl.mean() / width_d.mean():.0%}); queries mean {ql.mean():.0f}, "
        f"padded to {width_q.mean():.0f}")

    tmp = Path(tempfile.mkdtemp(prefix="bench_dense_"))

    def st_trainer(steps: int, k: int, callbacks=()):
        data = Dataset.from_dict({c: v[: steps * b] for c, v in rows.items()})
        targs = SentenceTransformerTrainingArguments(
            output_dir=str(tmp / f"st-{k}"), per_device_train_batch_size=b, learning_rate=args.lr,
            max_steps=steps, report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
            seed=args.seed, disable_tqdm=True, bf16=args.st_bf16, use_cpu=True,
            batch_sampler=sequential_batch_sampler)
        trainer = SentenceTransformerTrainer(model=st, args=targs, train_dataset=data,
                                             loss=MarginMSELoss(st), callbacks=list(callbacks))
        trainer.remove_callback(PrinterCallback)  # the final metrics print; nothing else is logged
        return trainer

    # ---- the same function: step 0's batch, fp32, eval mode, identical weights
    trainer = st_trainer(1, 0)
    batch_st = trainer.data_collator([{c: rows[c][i] for c in rows} for i in range(b)])
    batch_ir = task.micro_batches(0, np.random.default_rng([args.seed, 0]), 1)[0]  # irflow's step 0
    task.close()

    def ids(enc, prefix=""):
        m = enc[prefix + "attention_mask"].bool()
        return [r[mm].tolist() for r, mm in zip(enc[prefix + "input_ids"], m)]

    same_q = ids(batch_st, "query_") == ids(batch_ir[0])
    same_d = ids(batch_st, "positive_") + ids(batch_st, "negative_") == ids(batch_ir[1])
    st.eval()
    ir.eval()
    with torch.no_grad():
        loss_st = float(trainer.compute_loss(st, dict(batch_st)))
        loss_ir = float(task.loss(batch_ir)[0])
    st.train()
    ir.train()
    rel = abs(loss_st - loss_ir) / max(abs(loss_st), 1e-12)
    log(f"same batch, fp32, eval mode: token ids identical: queries {same_q}, passages {same_d}; loss ST "
        f"{loss_st:.6f}, irflow {loss_ir:.6f} (rel. diff {rel:.1e})")
    del trainer

    log(f"\n## training: {b} triples per step, {args.steps} steps per side per round in lock-step, "
        f"{args.rounds} round(s) after a {args.warmup_steps}-step warm-up")
    targs0 = SentenceTransformerTrainingArguments(output_dir=str(tmp / "probe"), report_to="none")
    log(f"sentence-transformers: SentenceTransformerTrainer, MarginMSELoss (dot), optim {targs0.optim}, "
        f"max_grad_norm {targs0.max_grad_norm}, {'bf16 autocast' if args.st_bf16 else 'fp32'}, lr {args.lr}, "
        "sequential batches, no eval/save/logging")
    log(f"irflow: train.loop.train + BiEncoderTask(margin-mse, random sampler, prefetcher), autocast {prec}, "
        f"AdamW, clip 10, lr {args.lr}, final checkpoint")

    def lockstep(steps: int, k: int, first: str) -> dict:
        """One ``trainer.train()`` and one irflow ``train()`` of ``steps`` steps, taking turns by step.

        Both run in fresh worker threads, so neither side gets the main thread (on a busy machine the
        main thread was slow and erratic for both, from libgomp's active waiting: see the module
        docstring); ``first`` takes the first turn.
        """
        baton = Baton()
        sides = {"st": Side("st", "irflow", baton), "irflow": Side("irflow", "st", baton)}

        class PassBaton(TrainerCallback):
            def on_step_end(self, a, s, c, **kw):
                sides["st"].step_done()

        trainer = st_trainer(steps, k, [PassBaton()])
        ckpt = tmp / f"irflow-{k}" / "ckpt"
        ckpt.parent.mkdir(parents=True)
        ocfg = OptimConfig(lr=args.lr, max_steps=steps, checkpoint_every=10**9, seed=args.seed,
                           precision=args.precision)
        turn_task = TurnTakingTask(task, sides["irflow"])
        errors = []

        def run_irflow():
            try:
                stats = train(turn_task, ocfg, ckpt=ckpt, log_path=ckpt.parent / "log.jsonl",
                              device="cpu", autocast_dtype=dtype, progress=False)
            finally:
                task.close()  # the prefetcher: the next round starts again at step 0
            assert stats["steps"] == steps, stats

        def side_run(name, fn):
            torch.set_num_threads(args.threads)
            try:
                sides[name].begin()
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                errors.append(e)
            finally:
                sides[name].end()

        baton.turn = first
        threads = [threading.Thread(target=side_run, args=job, name=f"{job[0]}-train")
                   for job in (("st", trainer.train), ("irflow", run_irflow))]
        for th in threads:
            th.start()
        try:
            for th in threads:
                th.join()
        finally:
            shutil.rmtree(ckpt.parent, ignore_errors=True)
        if errors:
            raise errors[0]
        return {name: side.segments for name, side in sides.items()}

    try:
        lockstep(args.warmup_steps, 0, "st")
        log(f"  (warm-up done: {args.warmup_steps} step(s) each; torch threads "
            f"{torch.get_num_threads()}; load average {cpu_load():.1f})")
        round_ratios, step_ratios = [], []
        total = {"st": [0.0, 0.0], "irflow": [0.0, 0.0]}  # wall, cpu
        steady = {"st": 0.0, "irflow": 0.0}
        n_steady = 0
        for r in range(args.rounds):
            first = "st" if r % 2 == 0 else "irflow"
            seg = lockstep(args.steps, r + 1, first)
            wall = {n: sum(w for w, _ in v) for n, v in seg.items()}
            for n, v in seg.items():
                total[n][0] += wall[n]
                total[n][1] += sum(c for _, c in v)
            # steps 2..S-1 of both sides: no setup, no final checkpoint
            pairs = list(zip(seg["st"], seg["irflow"]))[1 : args.steps - 1]
            step_ratios += [a[0] / c[0] for a, c in pairs]
            steady["st"] += sum(a[0] for a, _ in pairs)
            steady["irflow"] += sum(c[0] for _, c in pairs)
            n_steady += len(pairs)
            round_ratios.append(wall["st"] / wall["irflow"])
            n_tr = args.steps * b
            log(f"  round {r + 1}/{args.rounds} ({first} first): ST {n_tr / wall['st']:.2f} "
                f"triples/s, irflow {n_tr / wall['irflow']:.2f} triples/s, ratio {round_ratios[-1]:.2f}; "
                "per-step ratios " + " ".join(f"{a[0] / c[0]:.2f}" for a, c in zip(seg["st"], seg["irflow"]))
                + f"; load {cpu_load():.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        task.close()

    n = args.rounds * args.steps * b
    log(f"{'':26s}{'triples/s':>10s}{'wall s':>10s}{'cpu s':>10s}{'steady/s':>10s}   (whole train() "
        "calls, waiting for the other side left out; steady: steps 2..S-1)")
    for name, label in (("st", "sentence-transformers"), ("irflow", f"irflow ({prec})")):
        st_rate = f"{n_steady * b / steady[name]:10.2f}" if n_steady else f"{'n/a':>10s}"
        log(f"{label:26s}{n / total[name][0]:10.2f}{total[name][0]:10.1f}{total[name][1]:10.1f}{st_rate}")
    ratio = statistics.median(round_ratios)
    steady_s = (f"median {statistics.median(step_ratios):.2f}, min {min(step_ratios):.2f}, "
                f"max {max(step_ratios):.2f}, n={len(step_ratios)}" if step_ratios
                else "n/a (needs --steps >= 3)")
    log(f"TRAINING ratio irflow/ST: {ratio:.2f}x (median of {len(round_ratios)} round(s); round ratios "
        + " ".join(f"{x:.2f}" for x in round_ratios)
        + f"; steady-state per-step ratios: {steady_s}; cpu-time {total['st'][1] / total['irflow'][1]:.2f}x)")
    ok = ratio >= args.min_ratio
    log(f"check (ratio >= {args.min_ratio}): {'PASS' if ok else 'FAIL'}")
    log(f"load average: {load0:.1f} at start, {cpu_load():.1f} at end (threads {args.threads}); "
        f"total {time.perf_counter() - t_start:.0f} s")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
