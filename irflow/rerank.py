"""``irflow rerank`` and ``irflow score``: cross-encoder inference over (query, document) pairs.

Both score pairs with length-bucketed batches under ``inference_mode`` and bf16 autocast where the
hardware has it. ``rerank`` re-orders the top ``depth`` of a run (documents below the depth keep
their order, below the re-ranked ones); ``score`` writes teacher scores for every candidate pair
of the training examples — from one cross-encoder or the mean of several — into
``teacher.parquet``, which ``irflow train`` distils from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .errors import IrflowError

TEACHER = "teacher.parquet"
#: ``--model bi-encoder:<id>`` scores with a bi-encoder (mean pooling, cosine) instead of a cross-encoder
BI_ENCODER = "bi-encoder:"
#: A bi-encoder teacher's score is this times the cosine: the scale of irflow's cosine cross-encoder
#: head at initialisation, so KL and Margin-MSE see margins of the size a cross-encoder gives.
BI_ENCODER_SCALE = 20.0


class DocTexts(Mapping):
    """Doc id -> text over a prepared (memory-mapped) texts table; the id index is built once."""

    def __init__(self, prepared: Path):
        from .data import arrow

        table = arrow.open_table(Path(prepared) / arrow.TEXTS)
        self._text = table.column("text")
        self._row = {d: i for i, d in enumerate(table.column("id").to_pylist())}

    def __getitem__(self, doc_id: str) -> str:
        try:
            return self._text[self._row[doc_id]].as_py()
        except KeyError:
            raise IrflowError(f"document {doc_id!r} is not in the corpus") from None

    def __contains__(self, doc_id) -> bool:
        return doc_id in self._row

    def __iter__(self):
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def scorer_params(models, is_artifact, *, depth: int, max_length: int, precision: str) -> tuple[dict, dict]:
    """Key parameters of ``score``/``rerank`` and the models that enter as store inputs.

    A model that is a train artifact is keyed by that artifact (an input, so its key chains in);
    any other by its identity. The plan and the CLI both call this, so their keys cannot drift.
    """
    from .models.resolve import identity

    ids, inputs = [], {}
    for i, m in enumerate(models):
        if is_artifact(m):
            inputs[f"model{i}"] = m
            ids.append({"input": f"model{i}"})
        elif m.startswith(BI_ENCODER):
            ids.append({"bi-encoder": identity(m[len(BI_ENCODER):])})
        else:
            ids.append(identity(m))
    return {"models": ids, "depth": depth, "max_length": max_length, "precision": precision}, inputs


def model_path(model: str) -> str:
    """A train artifact stands for the model it holds."""
    p = Path(model)
    return str(p / "model") if (p / "model" / "config.json").is_file() else model


def rerank(model: str, run_dir: Path, queries_dir: Path, docs_dir: Path, out: Path, *, depth: int,
           device: str, autocast_dtype, max_length: int = 256, tag: str = "irflow-rerank") -> dict:
    from .models.crossencoder import CrossEncoder, score_pairs
    from .prepare import load_texts
    from .search import RUN
    from .trec import read_run, write_run

    if depth < 1:
        raise IrflowError(f"--depth must be positive, got {depth}")
    run, stats = read_run(Path(run_dir) / RUN)
    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    docs = DocTexts(docs_dir)
    ce = CrossEncoder(model_path(model), max_length=max_length).to(device)
    pairs = [(q, d) for q in run if q in queries for d, _ in run[q][:depth]]
    scores = score_pairs(ce, [queries[q] for q, _ in pairs], [docs[d] for _, d in pairs], device=device,
                         autocast_dtype=autocast_dtype)
    reranked: dict[str, list[tuple[str, float]]] = {}
    for (q, d), s in zip(pairs, scores):
        reranked.setdefault(q, []).append((d, s))
    for q, docs_q in reranked.items():
        floor = min(s for _, s in docs_q)
        tail = run[q][depth:]  # keep the rest of the list, strictly below the re-ranked part
        reranked[q] = docs_q + [(d, floor - 1.0 - i) for i, (d, _) in enumerate(tail)]
    write_run(out / RUN, reranked, tag)
    return {"queries": len(reranked), "pairs": len(pairs), "warnings": stats.warnings}


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
