"""What each job of the plan needs: threads, memory, run time and GPUs, estimated from data sizes.

Snakemake schedules by these numbers (``--resources mem_mb=... gpu=...`` locally, sbatch requests
on a cluster), so they come from the plan rather than the profile: a profile holds platform
settings only. Sizes come from the prepared artifact when it exists (rows counted while
streaming), else from ir_datasets' count hints (metadata, no download), the synthetic generator's
sizes, or a file's size. Estimates are deliberately generous upper bounds for a GPU node; a job
that needs more fails with an out-of-memory message naming the rule, and the numbers here are
the one place to correct.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

MB = 1 << 20
#: hidden size assumed for a model whose config cannot be read at plan time (BERT-base)
DEFAULT_DIM = 768
#: fallback row counts when nothing better is known
DEFAULT_DOCS, DEFAULT_QUERIES = 100_000, 1_000


@dataclass(frozen=True)
class Resources:
    threads: int
    mem_mb: int
    runtime: int  # minutes
    gpu: int


def estimate(plan, node) -> Resources:
    """The resources of one node of ``plan`` (an :class:`irflow.plan.Plan`)."""
    fn = _ESTIMATES.get(node.step)
    threads, mem_mb, minutes = fn(plan, node)
    n = launch_processes(node)  # a data-parallel stage: one job, n processes, n devices
    return Resources(threads * n, int(math.ceil(mem_mb * n)), int(math.ceil(minutes)), int(node.gpu) * n)


def launch_processes(node) -> int:
    return int(getattr(node.params, "devices", 1) or 1)


def launcher(node) -> str:
    """How the rule starts the command: ``irflow``, or ``torchrun`` for a stage on several devices."""
    n = launch_processes(node)
    return "irflow" if n == 1 else f"torchrun --standalone --nproc-per-node {n} -m irflow.cli"


# ------------------------------------------------------------------------------------ sizes


def rows(plan, prepare_node) -> int:
    """Rows of a prepare node: the artifact's count if it exists, else a hint for its dataset."""
    m = Path(plan.path(prepare_node)) / "manifest.json"
    if m.is_file():
        try:
            return int(json.loads(m.read_text())["stats"]["rows"])
        except (ValueError, KeyError, OSError):
            pass
    p = prepare_node.params
    n = count_hint(p.dataset, p.kind)
    if p.split == "test" and isinstance(p.test_size, float):
        n = int(n * p.test_size) + 1
    return n


@functools.lru_cache(maxsize=None)
def count_hint(spec: str, kind: str) -> int:
    """Documents or queries of a dataset spec, without reading the dataset."""
    default = DEFAULT_DOCS if kind == "docs" else DEFAULT_QUERIES
    if spec.startswith("irds:"):
        try:
            import ir_datasets

            ds = ir_datasets.load(spec[5:])
            n = ds.docs_count() if kind == "docs" else ds.queries_count()
            return int(n) if n else default
        except Exception:  # an unknown id fails in prepare with a clear message, not while scheduling
            return default
    if spec.startswith("synthetic:"):
        from .data import synthetic

        sizes = getattr(synthetic, "SIZES", {}).get(spec[10:])
        return int(sizes[kind]) if sizes and kind in sizes else default
    path = Path(spec.removeprefix("file:"))
    if path.is_file():
        return max(1, path.stat().st_size // (300 if kind == "docs" else 60))
    return default


def _input(node, name: str):
    return node.inputs.get(name)


def _docs(plan, node) -> int:
    """Corpus rows behind an index/encode/search node (through its inputs)."""
    while node.step != "prepare":
        nxt = next((i for n, i in node.inputs.items() if n in ("prepared", "texts", "index0", "shard0", "docs")), None)
        if nxt is None:
            return DEFAULT_DOCS
        node = nxt
    return rows(plan, node)


def _dim(model: str | None) -> int:
    return _model_config(model)["hidden_size"]


def _training_queries(plan, node) -> int:
    """Queries of the training examples a node reads (preprocess -> its queries)."""
    ex = _input(node, "examples")
    q = _input(ex, "queries") if ex is not None else None
    return rows(plan, q) if q is not None else DEFAULT_QUERIES


# -------------------------------------------------------------------------------- per step


def _prepare(plan, node):
    n = rows(plan, node)
    tokenised = node.params.tokenizer is not None
    return 1, 1024 + (512 if tokenised else 0), 5 + n / (2_000 if tokenised else 20_000) / 60


def _encode(plan, node):
    p = node.params
    n = _docs(plan, node) / p.num_shards
    # vectors are written as they come; memory is the model, one batch and the shard's ids
    return 4, 4096 + n * 64 / MB, 10 + n / 200 / 60


def _index_rows(plan, node) -> int:
    """Rows of an index: the corpus (BM25) or the encode shards it merges."""
    shards = [i for n, i in node.inputs.items() if n.startswith("shard")]
    if not shards:
        return _docs(plan, node)
    return sum(_docs(plan, s) // s.params.num_shards + 1 for s in shards)


def _index(plan, node):
    n = _index_rows(plan, node)
    if node.params.key_params().get("type") == "bm25":
        return 4, 2048 + n * 3 * 1024 / MB, 10 + n / 5_000 / 60
    dim = _dim(getattr(_input(node, "shard0").params, "model", None)) if _input(node, "shard0") else DEFAULT_DIM
    return 4, 2048 + n * dim * 4 * 1.25 / MB, 10 + n / 100_000


def _search(plan, node):
    """One index in memory at a time: the largest of the (per-shard) indexes, plus the queries."""
    indexes = [i for n, i in node.inputs.items() if n.startswith("index")]
    q = rows(plan, _input(node, "queries"))
    largest = max(_index_rows(plan, i) for i in indexes)
    total = sum(_index_rows(plan, i) for i in indexes)
    if indexes[0].params.key_params().get("type") == "bm25":
        return 4, 2048 + largest * 1024 / MB, 5 + q / 50 / 60
    shard = _input(indexes[0], "shard0")
    dim = _dim(getattr(shard.params, "model", None)) if shard else DEFAULT_DIM
    return 4, 4096 + largest * dim * 4 / MB + q * dim * 4 / MB, 10 + q * total / 5e9


def _light(plan, node):
    return 1, 2048, 10


def _preprocess(plan, node):
    q = rows(plan, _input(node, "queries"))
    return 1, 2048 + q * node.params.depth * 200 / MB, 10 + q / 5_000


def _cluster(plan, node):
    q = _training_queries(plan, node)
    return 4, 4096 + q * DEFAULT_DIM * 4 / MB, 10 + q / 500 / 60


def _score(plan, node):
    pairs = _training_queries(plan, node) * node.params.depth * len(node.params.model)
    return 4, 4096, 10 + pairs / 200 / 60


#: BERT-base, assumed for a model whose config cannot be read at plan time (a hub id not in the
#: local cache, or a model that an upstream stage has yet to train)
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "vocab_size": 30_522, "intermediate_size": 3072}


@functools.lru_cache(maxsize=None)
def _model_config(model: str | None) -> dict:
    """The sizes in the model's config.json (a directory, the packaged MiniLM, or a hub id at its
    pinned revision in the local Hugging Face cache), or BERT-base's. Never downloads."""
    if model:
        from .errors import IrflowError
        from .models.resolve import _local_dir, split_revision

        try:
            local = _local_dir(model)
        except IrflowError:  # a missing model fails in its step with a clear message, not while scheduling
            local = None
        if local is not None:
            for cfg in (local / "config.json", local / "model" / "config.json"):
                try:
                    return _sizes(json.loads(cfg.read_text()))
                except (OSError, ValueError, TypeError):
                    continue
        try:
            from huggingface_hub import try_to_load_from_cache

            repo, rev = split_revision(model)
            cached = try_to_load_from_cache(repo, "config.json", revision=rev)
            if isinstance(cached, str):
                return _sizes(json.loads(Path(cached).read_text()))
        except Exception:  # noqa: BLE001 - an unusable id fails in its step, not while scheduling
            pass
    return dict(BERT_BASE)


#: other names of BERT's config keys (DistilBERT's)
_ALIASES = {"hidden_size": "dim", "num_hidden_layers": "n_layers", "intermediate_size": "hidden_dim"}


def _sizes(cfg: dict) -> dict:
    return {k: int(cfg.get(k, cfg.get(_ALIASES.get(k, k), v))) for k, v in BERT_BASE.items()}


def _transformer_mb(cfg: dict, tokens: int, train: bool) -> float:
    """Weights (+ gradients and AdamW's two moments when training) and activations of ``tokens``."""
    h, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    params = cfg["vocab_size"] * h + layers * (4 * h * h + 2 * h * cfg["intermediate_size"])
    weights = params * (16 if train else 4)
    # per token and layer: ~12 hidden-size tensors kept for the backward pass (fp32), attention
    # scores for a 512-token window; without a graph only a layer's worth is alive at a time
    activations = tokens * (layers if train else 1) * (12 * h + cfg["intermediate_size"]) * 4 * 2
    return (weights + activations) / MB


def _train(plan, node):
    """Generous: the student's training state and one step's activations, a ColBERT teacher's
    weights, and 2 GB for the interpreter, the libraries and the training data's memory maps."""
    p = node.params
    if getattr(p, "batch_size", None):  # bi-encoder / ColBERT: queries, positives and negatives
        per_step, tokens = p.batch_size, p.batch_size * (p.query_max_length + 2 * p.passage_max_length)
        if getattr(p, "cache_chunk", None):
            tokens = min(tokens, p.cache_chunk * (p.query_max_length + 2 * p.passage_max_length))
    else:
        per_step = p.batch_queries * p.group_size
        tokens = per_step * p.max_length
    tokens //= max(1, getattr(p, "devices", 1) or 1)  # a process holds its share of the batch
    mb = 2048 + 1.5 * _transformer_mb(_model_config(_base_model(plan, node, "model")), tokens, True)
    if getattr(p, "colbert", None):
        mb += _transformer_mb(_model_config(_base_model(plan, node, "colbert")), tokens, False)
    return 4, mb, 30 + p.max_steps * p.grad_accum * per_step / 100 / 60


def _base_model(plan, node, field: str) -> str | None:
    """The directory or hub id a model option of ``node`` starts from: through the train artifacts
    it names (``ref`` options, inputs ``model<i>``) and ``--init`` chains (stage k from stage k-1)."""
    for _ in range(64):  # a chain of stages; the plan has no cycles
        value = getattr(node.params, field, None)
        if value is None and _input(node, "init") is not None:
            node, field = _input(node, "init"), "model"
            continue
        ref = next((i for n, i in node.inputs.items() if n.startswith("model") and value == plan.path(i)), None)
        if ref is None:
            return value if isinstance(value, str) else None
        node, field = ref, "model"
    return None


def _rerank(plan, node):
    q = rows(plan, _input(node, "queries"))
    return 4, 4096, 10 + q * node.params.depth / 100 / 60


_ESTIMATES = {"prepare": _prepare, "encode": _encode, "index": _index, "search": _search, "fuse": _light,
              "evaluate": _light, "preprocess": _preprocess, "cluster": _cluster, "score": _score,
              "train": _train, "rerank": _rerank}
