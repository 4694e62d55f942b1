"""The ``irflow`` command: one subcommand per pipeline step, thin wrappers over the step modules.

Every step command takes ``--store`` (the artifact store root) and writes exactly one directory
``<store>/<step>/<key>/``, whose key it computes from its parameters and its inputs' keys. Under
Snakemake, ``--out`` passes the directory the workflow expects, and a disagreement is an error
rather than a silently different artifact. A step whose directory is already complete does no work.

Only click and the standard library are imported here; each command imports what it needs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from .errors import IrflowError

# OpenMP threads that spin while they wait steal the cores from each other and from neighbouring
# jobs (a Snakemake run, a shared node): measured on 2 busy cores, a bi-encoder training step took
# 14-23 s spinning and 7-9 s passive (bench/README.md). Set before torch is imported; a user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_STORE = "results/store"
PRECISIONS = click.Choice(["auto", "fp32", "bf16", "fp16"])


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock", "bm25s", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def handles_errors(fn):
    """Turn an :class:`IrflowError` into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except IrflowError as e:
            name = click.get_current_context().info_name
            click.echo(f"irflow {name}: error: {e}", err=True)
            sys.exit(2)

    return wrapper


def store_options(fn):
    fn = click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=None,
        help="The artifact directory the caller expects (the workflow passes it); "
        "the command fails if its parameters give another key.",
    )(fn)
    fn = click.option(
        "--store",
        type=click.Path(path_type=Path),
        default=lambda: os.environ.get("IRFLOW_STORE", DEFAULT_STORE),
        show_default=DEFAULT_STORE + " or $IRFLOW_STORE",
        help="Root of the content-addressed artifact store.",
    )(fn)
    return fn


def device_options(fn):
    fn = click.option(
        "--precision",
        type=PRECISIONS,
        default="auto",
        show_default=True,
        help="Autocast precision. auto = bf16 where the device has fast bf16 (recent GPUs, CPUs with "
        "AVX512-BF16/AMX), else fp32.",
    )(fn)
    fn = click.option(
        "--device",
        default="auto",
        show_default=True,
        help="auto (lease a free GPU, else CPU), cpu, cuda or cuda:N.",
    )(fn)
    fn = click.option(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's own choice)."
    )(fn)
    return fn


def _finish(art, stats: dict) -> None:
    art.stats.update(stats)


def _done(art) -> None:
    click.echo(str(art.path))


def _size(value: str, option: str) -> float | int:
    """A split size as given: "0.5" is a fraction, "40" a count."""
    try:
        return int(value) if value.strip().isdigit() else float(value)
    except ValueError:
        raise IrflowError(f"{option} must be a fraction or a count, got {value!r}") from None


def _lease(device: str, precision: str, threads: int | None):
    from .devices import lease_device, resolve_dtype

    if threads:
        import torch

        torch.set_num_threads(threads)
    lease = lease_device(device)
    return lease, resolve_dtype(lease.device, precision)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="irflow")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """irflow: train and evaluate neural retrieval pipelines as a reproducible DAG.

    Each command is one step of the pipeline and writes one content-addressed directory of the
    store. Snakemake (see the Snakefile) chains them; every command also runs by hand.
    """
    _setup_logging(verbose)


# ------------------------------------------------------------------------------------------ prepare


@cli.command()
@click.option("--dataset", required=True, help="irds:<id>, synthetic:<name>, or a JSONL/TSV file.")
@click.option("--kind", type=click.Choice(["docs", "queries"]), default="docs", show_default=True)
@click.option("--tokenizer", default=None, help="Model whose tokenizer to apply (HF id or directory). "
              "Without it only texts are stored (what BM25 needs).")
@click.option("--max-length", type=int, default=None, help="Truncate token sequences to this length.")
@click.option("--split", type=click.Choice(["train", "valid", "test"]), default=None,
              help="Keep only this part of a deterministic query split (queries only).")
@click.option("--split-seed", type=int, default=42, show_default=True)
@click.option("--test-size", default="0.5", show_default=True, help="Test queries: a fraction (0.5) or a count (40).")
@click.option("--valid-size", default="0", show_default=True, help="Validation queries: a fraction or a count.")
@store_options
@handles_errors
def prepare(dataset, kind, tokenizer, max_length, split, split_seed, test_size, valid_size, store, out):
    """Read a corpus or query set once into memory-mapped Arrow (ids, texts, token ids)."""
    from .prepare import PrepareParams, prepare as run
    from .store import Artifact

    sizes = (_size(test_size, "--test-size"), _size(valid_size, "--valid-size"))
    p = PrepareParams(dataset, kind, tokenizer, max_length, (split, split_seed, *sizes) if split else None)
    art = Artifact(store, "prepare", p.key_params(), expect=out)
    if not art.complete:
        with art:
            _finish(art, run(p, art.tmp))
    _done(art)


# ------------------------------------------------------------------------------------------- encode


@cli.command()
@click.option("--prepared", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A prepare artifact with token ids.")
@click.option("--model", required=True, help="Bi-encoder: HF id, local directory, or all-MiniLM-L6-v2 (packaged).")
@click.option("--pooling", type=click.Choice(["mean", "cls"]), default="mean", show_default=True)
@click.option("--normalize/--no-normalize", default=True, show_default=True,
              help="L2-normalise vectors (cosine similarity); --no-normalize gives raw dot product.")
@click.option("--shard", type=int, default=0, show_default=True, help="Which shard, 0-based.")
@click.option("--num-shards", type=int, default=1, show_default=True, help="Contiguous shards of the corpus.")
@click.option("--max-tokens", type=int, default=None,
              help="Token budget of one padded batch (speed/memory only; not part of the key). "
              "Default: 4096 on CPU, 16384 on GPU.")
@device_options
@store_options
@handles_errors
def encode(prepared, model, pooling, normalize, shard, num_shards, max_tokens, device, precision, threads, store, out):
    """Encode one shard of a prepared corpus into float16 emb.npy + ids.parquet."""
    from .encode import EncodeParams, encode_shard
    from .store import Artifact

    if num_shards < 1:
        raise IrflowError(f"--num-shards must be at least 1, got {num_shards}")
    if not 0 <= shard < num_shards:
        raise IrflowError(f"--shard must be in [0, {num_shards}) (--num-shards {num_shards}), got {shard}")
    from .store import is_complete

    trained = is_complete(model)  # a train artifact enters as an input, so its key chains in
    p = EncodeParams(model, pooling, normalize, precision, shard, num_shards, model_input=trained)
    inputs = {"prepared": prepared, **({"model": Path(model)} if trained else {})}
    art = Artifact(store, "encode", p.key_params(), inputs, expect=out)
    if not art.complete:
        lease, dtype = _lease(device, precision, threads)
        with art:
            art.device = lease.device
            art.stats["autocast"] = str(dtype) if dtype is not None else "fp32"
            _finish(art, encode_shard(p, prepared, art.tmp, device=lease.device, autocast_dtype=dtype,
                                      max_tokens=max_tokens))
    _done(art)


# -------------------------------------------------------------------------------------------- index


@cli.command()
@click.option("--shard", "shards", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Encode artifacts to merge into a faiss index (repeat, in shard order).")
@click.option("--factory", default="Flat", show_default=True, help="faiss index_factory string (inner product).")
@click.option("--train-size", type=int, default=100_000, show_default=True,
              help="Vectors sampled to train IVF/PQ indexes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the training sample.")
@click.option("--bm25", "texts", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Build a BM25 index over this prepare artifact instead.")
@click.option("--k1", type=float, default=0.9, show_default=True)
@click.option("--b", type=float, default=0.4, show_default=True)
@click.option("--method", default="lucene", show_default=True, help="bm25s variant (lucene, robertson, atire, bm25l, bm25+).")
@click.option("--stemmer", default="english", show_default=True, help="PyStemmer language; 'none' disables.")
@click.option("--stopwords", default="en", show_default=True, help="bm25s stop word list; 'none' disables.")
@store_options
@handles_errors
def index(shards, factory, train_size, seed, texts, k1, b, method, stemmer, stopwords, store, out):
    """Merge encoded shards into a faiss index, or build a BM25 index over texts."""
    from .store import Artifact

    if texts is not None and shards:
        raise IrflowError("give either --shard (dense) or --bm25 (sparse), not both")
    if texts is not None:
        from .index.bm25 import BM25Params, build_from_prepared

        p = BM25Params(k1, b, method, None if stemmer == "none" else stemmer, None if stopwords == "none" else stopwords)
        art = Artifact(store, "index", p.key_params(), {"texts": texts}, expect=out)
        if not art.complete:
            with art:
                _finish(art, build_from_prepared(p, texts, art.tmp))
    elif shards:
        from .index.dense import FaissParams, build

        p = FaissParams(factory, train_size, seed)
        art = Artifact(store, "index", p.key_params(), {f"shard{i}": s for i, s in enumerate(shards)}, expect=out)
        if not art.complete:
            with art:
                art.seed = seed
                _finish(art, build(p, list(shards), art.tmp))
    else:
        raise IrflowError("nothing to index: give --shard (dense) or --bm25 (sparse)")
    _done(art)


# ------------------------------------------------------------------------------------------- search


@cli.command()
@click.option("--index", "index_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A prepare artifact of kind queries.")
@click.option("--k", type=int, default=1000, show_default=True, help="Results per query.")
@click.option("--query-max-length", type=int, default=64, show_default=True)
@click.option("--nprobe", type=int, default=None, help="IVF cells to visit (IVF indexes only).")
@device_options
@store_options
@handles_errors
def search(index_dir, queries, k, query_max_length, nprobe, device, precision, threads, store, out):
    """Search an index with a query set into a TREC run (strictly decreasing scores)."""
    from .index import read_info
    from .search import SearchParams, search as run
    from .store import Artifact

    p = SearchParams(k, query_max_length, precision, nprobe)
    kind = read_info(index_dir)["type"]
    art = Artifact(store, "search", p.key_params(kind), {"index": index_dir, "queries": queries}, expect=out)
    if not art.complete:
        lease, dtype = _lease(device, precision, threads) if kind != "bm25" else (None, None)
        with art:
            art.device = lease.device if lease else "cpu"
            _finish(art, run(p, index_dir, queries, art.tmp, device=art.device, autocast_dtype=dtype))
    _done(art)


# --------------------------------------------------------------------------------------------- fuse


@cli.command()
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Search/fuse/rerank artifacts to combine (repeat).")
@click.option("--method", type=click.Choice(["rrf", "combsum"]), default="rrf", show_default=True)
@click.option("--rrf-k", type=int, default=60, show_default=True, help="RRF's rank constant.")
@click.option("--norm", type=click.Choice(["minmax", "zscore", "none"]), default="minmax", show_default=True,
              help="Per-query score normalisation for combsum.")
@click.option("--k", type=int, default=1000, show_default=True, help="Results kept per query.")
@store_options
@handles_errors
def fuse(runs, method, rrf_k, norm, k, store, out):
    """Fuse runs: reciprocal rank fusion or normalised CombSUM."""
    from .fuse import fuse_runs, fuse_params
    from .store import Artifact

    params = fuse_params(method, rrf_k, norm, k)
    art = Artifact(store, "fuse", params, {f"run{i}": r for i, r in enumerate(runs)}, expect=out)
    if not art.complete:
        with art:
            _finish(art, fuse_runs(params, list(runs), art.tmp))
    _done(art)


# ----------------------------------------------------------------------------------------- evaluate


@cli.command()
@click.option("--run", "runs", multiple=True, required=True, metavar="NAME=DIR",
              help="A system's name and its run artifact (repeat; the first is the default baseline).")
@click.option("--qrels", required=True, help="irds:<id>, synthetic:<name>, or a TREC qrels file.")
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The prepare artifact of the evaluated queries (qrels of other queries are dropped).")
@click.option("--measure", "measures", multiple=True,
              help="ir_measures measure (repeat). Default: nDCG@10 RR(rel=2)@10 R(rel=2)@1000 AP(rel=2).")
@click.option("--baseline", default=None, help="System that every other is t-tested against.")
@store_options
@handles_errors
def evaluate(runs, qrels, queries, measures, baseline, store, out):
    """Evaluate runs with ir_measures: means, per-query values, paired t-tests against a baseline."""
    from .evaluate import DEFAULT_MEASURES, evaluate_params, evaluate_step, parse_named_runs
    from .store import Artifact

    named = parse_named_runs(runs)
    measures = list(measures) or list(DEFAULT_MEASURES)
    baseline = baseline or next(iter(named))
    if baseline not in named:
        raise IrflowError(f"--baseline {baseline!r} is not one of the runs ({', '.join(named)})")
    params = evaluate_params(list(named), qrels, measures, baseline)
    inputs = {"queries": queries, **{f"run:{n}": d for n, d in named.items()}}
    art = Artifact(store, "evaluate", params, inputs, expect=out)
    if not art.complete:
        with art:
            _finish(art, evaluate_step(named, qrels, queries, measures, baseline, art.tmp))
    _done(art)


# ------------------------------------------------------------------------------- preprocess / train


@cli.command()
@click.option("--qrels", required=True, help="irds:<id>, synthetic:<name>, or a TREC qrels file.")
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Prepare artifact of ALL the collection's queries (the split is applied here).")
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="First-stage search artifact whose top --depth gives candidate negatives.")
@click.option("--run-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Or a TREC run file (e.g. a ColBERTv2 top-k).")
@click.option("--rankgpt", nargs=2, type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="CANDIDATES PERMUTATIONS", help="RankGPT candidate lists (JSONL) and permutations (JSON).")
@click.option("--pair-scores", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Teacher scores: 'pos_score neg_score qid pos_id neg_id' lines.")
@click.option("--depth", type=int, default=200, show_default=True, help="Candidates kept per query.")
@click.option("--min-grade", type=int, default=1, show_default=True, help="Qrels grade that counts as positive.")
@click.option("--split-seed", type=int, default=42, show_default=True)
@click.option("--test-size", default="0", show_default=True, help="Held-out test queries (fraction or count).")
@click.option("--valid-size", default="0.1", show_default=True, help="Validation queries (fraction or count).")
@store_options
@handles_errors
def preprocess(qrels, queries, run_dir, run_file, rankgpt, pair_scores, depth, min_grade, split_seed, test_size,
               valid_size, store, out):
    """Turn a training source into per-query examples (positives, candidate negatives, teacher)."""
    from .preprocess import PreprocessParams, preprocess as run
    from .search import RUN
    from .store import Artifact

    if run_dir and run_file:
        raise IrflowError("give --run or --run-file, not both")
    p = PreprocessParams(qrels, depth, min_grade, split_seed, _size(test_size, "--test-size"),
                         _size(valid_size, "--valid-size"),
                         tuple(str(x) for x in rankgpt) if rankgpt else None, str(pair_scores) if pair_scores else None)
    params = p.key_params()
    inputs = {"queries": queries, **({"run": run_dir} if run_dir else {})}
    if run_file:
        from .data.sources import identity

        params["run_file"] = identity(str(run_file))
    art = Artifact(store, "preprocess", params, inputs, expect=out)
    if not art.complete:
        with art:
            art.seed = split_seed
            _finish(art, run(p, queries, (run_dir / RUN) if run_dir else run_file, art.tmp))
    _done(art)


@cli.command()
@click.option("--family", type=click.Choice(["cross-encoder", "bi-encoder", "colbert"]), default="cross-encoder",
              show_default=True, help="What to train: a re-ranker, a dense retriever, or a ColBERT teacher.")
@click.option("--model", default=None, help="Initial model (HF id or directory) — or --init.")
@click.option("--init", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Start from the model of a previous train artifact (stage k-1).")
@click.option("--head", type=click.Choice(["cosine", "mean", "seqcls"]), default=None,
              help="Cross-encoder scoring head: scaled cosine of the jointly encoded query and document "
              "segments (default for sentence encoders), a linear head on mean-pooled states, or the "
              "sequence-classification logit (hub cross-encoders).")
@click.option("--separate-layers", type=int, default=None,
              help="Cosine head: lower layers attending within each segment only (default: all but the top two).")
@click.option("--examples", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--docs", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Prepare artifact with the corpus texts.")
@click.option("--teacher", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Score artifact with teacher scores (kl, ranknet, margin-mse, dual; tas-balanced margins).")
@click.option("--objective", type=click.Choice(["lce", "ranknet", "margin-mse", "kl", "infonce", "inbatch", "dual"]),
              default=None, help="Default: lce (cross-encoder), margin-mse (bi-encoder, colbert).")
@click.option("--batch-queries", type=int, default=4, show_default=True, help="Cross-encoder: queries per step.")
@click.option("--group-size", type=int, default=8, show_default=True, help="Cross-encoder: documents per query.")
@click.option("--negatives-depth", type=int, default=100, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--max-length", type=int, default=256, show_default=True, help="Cross-encoder: pair tokens.")
@click.option("--clusters", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Bi-encoder: cluster artifact (samplers tas, tas-balanced).")
@click.option("--colbert", default=None, help="Bi-encoder: ColBERT in-batch teacher (train artifact or directory).")
@click.option("--sampler", type=click.Choice(["random", "tas", "tas-balanced"]), default="random", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Bi-encoder: triples per micro-batch.")
@click.option("--clusters-per-batch", type=int, default=1, show_default=True)
@click.option("--bins", type=int, default=10, show_default=True, help="TAS-Balanced margin bins per query.")
@click.option("--alpha", type=float, default=0.75, show_default=True, help="Weight of the in-batch loss (dual).")
@click.option("--pair-weight", type=float, default=1.0, show_default=True, help="Weight of the pairwise loss (dual).")
@click.option("--inbatch-form", type=click.Choice(["mean", "sum"]), default="mean", show_default=True)
@click.option("--query-max-length", type=int, default=30, show_default=True)
@click.option("--passage-max-length", type=int, default=200, show_default=True)
@click.option("--pooling", type=click.Choice(["mean", "cls"]), default="mean", show_default=True)
@click.option("--normalize/--no-normalize", default=True, show_default=True)
@click.option("--scale", type=float, default=None, help="Bi-encoder score scale in training (default 20 if normalised, else 1).")
@click.option("--validation-depth", type=int, default=None,
              help="Candidates per validation query (default 30 cross-encoder, 100 bi-encoder).")
@click.option("--lr", type=float, default=2e-5, show_default=True)
@click.option("--head-lr", type=float, default=None, help="Learning rate of the head (default: --lr).")
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--warmup-steps", type=int, default=0, show_default=True)
@click.option("--max-steps", type=int, default=1000, show_default=True)
@click.option("--grad-accum", type=int, default=1, show_default=True)
@click.option("--clip-norm", type=float, default=10.0, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--checkpoint-every", type=int, default=100, show_default=True)
@click.option("--validate-every", type=int, default=0, show_default=True, help="0 disables validation.")
@click.option("--patience", type=int, default=5, show_default=True)
@click.option("--stop-after", type=int, default=None, hidden=True,
              help="Exit after this step's checkpoint, as a kill would (resume tests).")
@device_options
@store_options
@handles_errors
def train(family, model, init, head, separate_layers, examples, queries, docs, teacher, objective, batch_queries, group_size,
          negatives_depth, temperature, max_length, clusters, colbert, sampler, batch_size, clusters_per_batch, bins,
          alpha, pair_weight, inbatch_form, query_max_length, passage_max_length, pooling, normalize, scale,
          validation_depth, lr, head_lr, weight_decay, warmup_steps, max_steps, grad_accum, clip_norm, seed,
          checkpoint_every, validate_every, patience, stop_after, device, precision, threads, store, out):
    """Fine-tune a model (one stage); checkpoints, exact resume, early stopping."""
    import shutil

    from .store import Artifact, is_complete
    from .train.loop import OptimConfig

    if bool(model) == bool(init):
        raise IrflowError("give exactly one of --model or --init")
    optim = OptimConfig(lr, head_lr, weight_decay, warmup_steps, max_steps, grad_accum, clip_norm or None,
                        precision, seed, checkpoint_every, validate_every, patience)
    inputs = {"examples": examples, "queries": queries, "docs": docs,
              **({"init": init} if init else {}), **({"teacher": teacher} if teacher else {})}
    if family == "cross-encoder":
        from .train.crossencoder import GroupConfig
        from .train.step import TrainParams, train_cross_encoder

        objective = objective or "lce"
        if objective in ("infonce", "inbatch", "dual"):
            raise IrflowError(f"objective {objective} is for bi-encoders (--family bi-encoder)")
        p = TrainParams(model, head, max_length, GroupConfig(objective, batch_queries, group_size, negatives_depth,
                                                             temperature), optim, validation_depth or 30,
                        separate_layers)

        def work(out_dir, ckpt, key, device, dtype):
            return train_cross_encoder(p, init, examples, queries, docs, teacher, out_dir, ckpt, key=key,
                                       device=device, autocast_dtype=dtype, stop_after=stop_after)
    else:
        from .train.biencoder import DenseConfig
        from .train.step import DenseTrainParams, train_dense

        objective = objective or "margin-mse"
        if objective not in ("margin-mse", "infonce", "inbatch", "dual"):
            raise IrflowError(f"objective {objective} is for cross-encoders")
        if objective in ("inbatch", "dual") and not colbert:
            raise IrflowError(f"objective {objective} needs a ColBERT teacher (--colbert)")
        if sampler != "random" and not clusters:
            raise IrflowError(f"sampler {sampler} needs query clusters (--clusters: an irflow cluster artifact)")
        if (sampler == "tas-balanced" or objective in ("margin-mse", "dual")) and not teacher:
            raise IrflowError(f"{'sampler tas-balanced' if sampler == 'tas-balanced' else 'objective ' + objective} "
                              "needs teacher scores (--teacher: an irflow score artifact)")
        if colbert and objective in ("inbatch", "dual") and is_complete(colbert):
            inputs["colbert"], colbert_key = Path(colbert), {"input": "colbert"}
        else:
            colbert_key = colbert if objective in ("inbatch", "dual") else None
        if clusters and sampler != "random":
            inputs["clusters"] = clusters
        cfg = DenseConfig(objective, sampler, batch_size, clusters_per_batch, bins, alpha, pair_weight, inbatch_form,
                          temperature, negatives_depth, query_max_length, passage_max_length)
        cfg.check()
        p = DenseTrainParams(family, model, pooling, normalize, scale, colbert_key, cfg, optim, validation_depth or 100)

        def work(out_dir, ckpt, key, device, dtype):
            return train_dense(p, init, examples, queries, docs, teacher, inputs.get("clusters"),
                               colbert if colbert_key else None, out_dir, ckpt, key=key, device=device,
                               autocast_dtype=dtype, stop_after=stop_after)
    art = Artifact(store, "train", p.key_params(), inputs, expect=out)
    ckpt = art.path.parent / f".ckpt-{art.key}"
    if not art.complete:
        lease, dtype = _lease(device, precision, threads)
        with art:
            art.seed, art.device = seed, lease.device
            _finish(art, work(art.tmp, ckpt, art.key, lease.device, dtype))
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.with_name(ckpt.name + ".train_log.jsonl").unlink(missing_ok=True)
    _done(art)


@cli.command()
@click.option("--model", "models", multiple=True, required=True,
              help="Teacher cross-encoder (HF id, directory or train artifact); repeat for a mean ensemble.")
@click.option("--examples", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--docs", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--depth", type=int, default=100, show_default=True, help="Candidates scored per query.")
@click.option("--max-length", type=int, default=256, show_default=True)
@device_options
@store_options
@handles_errors
def score(models, examples, queries, docs, depth, max_length, device, precision, threads, store, out):
    """Score training candidate pairs with a teacher (or a mean ensemble) into teacher.parquet."""
    from .rerank import score_teacher

    def work(out_dir, device, dtype):
        return score_teacher(list(models), examples, queries, docs, out_dir, depth=depth, device=device,
                             autocast_dtype=dtype, max_length=max_length)

    _scoring_step("score", models, {"examples": examples, "queries": queries, "docs": docs}, depth, max_length,
                  precision, device, threads, store, out, work)


@cli.command()
@click.option("--model", required=True, help="Cross-encoder: HF id, directory or train artifact.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--docs", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--depth", type=int, default=100, show_default=True, help="Re-rank the top DEPTH of each query.")
@click.option("--max-length", type=int, default=256, show_default=True)
@device_options
@store_options
@handles_errors
def rerank(model, run_dir, queries, docs, depth, max_length, device, precision, threads, store, out):
    """Re-rank the top of a run with a cross-encoder into a new run."""
    from .rerank import rerank as run

    def work(out_dir, device, dtype):
        return run(model, run_dir, queries, docs, out_dir, depth=depth, device=device, autocast_dtype=dtype,
                   max_length=max_length)

    _scoring_step("rerank", [model], {"run": run_dir, "queries": queries, "docs": docs}, depth, max_length,
                  precision, device, threads, store, out, work)


def _scoring_step(step, models, inputs, depth, max_length, precision, device, threads, store, out, work) -> None:
    """The shared body of ``score`` and ``rerank``: key, lease a device, run ``work`` once, publish."""
    from .rerank import scorer_params
    from .store import Artifact, is_complete

    params, model_inputs = scorer_params(models, is_complete, depth=depth, max_length=max_length,
                                         precision=precision)
    art = Artifact(store, step, params, {**{n: Path(m) for n, m in model_inputs.items()}, **inputs}, expect=out)
    if not art.complete:
        lease, dtype = _lease(device, precision, threads)
        with art:
            art.device = lease.device
            _finish(art, work(art.tmp, lease.device, dtype))
    _done(art)


# ----------------------------------------------------------------------------------- info / verify


@cli.command()
@click.option("--examples", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Preprocess artifact; only its training queries (part == train) are clustered.")
@click.option("--queries", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Prepare artifact of the queries (texts; its token ids are used if made by --model "
              "at --max-length).")
@click.option("--model", required=True, help="Baseline bi-encoder: HF id, local directory, or all-MiniLM-L6-v2.")
@click.option("--pooling", type=click.Choice(["mean", "cls"]), default="mean", show_default=True)
@click.option("--normalize/--no-normalize", default=True, show_default=True, help="L2-normalise query vectors.")
@click.option("--max-length", type=int, default=30, show_default=True, help="Query tokens.")
@click.option("--k", type=int, default=2000, show_default=True,
              help="Clusters (lowered, with a warning, to the number of training queries).")
@click.option("--niter", type=int, default=10, show_default=True, help="k-means iterations.")
@click.option("--seed", type=int, default=1234, show_default=True, help="faiss k-means seed.")
@click.option("--spherical/--no-spherical", default=True, show_default=True,
              help="Normalised centroids and inner-product assignment (for inner-product models), or L2.")
@device_options
@store_options
@handles_errors
def cluster(examples, queries, model, pooling, normalize, max_length, k, niter, seed, spherical, device, precision,
            threads, store, out):
    """Cluster the training queries with faiss k-means over a dense encoder (topic-aware sampling)."""
    from .cluster import ClusterParams, cluster_queries
    from .store import Artifact

    p = ClusterParams(model, pooling, normalize, max_length, k, niter, seed, spherical, precision)
    p.check()
    art = Artifact(store, "cluster", p.key_params(), {"examples": examples, "queries": queries}, expect=out)
    if not art.complete:
        lease, dtype = _lease(device, precision, threads)
        with art:
            art.seed, art.device = seed, lease.device
            art.stats["autocast"] = str(dtype) if dtype is not None else "fp32"
            _finish(art, cluster_queries(p, examples, queries, art.tmp, device=lease.device, autocast_dtype=dtype))
    _done(art)


@cli.command()
@click.argument("artifact", type=click.Path(path_type=Path, exists=True, file_okay=False))
@handles_errors
def info(artifact):
    """Print an artifact's manifest: what made it, from what, with which versions."""
    from .store import read_manifest

    click.echo(json.dumps(read_manifest(artifact), indent=2, sort_keys=True))


@cli.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@handles_errors
def verify(artifacts):
    """Re-hash artifacts' files against their manifests; exit 1 if any differ."""
    from .store import verify as check

    bad = 0
    for a in artifacts:
        problems = check(a)
        for p in problems:
            click.echo(f"{a}: {p}")
        if not problems:
            click.echo(f"{a}: ok")
        bad += bool(problems)
    if bad:
        sys.exit(1)


def main() -> None:
    cli(prog_name="irflow")


if __name__ == "__main__":
    main()
