"""``irflow search``: queries against a dense or BM25 index into a TREC run file.

The index's ``index.json`` says which kind it is; a dense index also records the encoder that made
its vectors, and queries are encoded with the same model, pooling and normalisation, so no flag can
make the two sides disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from .errors import IrflowError
from .params import Input, WithPrecision, KeyContext
from .index import read_info
from .prepare import load_texts

RUN = "run.trec"


class SearchParams(WithPrecision):
    """``irflow search``: a query set against a BM25 or faiss index."""

    step: ClassVar[str] = "search"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("index", "--index", "index", "An index artifact (BM25 or faiss); repeat for the per-shard faiss "
              "indexes of one corpus: each is searched in turn and the top k merged, so no process holds the "
              "whole index.", multiple=True),
        Input("queries", "--queries", "prepare", "A prepare artifact of kind queries.", kind="queries"),
    )

    k: int = Field(1000, ge=1, description="Results per query.")
    query_max_length: int = Field(64, ge=2, description="Query tokens (dense indexes).")
    nprobe: int | None = Field(None, ge=1, description="IVF cells to visit (IVF indexes only).")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        """A BM25 search depends on k only; the index's type comes from the index input."""
        index_type = ctx.inputs["index0"].params.get("type") if ctx else None
        if index_type == "bm25":
            return {"k": self.k}
        return {"k": self.k, "query_max_length": self.query_max_length, "precision": self.precision,
                "nprobe": self.nprobe}


def check_index_model(index_dir: Path, spec: dict):
    """The query tokenizer, after checking that the model is still the one the documents were encoded with.

    ``encoder.json`` names the model (a hub id at its commit, or a directory) with its identity and
    tokenizer digest; a directory whose weights or tokenizer changed since would encode queries into
    another space than the index's, silently. Indexes from before these records only get the load.
    """
    from .models.resolve import identity, load_tokenizer, tokenizer_digest

    tok = load_tokenizer(spec["model"])
    want_tok, want_id = spec.get("tokenizer_sha256"), spec.get("model_identity")
    if want_tok is not None and tokenizer_digest(tok) != want_tok:
        raise IrflowError(f"the tokenizer of model {spec['model']!r} is not the one the index was encoded with "
                          f"(sha256 {tokenizer_digest(tok)[:12]} vs {want_tok[:12]})", where=index_dir)
    if want_id is not None and identity(spec["model"]) != want_id:
        raise IrflowError(f"model {spec['model']!r} changed since the index was encoded "
                          f"({identity(spec['model'])} vs {want_id}): encode again", where=index_dir)
    return tok


class TopK:
    """The best ``k`` (score, doc id) of every query over one or more result blocks (shards).

    Held as numpy arrays of queries x k (scores, UTF-8 ids, validity) and merged after each block,
    so a sharded search holds one shard's results beside the running top k, not queries x k x
    shards Python tuples (4M of them, ~1 GB, for 10,000 queries, k 100 and 4 shards). Order is
    ``(-score, doc id)``, as :func:`irflow.trec.write_run` writes it: UTF-8 bytes compare as the
    code points do, so ties across shards resolve exactly as sorting the strings would.
    """

    def __init__(self, n_queries: int, k: int):
        self.k = k
        self.scores = np.zeros((n_queries, 0), dtype=np.float64)
        self.ids = np.zeros((n_queries, 0), dtype="S1")
        self.valid = np.zeros((n_queries, 0), dtype=bool)

    def add(self, scores, rows, doc_ids) -> None:
        """One block: ``scores`` / ``rows`` [queries, k'] (row -1: no result), ``doc_ids`` row -> id."""
        rows = np.asarray(rows)
        valid = rows >= 0
        ids = np.asarray(doc_ids, dtype=object)[np.where(valid, rows, 0)] if len(doc_ids) else \
            np.full(rows.shape, "", dtype=object)
        ids = np.char.encode(np.where(valid, ids, "").astype(str), "utf-8")
        s = np.where(valid, np.asarray(scores, dtype=np.float64), -np.inf)
        s, ids, valid = (np.concatenate(x, axis=1) for x in ((self.scores, s), (self.ids, ids), (self.valid, valid)))
        order = np.lexsort((ids, -s, ~valid), axis=-1)[:, : self.k]
        self.scores, self.ids, self.valid = (np.take_along_axis(x, order, axis=1) for x in (s, ids, valid))

    def run(self, qids: list[str]) -> dict[str, list[tuple[str, float]]]:
        out = {}
        for qi, q in enumerate(qids):
            v = self.valid[qi]
            out[q] = list(zip((x.decode() for x in self.ids[qi][v]), self.scores[qi][v].tolist()))
        return out


def search(p: SearchParams, index_dirs: list[Path] | Path, queries_dir: Path, out: Path, *, device: str = "cpu",
           autocast_dtype=None, tag: str = "irflow", threads: int | None = None) -> dict:
    """Search one index, or the per-shard faiss indexes of one corpus in turn (top k of each, merged:
    inner products of one encoder are comparable across shards), into ``out/run.trec``."""
    import pyarrow.parquet as pq

    from .trec import write_run

    index_dirs = [Path(index_dirs)] if isinstance(index_dirs, (str, Path)) else [Path(d) for d in index_dirs]
    types = {read_info(d)["type"] for d in index_dirs}
    if len(types) != 1:
        raise IrflowError(f"--index artifacts of different types ({', '.join(sorted(types))})")
    kind = types.pop()
    qids, qtexts = load_texts(queries_dir)
    best = TopK(len(qids), p.k)

    def collect(index_dir: Path, scores, rows):
        best.add(scores, rows, pq.read_table(index_dir / "ids.parquet").column("id").to_numpy(zero_copy_only=False))

    if kind == "bm25":
        from .index import bm25

        if len(index_dirs) != 1:
            raise IrflowError("a BM25 search takes one --index")
        index_dir = index_dirs[0]
        scores, rows = bm25.search(index_dir, qtexts, p.k, threads=threads)
        collect(index_dir, scores, rows)
    elif kind == "faiss":
        from .index import dense
        from .models.biencoder import Encoder, EncoderSpec

        specs = {d: dense.encoder_of(d) for d in index_dirs}
        spec = specs[index_dirs[0]]
        if any(s != spec for s in specs.values()):
            raise IrflowError("the --index artifacts were encoded by different models: they cannot be merged")
        tokenizer = check_index_model(index_dirs[0], spec)
        enc = Encoder(EncoderSpec(spec["model"], spec["pooling"], spec["normalize"]), device=device,
                      autocast_dtype=autocast_dtype)
        qvecs = enc.encode_texts(qtexts, tokenizer, p.query_max_length)
        for d in index_dirs:  # one index in memory at a time, merged into the running top k
            collect(d, *dense.search(d, qvecs, p.k, p.nprobe, device=device))
    else:
        raise IrflowError(f"unknown index type {kind!r}", where=index_dirs[0])
    run = best.run(qids)
    write_run(out / RUN, run, tag)
    return {"queries": len(qids), "empty_queries": sum(1 for v in run.values() if not v), "indexes": len(index_dirs)}
