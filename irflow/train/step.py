"""``irflow train <family>``: examples + texts (+ teacher scores, clusters) into a saved model, one stage.

Three families share the loop of :mod:`irflow.train.loop`: cross-encoders (re-rankers),
bi-encoders (the dense retriever) and ColBERT (the bi-encoder's in-batch teacher).

The checkpoint directory lives beside the artifact (``<store>/train/.ckpt-<key>``), outside the
temporary directory that a failed run discards, so a killed job resumes where it stopped; it is
removed once the model is published.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..devices import weights_dtype
from ..errors import IrflowError
from .params import BiEncoderTrainParams, ColbertTrainParams, CrossEncoderTrainParams

log = logging.getLogger("irflow")


def _validation(examples, queries, docs, depth: int, device: str, autocast_dtype):
    """nDCG@10 of re-ranking each validation query's top ``depth`` candidates plus its positives."""
    from ..models.crossencoder import score_pairs
    from .validation import candidates, ndcg10

    cands, qrels = candidates(examples, depth)
    pairs = [(q, d) for q, ds in cands.items() for d in ds]

    def validate(model) -> float:
        s = score_pairs(model, [queries[q] for q, _ in pairs], [docs[d] for _, d in pairs], device=device,
                        autocast_dtype=autocast_dtype)
        return ndcg10(qrels, [(q, d, x) for (q, d), x in zip(pairs, s)])

    return validate


def train_cross_encoder(p: CrossEncoderTrainParams, init: Path | None, examples_dir: Path, queries_dir: Path, docs_dir: Path,
                        teacher_dir: Path | None, out: Path | None, ckpt: Path, *, key: str, device: str,
                        autocast_dtype, stop_after: int | None = None, dist=None) -> dict:
    """``dist``: this process's rank in a data-parallel launch; only rank 0 writes ``out`` (None elsewhere)."""
    from ..models.crossencoder import CrossEncoder
    from ..prepare import load_texts
    from ..preprocess import load_examples
    from ..rerank import DocTexts, model_path
    from .crossencoder import CrossEncoderTask
    from .dist import SINGLE, check_devices
    from .loop import seed_everything, train

    dist = dist or SINGLE
    check_devices(p.devices, dist, rows=p.batch_queries, what="batch_queries")
    seed_everything(p.optim.seed)  # the fresh head's initialisation is part of the run
    model = CrossEncoder(model_path(str(init)) if init else p.model, head=p.head, max_length=p.max_length,
                         separate_layers=p.separate_layers, document_cls=p.document_cls)
    model.to(device, weights_dtype(autocast_dtype))
    prepare_model(model, p.attention_dropout)
    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    train_examples = load_examples(examples_dir, "train").with_teacher(load_teacher(teacher_dir))
    valid = load_examples(examples_dir, "valid")
    docs = DocTexts(docs_dir, ids=[train_examples.doc_ids(), valid.doc_ids()])
    validation = (_validation(valid, queries, docs, p.validation_depth, device, autocast_dtype)
                  if valid and p.optim.validate_every and dist.main else None)
    task = CrossEncoderTask(model, train_examples, queries, docs, p.group, seed=p.optim.seed, device=device,
                            validation=validation, dist=dist)
    if dist.main:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    log_path = ckpt.with_name(ckpt.name + ".train_log.jsonl")  # beside: checkpoints replace the directory
    stats = train(task, p.optim, ckpt=ckpt, log_path=log_path, device=device, autocast_dtype=autocast_dtype,
                  stop_after=stop_after, dist=dist)
    if not dist.main:
        return stats
    _save_fp32(model, out / "model", {"artifact_key": key, "objective": p.group.objective})
    shutil.copy2(log_path, out / "train_log.jsonl")
    stats["train_queries"] = len(task.examples)
    return stats


def prepare_model(model, attention_dropout: float | None) -> None:
    """What every training family does to its student before the loop: the stage's attention
    dropout (when set), the float32 attention kernel for CPU training (:mod:`irflow.models.attention`)
    and dropout masks drawn with ``torch.rand`` (:mod:`irflow.models.dropout`). The last two change
    speed, not the function the model computes."""
    from ..models.attention import use_training_attention
    from ..models.dropout import use_fast_dropout

    if attention_dropout is not None:
        from ..models.resolve import set_attention_dropout

        n = set_attention_dropout(model, attention_dropout)
        log.info("attention dropout %g in %d attention modules", attention_dropout, n)
    use_training_attention(model)
    use_fast_dropout(model)


def _save_fp32(model, out: Path, card: dict) -> None:
    """Publish float32 weights whatever the training ran in (fp64 trains float64 weights): every
    later step loads a trained model as it loads a hub checkpoint."""
    import torch

    model.to(torch.float32)
    model.save(out, card)


def load_teacher(teacher_dir: Path | None):
    """qid -> {doc id: teacher score} of a ``score`` artifact, over its Arrow columns (None: no teacher)."""
    from .examples import TeacherScores

    return TeacherScores.read(teacher_dir) if teacher_dir is not None else None


def _read_clusters(clusters_dir: Path | None) -> dict[str, int] | None:
    if clusters_dir is None:
        return None
    import pyarrow.parquet as pq

    t = pq.read_table(Path(clusters_dir) / "clusters.parquet").to_pydict()
    return dict(zip(t["qid"], t["cluster"]))


def train_dense(p: BiEncoderTrainParams | ColbertTrainParams, init: Path | None, examples_dir: Path, queries_dir: Path, docs_dir: Path,
                teacher_dir: Path | None, clusters_dir: Path | None, colbert: str | None, out: Path, ckpt: Path, *,
                key: str, device: str, autocast_dtype, stop_after: int | None = None, dist=None) -> dict:
    """``dist``: this process's rank in a data-parallel launch; only rank 0 writes ``out`` (None elsewhere)."""
    from ..models.colbert import ColBERT
    from ..models.dense import DenseModel
    from ..prepare import load_texts
    from ..preprocess import load_examples
    from ..rerank import DocTexts, model_path
    from .biencoder import TEACHER_OBJECTIVES, BiEncoderTask, dense_validation, teacher_pairs
    from .dist import SINGLE, check_devices
    from .loop import seed_everything, train
    from .samplers import PairPool, make_sampler

    c = p.dense
    c.check()
    dist = dist or SINGLE
    check_devices(p.devices, dist, rows=c.batch_size, what="batch_size")
    if c.objective in TEACHER_OBJECTIVES and teacher_dir is None and c.objective != "inbatch":
        raise IrflowError(f"objective {c.objective} needs teacher scores (--teacher)")
    if c.sampler == "tas-balanced" and teacher_dir is None:
        raise IrflowError("sampler tas-balanced draws by teacher margin: it needs --teacher")
    if c.sampler != "random" and clusters_dir is None:
        raise IrflowError(f"sampler {c.sampler} needs query clusters (--clusters)")
    seed_everything(p.optim.seed)  # a fresh ColBERT projection's initialisation is part of the run
    source = model_path(str(init)) if init else p.model
    if p.family == "colbert":
        if c.objective != "margin-mse":
            raise IrflowError("a ColBERT teacher trains with objective margin-mse")
        model = ColBERT.from_pretrained(source)
    else:
        model = DenseModel(source, p.pooling, p.normalize, p.scale)
    model.to(device, weights_dtype(autocast_dtype)).train()
    prepare_model(model, p.attention_dropout)
    teacher_model = (ColBERT.from_pretrained(model_path(colbert)).to(device, weights_dtype(autocast_dtype))
                     if colbert else None)
    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    examples = load_examples(examples_dir, "train")
    teacher = load_teacher(teacher_dir)
    pool = PairPool.from_arrays(*teacher_pairs(examples, teacher, c.negatives_depth))
    sampler = make_sampler(c.sampler, pool, _read_clusters(clusters_dir), c.batch_size, c.clusters_per_batch,
                           c.bins)
    valid = load_examples(examples_dir, "valid")
    docs = DocTexts(docs_dir, ids=[pool.pos_ids, pool.neg_ids, valid.doc_ids()])
    validation = (dense_validation(valid, queries, docs, p.validation_depth, c, device, autocast_dtype)
                  if valid and p.optim.validate_every and dist.main else None)
    task = BiEncoderTask(model, pool, sampler, queries, docs, c, seed=p.optim.seed, device=device,
                         colbert=teacher_model, validation=validation, dist=dist)
    if dist.main:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    log_path = ckpt.with_name(ckpt.name + ".train_log.jsonl")
    try:
        stats = train(task, p.optim, ckpt=ckpt, log_path=log_path, device=device, autocast_dtype=autocast_dtype,
                      stop_after=stop_after, dist=dist)
    finally:
        task.close()
    if not dist.main:
        return stats
    _save_fp32(model, out / "model", {"artifact_key": key, "objective": c.objective, "sampler": c.sampler})
    shutil.copy2(log_path, out / "train_log.jsonl")
    summary = sampler.summary()
    if hasattr(sampler, "bin_draws"):  # TAS-Balanced: what it drew from each margin bin (the report plots it)
        summary["sampled_bins"] = sampler.bin_draws(p.optim.seed, int(stats["steps"]), p.optim.grad_accum)
    stats.update(train_queries=pool.n_queries, train_pairs=len(pool), sampler=summary)
    return stats
