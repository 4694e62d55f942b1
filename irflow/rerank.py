"""``irflow rerank``: cross-encoder inference over the top of a run.

Pairs are scored with length-bucketed batches under ``inference_mode`` and autocast; the top
``depth`` of each query is re-ordered, and documents below the depth keep their order, below the
re-ranked ones. :class:`DocTexts` (doc id -> text over the memory-mapped corpus) and
:func:`model_path` are shared with ``irflow score`` and training.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from .errors import IrflowError
from .params import Input, WithPrecision
from .progress import progress as progress_bar



class DocTexts(Mapping):
    """Doc id -> text over a prepared (memory-mapped) texts table, for the documents a step needs.

    With ``ids`` (an iterable of ids, or a list of Arrow / numpy arrays of them), only those
    documents are indexed: their rows are found by one scan of the corpus's id column against a
    hash set of ``ids`` (Arrow's ``is_in``, a slice at a time), and kept as a sorted Arrow array of
    the found ids beside a numpy array of their rows (~20 bytes a document), so memory follows what
    the step reads (a run's candidates, a chunk of teacher pairs, a training set), not the corpus.
    A Python dict over every id costs ~0.7 KB a passage: 6 GB at MS MARCO's 8.8M. A requested id
    that is not in the corpus fails on access, naming it. Without ``ids`` every document is indexed.
    """

    #: corpus rows per ``is_in`` call of the scan
    SCAN_ROWS = 1 << 20
    #: text bytes gathered between two releases of the mapped pages
    RELEASE_BYTES = 64 << 20

    def __init__(self, prepared: Path, ids=None):
        import numpy as np

        from .data import arrow

        self._map = arrow.MappedTable(Path(prepared) / arrow.TEXTS)
        self._ids = self._map.table.column("id")
        self._text = self._map.table.column("text")
        self._starts = np.cumsum([0] + [len(c) for c in self._text.chunks])
        self._lookups = 0
        self._keys, self._rows = self._index(None if ids is None else self._wanted(ids))

    def subset(self, ids) -> "DocTexts":
        """The same corpus, indexed for ``ids`` only (one scan; shares the mapped table)."""
        new = object.__new__(DocTexts)
        new._map, new._ids, new._text, new._starts = self._map, self._ids, self._text, self._starts
        new._lookups = 0
        new._keys, new._rows = self._index(self._wanted(ids))
        return new

    def _wanted(self, ids):
        """The distinct ids asked for, as one Arrow array of the id column's type."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        typ = self._ids.type
        if isinstance(ids, list) and ids and all(isinstance(x, (pa.Array, pa.ChunkedArray, np.ndarray)) for x in ids):
            chunks = []
            for x in ids:
                x = pa.array(x, type=typ) if isinstance(x, np.ndarray) else x.cast(typ)
                chunks += x.chunks if isinstance(x, pa.ChunkedArray) else [x]
            return pc.unique(pa.chunked_array(chunks, type=typ))
        return pa.array(sorted(set(ids)), type=typ)

    def _index(self, wanted):
        """(sorted found ids, their rows): every row of the corpus when ``wanted`` is None."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if wanted is None:
            keys, rows = self._ids, np.arange(len(self._ids), dtype=np.int64)
        else:
            keys, rows = [], []
            offset = 0
            for chunk in (self._ids.chunks if len(wanted) else []):
                for start in range(0, len(chunk), self.SCAN_ROWS):
                    part = chunk.slice(start, self.SCAN_ROWS)
                    hit = np.flatnonzero(pc.is_in(part, value_set=wanted).to_numpy(zero_copy_only=False))
                    if len(hit):
                        keys.append(part.take(pa.array(hit)))
                        rows.append(offset + start + hit)
                offset += len(chunk)
            keys = pa.chunked_array(keys, type=self._ids.type)
            rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        self._map.release()  # the id column's pages, touched by the scan
        order = pc.sort_indices(keys).to_numpy()
        return keys.take(pa.array(order)).combine_chunks(), rows[order]

    def _find(self, doc_id: str) -> int:
        """The position of ``doc_id`` among the sorted keys (binary search), or -1."""
        keys = self._keys
        lo, hi = 0, len(keys)
        while lo < hi:
            mid = (lo + hi) // 2
            if keys[mid].as_py() < doc_id:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(keys) and keys[lo].as_py() == doc_id else -1

    def __getitem__(self, doc_id: str) -> str:
        i = self._find(doc_id) if isinstance(doc_id, str) else -1
        if i < 0:
            raise IrflowError(f"document {doc_id!r} is not in the corpus")
        self._lookups += 1
        if self._lookups % 4096 == 0:  # a long training run reads the texts of its whole pool in time
            self._map.release()
        return self._text[int(self._rows[i])].as_py()

    def texts(self, doc_ids) -> list[str]:
        """Texts of ``doc_ids`` in order (one hash lookup and one gather from the mapped column)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        ids = pa.array(list(doc_ids), type=self._keys.type)
        pos = pc.index_in(ids, value_set=self._keys)
        if pos.null_count:
            missing = ids.filter(pc.is_null(pos))[0].as_py()
            raise IrflowError(f"document {missing!r} is not in the corpus")
        return self._gather(self._rows[pos.to_numpy(zero_copy_only=False)])

    def _gather(self, rows) -> list[str]:
        """Texts of corpus ``rows``, in order: chunk by chunk in file order (a take on the chunked
        column would first concatenate every chunk: a copy of the corpus), releasing the mapped
        pages every ``RELEASE_BYTES`` so that the process holds a slice of the file, not all of it."""
        import numpy as np
        import pyarrow as pa

        out: list = [None] * len(rows)
        order = np.argsort(rows, kind="stable")
        chunk = np.searchsorted(self._starts, rows[order], side="right") - 1
        bounds = np.flatnonzero(np.diff(chunk)) + 1
        read = 0
        for sel in np.split(np.arange(len(order)), bounds) if len(order) else []:
            c = int(chunk[sel[0]])
            part = self._text.chunks[c]
            for i, text in zip(order[sel].tolist(),
                               part.take(pa.array(rows[order[sel]] - self._starts[c])).to_pylist()):
                out[i] = text
            read += part.nbytes
            if read >= self.RELEASE_BYTES:
                self._map.release()
                read = 0
        self._map.release()
        return out

    def __contains__(self, doc_id) -> bool:
        return isinstance(doc_id, str) and self._find(doc_id) >= 0

    def __iter__(self):
        for a in range(0, len(self._keys), 65536):
            yield from self._keys.slice(a, 65536).to_pylist()

    def __len__(self) -> int:
        return len(self._keys)


class RerankParams(WithPrecision):
    """``irflow rerank``: the top ``depth`` of a run re-scored by a cross-encoder."""

    step: ClassVar[str] = "rerank"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("run", "--run", ("search", "fuse", "rerank"), "The run artifact to re-rank."),
        Input("queries", "--queries", "prepare", "The prepare artifact of the queries.", kind="queries"),
        Input("docs", "--docs", "prepare", "The prepare artifact of the corpus texts.", kind="docs"),
    )

    model: str = Field(description="Cross-encoder: HF id (org/name[@revision]), directory or train artifact.",
                       json_schema_extra={"ref": True})
    depth: int = Field(100, ge=1, description="Re-rank the top DEPTH of each query.")
    max_length: int = Field(256, ge=8, description="Tokens of a (query, document) pair.")


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

    qids, qtexts = load_texts(queries_dir)
    queries = dict(zip(qids, qtexts))
    run, stats = read_run(Path(run_dir) / RUN, queries=queries)  # the queries re-ranked, not the whole run
    ce = CrossEncoder(model_path(model), max_length=max_length).to(device)
    pairs = [(q, d) for q in run for d, _ in run[q][:depth]]
    docs = DocTexts(docs_dir, ids=(d for _, d in pairs))  # the candidates only, not the corpus
    bar = progress_bar(len(pairs), "rerank", "pair")
    scores = score_pairs(ce, [queries[q] for q, _ in pairs], docs.texts(d for _, d in pairs), device=device,
                         autocast_dtype=autocast_dtype, progress=bar.update)
    bar.close()
    reranked: dict[str, list[tuple[str, float]]] = {}
    for (q, d), s in zip(pairs, scores):
        reranked.setdefault(q, []).append((d, s))
    for q, docs_q in reranked.items():
        floor = min(s for _, s in docs_q)
        tail = run[q][depth:]  # keep the rest of the list, strictly below the re-ranked part
        reranked[q] = docs_q + [(d, floor - 1.0 - i) for i, (d, _) in enumerate(tail)]
    write_run(out / RUN, reranked, tag)
    return {"queries": len(reranked), "pairs": len(pairs), "warnings": stats.warnings}
