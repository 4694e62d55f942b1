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


def score_teacher(models: list[str], examples_dir: Path, queries_dir: Path, docs_dir: Path, out: Path, *,
                  depth: int, device: str, autocast_dtype, max_length: int = 256) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .models.crossencoder import CrossEncoder, score_pairs
    from .preprocess import EXAMPLES
    from .prepare import load_texts

    rows = pq.read_table(Path(examples_dir) / EXAMPLES).to_pylist()
    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    docs = DocTexts(docs_dir)
    pairs = sorted({(r["qid"], d) for r in rows for d in r["positives"] + r["negatives"][:depth]})
    total = [0.0] * len(pairs)
    for m in models:  # a mean ensemble: each teacher in turn, so only one is in memory
        if m.startswith(BI_ENCODER):
            s = _bi_encoder_scores(m[len(BI_ENCODER):], pairs, queries, docs, max_length, device, autocast_dtype)
        else:
            ce = CrossEncoder(model_path(m), max_length=max_length).to(device)
            s = score_pairs(ce, [queries[q] for q, _ in pairs], [docs[d] for _, d in pairs], device=device,
                            autocast_dtype=autocast_dtype)
            del ce
        total = [a + b for a, b in zip(total, s)]
    pq.write_table(pa.table({"qid": [q for q, _ in pairs], "doc_id": [d for _, d in pairs],
                             "score": [t / len(models) for t in total]}), out / TEACHER)
    return {"pairs": len(pairs), "teachers": len(models)}


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
    dv = enc.encode_texts([docs[d] for d in dids], tok, max_length)
    qrow = {q: i for i, q in enumerate(qids)}
    drow = {d: i for i, d in enumerate(dids)}
    qi = np.array([qrow[q] for q, _ in pairs], dtype=np.int64)
    di = np.array([drow[d] for _, d in pairs], dtype=np.int64)
    return (BI_ENCODER_SCALE * (qv[qi] * dv[di]).sum(1)).astype(np.float64).tolist()
