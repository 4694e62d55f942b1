"""``irflow score``: teacher scores for every candidate pair of the training examples.

From one cross-encoder or the mean of several (each in turn, so only one is in memory), or from a
bi-encoder (``bi-encoder:<model>``, 20 × cosine) where no stronger teacher exists offline; written
to ``teacher.parquet``, which ``irflow train`` distils from (KL, Margin-MSE, TAS-Balanced margins).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from .params import Input, WithPrecision
from .progress import progress as progress_bar
from .rerank import DocTexts, model_path

TEACHER = "teacher.parquet"
#: ``--model bi-encoder:<id>`` scores with a bi-encoder (mean pooling, cosine) instead of a cross-encoder
BI_ENCODER = "bi-encoder:"
#: A bi-encoder teacher's score is this times the cosine: the scale of irflow's cosine cross-encoder
#: head at initialisation, so KL and Margin-MSE see margins of the size a cross-encoder gives.
BI_ENCODER_SCALE = 20.0


class ScoreParams(WithPrecision):
    """``irflow score``: a teacher (or a mean ensemble) over the training candidates."""

    step: ClassVar[str] = "score"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("examples", "--examples", "preprocess", "The preprocess artifact whose candidates are scored."),
        Input("queries", "--queries", "prepare", "The prepare artifact of the queries.", kind="queries"),
        Input("docs", "--docs", "prepare", "The prepare artifact of the corpus texts.", kind="docs"),
    )

    model: list[str] = Field(min_length=1, json_schema_extra={"ref": True},
                             description="Teacher: cross-encoder (HF id, directory or train artifact) or "
                             "bi-encoder:<model>; repeat for a mean ensemble.")
    depth: int = Field(100, ge=1, description="Candidates scored per query.")
    max_length: int = Field(256, ge=8, description="Tokens of a (query, document) pair.")
    chunk: int = Field(20_000, ge=1, json_schema_extra={"key": False},
                       description="Pairs scored per chunk; finished chunks survive a kill (not part of the key).")
    stop_after: int | None = Field(None, ge=1, json_schema_extra={"key": False, "hidden": True},
                                   description="Exit after this many scored chunks, as a kill would (resume tests).")


def iter_pairs(examples_dir: Path, depth: int):
    """(qid, doc id) of every candidate a teacher scores: per example, its positives and the first
    ``depth`` negatives, each document once, in a fixed order. Streams the examples file."""
    import pyarrow.parquet as pq

    from .preprocess import EXAMPLES

    f = pq.ParquetFile(Path(examples_dir) / EXAMPLES)
    for batch in f.iter_batches(columns=["qid", "positives", "negatives"], batch_size=1024):
        qids, pos, neg = (batch.column(i).to_pylist() for i in range(3))
        for q, p, n in zip(qids, pos, neg):
            for d in sorted(set(p) | set(n[:depth])):
                yield q, d


def _chunks(pairs, size: int):
    chunk = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_teacher(models: list[str], examples_dir: Path, queries_dir: Path, docs_dir: Path, out: Path, *,
                  depth: int, device: str, autocast_dtype, max_length: int = 256, partial: Path | None = None,
                  chunk: int = 20_000, stop_after: int | None = None, progress: bool = True) -> dict:
    """Score every candidate pair with each teacher in turn into ``out/teacher.parquet`` (their mean).

    Pairs stream from the examples in chunks; each finished chunk of each teacher is kept in
    ``partial`` (beside the artifact, outside the discarded temporary directory), so a killed job
    resumes after its last finished chunk and memory does not grow with the number of pairs.
    ``stop_after`` exits after that many newly scored chunks, as a kill would (resume tests).
    """
    import os
    import tempfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    from .prepare import load_texts

    partial = Path(partial) if partial is not None else Path(tempfile.mkdtemp(dir=out))
    partial.mkdir(parents=True, exist_ok=True)
    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    del qids, qtexts
    docs = DocTexts(docs_dir, ids=())  # each chunk indexes its own documents (memory: a chunk, not the corpus)
    n_pairs = sum(1 for _ in iter_pairs(examples_dir, depth))
    done_new = 0
    for mi, m in enumerate(models):  # a mean ensemble: each teacher in turn, so only one is in memory
        score = None
        bar = progress_bar(n_pairs, f"score: teacher {mi + 1}/{len(models)}", "pair", disable=not progress)
        for ci, pairs in enumerate(_chunks(iter_pairs(examples_dir, depth), chunk)):
            f = partial / f"m{mi}-c{ci:06d}.arrow"
            if f.is_file():
                bar.update(len(pairs))
                continue
            if score is None:
                score = _scorer(m, max_length, device, autocast_dtype)
            s = np.asarray(score(pairs, queries, docs.subset(d for _, d in pairs)), dtype=np.float64)
            tmp = f.with_name(f".{f.name}.{os.getpid()}")
            feather.write_feather(pa.table({"score": s}), tmp)
            os.replace(tmp, f)
            bar.update(len(pairs))
            done_new += 1
            if stop_after is not None and done_new >= stop_after:
                bar.close()
                raise SystemExit(f"stopped after {done_new} chunks (--stop-after)")
        bar.close()
        del score
    schema = pa.schema([("qid", pa.string()), ("doc_id", pa.string()), ("score", pa.float64())])
    with pq.ParquetWriter(out / TEACHER, schema) as w:
        for ci, pairs in enumerate(_chunks(iter_pairs(examples_dir, depth), chunk)):
            total = sum(feather.read_table(partial / f"m{mi}-c{ci:06d}.arrow").column("score").to_numpy()
                        for mi in range(len(models)))
            w.write_table(pa.table({"qid": [q for q, _ in pairs], "doc_id": [d for _, d in pairs],
                                    "score": total / len(models)}, schema=schema))
    return {"pairs": n_pairs, "teachers": len(models), "chunk": chunk}


def _scorer(model: str, max_length: int, device: str, autocast_dtype):
    """A function scoring a list of (qid, doc id) pairs with one teacher (loaded once)."""
    if model.startswith(BI_ENCODER):
        name = model[len(BI_ENCODER):]
        return lambda pairs, queries, docs: _bi_encoder_scores(name, pairs, queries, docs, max_length, device,
                                                               autocast_dtype)
    from .models.crossencoder import CrossEncoder, score_pairs

    ce = CrossEncoder(model_path(model), max_length=max_length).to(device)
    return lambda pairs, queries, docs: score_pairs(ce, [queries[q] for q, _ in pairs],
                                                    docs.texts(d for _, d in pairs), device=device,
                                                    autocast_dtype=autocast_dtype)


def _bi_encoder_scores(model: str, pairs, queries, docs, max_length: int, device: str, autocast_dtype) -> list[float]:
    """``BI_ENCODER_SCALE`` × cosine of mean-pooled embeddings: a teacher that exists offline.

    On a small collection the best model available offline is often the sentence encoder itself
    (all-MiniLM-L6-v2 beats BM25 on cranfield), so a re-ranker can distil from it.
    """
    import numpy as np

    from .models.biencoder import Encoder, EncoderSpec
    from .models.resolve import load_tokenizer

    enc = Encoder(EncoderSpec(model_path(model), "mean", True), device=device, autocast_dtype=autocast_dtype)
    tok = load_tokenizer(model_path(model))
    qids = sorted({q for q, _ in pairs})
    dids = sorted({d for _, d in pairs})
    qv = enc.encode_texts([queries[q] for q in qids], tok, 64)
    dv = enc.encode_texts(docs.texts(dids), tok, max_length)
    qrow = {q: i for i, q in enumerate(qids)}
    drow = {d: i for i, d in enumerate(dids)}
    qi = np.array([qrow[q] for q, _ in pairs], dtype=np.int64)
    di = np.array([drow[d] for _, d in pairs], dtype=np.int64)
    return (BI_ENCODER_SCALE * (qv[qi] * dv[di]).sum(1)).astype(np.float64).tolist()
