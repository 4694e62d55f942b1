"""Sparse BM25 indexes with bm25s (Lucene variant by default, configurable stemming and stop words)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ..errors import IrflowError
from ..params import Input, StepParams, KeyContext
from . import read_info, write_info


class BM25Params(StepParams):
    """``irflow index bm25``: Lucene BM25 (bm25s) over a prepare artifact's texts."""

    step: ClassVar[str] = "index"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("texts", "--texts", "prepare", "The prepare artifact of the corpus.", kind="docs"),
    )

    k1: float = Field(0.9, ge=0, description="Term-frequency saturation.")
    b: float = Field(0.4, ge=0, le=1, description="Length normalisation.")
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = Field("lucene", description="bm25s variant.")
    stemmer: str | None = Field("english", description="PyStemmer language; 'none' disables.")
    stopwords: str | None = Field("en", description="bm25s stop word list; 'none' disables.")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        return {"type": "bm25", **super().key_params(ctx)}


def _stemmer(name: str | None):
    if not name:
        return None
    import Stemmer

    try:
        return Stemmer.Stemmer(name).stemWords
    except KeyError as e:
        raise IrflowError(f"unknown stemmer language {name!r}; PyStemmer knows {Stemmer.algorithms()}") from e


def _tokenize(texts, p: BM25Params, return_ids: bool):
    import bm25s

    return bm25s.tokenize(list(texts), stopwords=p.stopwords or [], stemmer=_stemmer(p.stemmer),
                          return_ids=return_ids, show_progress=False)


def build(p: BM25Params, ids: list[str], texts: list[str], out: Path) -> dict:
    import bm25s
    import pyarrow as pa
    import pyarrow.parquet as pq

    retriever = bm25s.BM25(k1=p.k1, b=p.b, method=p.method)
    retriever.index(_tokenize(texts, p, True), show_progress=False)
    retriever.save(str(out / "bm25"), show_progress=False)
    pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), out / "ids.parquet")
    write_info(out, {"type": "bm25", **p.key_params(), "size": len(ids)})
    return {"documents": len(ids), "vocabulary": len(retriever.vocab_dict)}


def search(index_dir: Path, queries: list[str], k: int):
    """Top ``k`` (scores, row indices) per query; a query with no known term gets no results (-1)."""
    import bm25s

    info = read_info(index_dir)
    if info["type"] != "bm25":
        raise IrflowError(f"expected a bm25 index, found {info['type']!r}", where=index_dir)
    p = BM25Params(**{f: info[f] for f in ("k1", "b", "method", "stemmer", "stopwords")})
    retriever = bm25s.BM25.load(str(Path(index_dir) / "bm25"), mmap=True, show_progress=False)
    vocab = retriever.vocab_dict
    k = min(k, info["size"])
    scores = np.zeros((len(queries), k), dtype=np.float32)
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    tokens = _tokenize(queries, p, False)
    for i, toks in enumerate(tokens):
        toks = [t for t in toks if t in vocab]
        if not toks:
            continue
        r, s = retriever.retrieve([toks], k=k, show_progress=False, n_threads=1)
        keep = s[0] > 0  # documents sharing no term with the query are not retrieved
        rows[i, : keep.sum()] = r[0][keep]
        scores[i, : keep.sum()] = s[0][keep]
    return scores, rows
