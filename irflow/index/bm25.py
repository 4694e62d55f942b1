"""Sparse BM25 indexes with bm25s (Lucene variant by default, configurable stemming and stop words).

Both directions stream, so that an MS MARCO sized corpus (8.8M passages) and training query set
(~500k queries) fit on one machine:

* :func:`build_from_prepared` reads the prepare artifact's ``texts.arrow`` record batch by record
  batch (memory-mapped), tokenises each batch with ``bm25s.tokenize`` (in worker processes when
  asked: tokenising is pure Python and holds the GIL), merges the batches' vocabularies, spills
  each batch's (token, term frequency) pairs to a scratch file, and then fills bm25s's score
  matrix column by column with a counting sort. It never holds the texts or the token lists of the
  corpus, only the final matrix, and computes every score with bm25s's own formulas in the same
  floating-point order, so the index scores exactly as ``bm25s.BM25.index`` over the whole corpus
  would (:func:`build` is that path, kept for small inputs and as the reference of the tests).
* :func:`search` scores queries in chunks, several at a time on a thread pool, directly on bm25s's
  score matrix: per query it adds the matrix columns of its tokens into one dense float32 array in
  the order bm25s does (so the sums are bit for bit bm25s's) and selects the top ``k`` among the
  documents that share a term with the query. bm25s's ``retrieve(n_threads=...)`` runs the same
  per-query work on threads but also builds a progress bar, checks its inputs and ``argpartition``s
  all documents for every query, which dominates on a large corpus; with numba missing here, its
  faster backend is not available either. Ties at the cut are broken by doc id, as irflow's run
  writer orders ties, so the run no longer depends on ``argpartition``'s arbitrary choice among
  equal scores (today's one-query-at-a-time path, :func:`search_one_by_one`, made that choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from ..devices import usable_cores
from ..errors import IrflowError
from ..progress import progress as progress_bar
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


# ------------------------------------------------------------------------------------------ build


def build(p: BM25Params, ids: list[str], texts: list[str], out: Path) -> dict:
    """Index ``texts`` held in memory with ``bm25s.BM25.index`` (small inputs; the tests' reference)."""
    import bm25s
    import pyarrow as pa
    import pyarrow.parquet as pq

    retriever = bm25s.BM25(k1=p.k1, b=p.b, method=p.method)
    retriever.index(_tokenize(texts, p, True), show_progress=False)
    retriever.save(str(out / "bm25"), show_progress=False)
    pq.write_table(pa.table({"id": pa.array(ids, pa.string())}), out / "ids.parquet")
    write_info(out, {"type": "bm25", **p.key_params(), "size": len(ids)})
    return {"documents": len(ids), "vocabulary": len(retriever.vocab_dict)}


def _tokenize_batch(texts_file: str, batch: int, p: BM25Params):
    """One record batch's tokens: (its vocabulary by local id, flat local token ids, lengths).

    Runs in a worker process when tokenising in parallel: it opens the memory-mapped file itself,
    so no text crosses a process boundary, and returns compact arrays, not Python lists.
    """
    import itertools

    import pyarrow as pa

    with pa.memory_map(texts_file, "r") as source:
        texts = pa.ipc.open_file(source).get_batch(batch).column("text").to_pylist()
    tok = _tokenize(texts, p, True)
    vocab = [""] * len(tok.vocab)
    for stem, i in tok.vocab.items():
        vocab[i] = stem
    lengths = np.fromiter(map(len, tok.ids), dtype=np.int64, count=len(tok.ids))
    flat = np.fromiter(itertools.chain.from_iterable(tok.ids), dtype=np.int32, count=int(lengths.sum()))
    return vocab, flat, lengths


def build_from_prepared(p: BM25Params, texts_dir: Path, out: Path, *, workers: int = 1) -> dict:
    """Index a prepare artifact's texts in record batches, in bounded memory (see the module doc).

    ``workers`` > 1 tokenises that many batches at once in worker processes; the index is the same
    for any number. Peak memory is the final score matrix (8 bytes per posting) plus a few record
    batches, the vocabulary and two integers per document; the scratch files (4-8 bytes per
    posting) live in ``out`` while building and are removed.
    """
    import shutil
    import tempfile

    import bm25s
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bm25s import scoring

    from ..data import arrow

    texts_file = Path(texts_dir) / arrow.TEXTS
    if not texts_file.is_file():
        raise IrflowError(f"not a prepare artifact (no {arrow.TEXTS})", where=texts_dir)
    if workers < 1:
        raise IrflowError(f"workers must be at least 1, got {workers}")
    retriever = bm25s.BM25(k1=p.k1, b=p.b, method=p.method)
    dtype, int_dtype = np.dtype(retriever.dtype), np.dtype(retriever.int_dtype)
    _stemmer(p.stemmer)  # an unknown language fails here, before any work
    with pa.memory_map(str(texts_file), "r") as source:
        reader = pa.ipc.open_file(source)
        n_batches = reader.num_record_batches
        ids_schema = pa.schema([("id", pa.string())])
        scratch = Path(tempfile.mkdtemp(prefix=".bm25-build-", dir=out))
        try:
            # ---- pass 1: tokens per batch -> global vocabulary, document frequencies, lengths,
            # and each batch's sorted (document, token) pairs with their counts, spilled to disk
            vocab: dict[str, int] = {}
            df = np.zeros(1024, dtype=np.int64)
            lengths: list[np.ndarray] = []
            with pq.ParquetWriter(str(out / "ids.parquet"), ids_schema) as ids_out:
                bar = progress_bar(n_batches, "bm25 index: tokenising", "batch")
                for b, (local_vocab, flat, doc_len) in enumerate(_batches(texts_file, n_batches, p, workers)):
                    bar.update(1)
                    ids_out.write_table(pa.Table.from_batches([reader.get_batch(b).select(["id"])], ids_schema))
                    # new stems get the next ids in sorted order: deterministic (bm25s numbers a
                    # stemmed vocabulary in set order, which changes with PYTHONHASHSEED)
                    for stem in sorted(s for s in local_vocab if s not in vocab):
                        vocab[stem] = len(vocab)
                    lut = np.fromiter((vocab[s] for s in local_vocab), dtype=np.int64, count=len(local_vocab))
                    if len(vocab) > len(df):
                        df = np.concatenate([df, np.zeros(max(len(vocab), 2 * len(df)) - len(df), np.int64)])
                    doc = np.repeat(np.arange(len(doc_len), dtype=np.int64), doc_len)
                    pairs, tf = np.unique(doc * len(vocab) + lut[flat], return_counts=True)
                    tok = (pairs % len(vocab)).astype(np.int32)
                    per_doc = np.bincount(pairs // len(vocab), minlength=len(doc_len)).astype(np.int32)
                    df[: len(vocab)] += np.bincount(tok, minlength=len(vocab))
                    np.save(scratch / f"{b}.tok.npy", tok)
                    np.save(scratch / f"{b}.tf.npy", tf.astype(np.int32))
                    np.save(scratch / f"{b}.docs.npy", per_doc)
                    lengths.append(doc_len)
            bar.close()
            n_vocab = len(vocab)
            df = df[:n_vocab]
            doc_len = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
            del lengths
            n_docs = len(doc_len)
            if n_docs == 0:
                raise IrflowError("the prepare artifact has no texts", where=texts_dir)
            # exactly bm25s's statistics: the mean of an int64 array, idf from a {token: df} dict
            avg_doc_len = np.array(doc_len, dtype=np.int64).mean()
            doc_frequencies = {t: int(d) for t, d in enumerate(df)}
            idf = scoring._build_idf_array(doc_frequencies, n_docs, scoring._select_idf_scorer(retriever.idf_method),
                                           dtype=retriever.dtype)
            if retriever.method in retriever.methods_requiring_nonoccurrence:
                nonocc = scoring._build_nonoccurrence_array(
                    doc_frequencies, n_docs, scoring._select_idf_scorer(retriever.idf_method),
                    scoring._select_tfc_scorer(retriever.method), avg_doc_len, avg_doc_len, retriever.k1,
                    retriever.b, retriever.delta, dtype=retriever.dtype)
            else:
                nonocc = None
            del doc_frequencies
            tfc_fn = scoring._select_tfc_scorer(retriever.method)

            # ---- pass 2: scores per batch, placed into the CSC matrix by a counting sort over
            # tokens; batches come in document order, so each column's rows stay ascending
            indptr = np.zeros(n_vocab + 1, dtype=np.int64)
            np.cumsum(df, out=indptr[1:])
            heads = indptr[:-1].copy()
            data = np.empty(int(indptr[-1]), dtype=dtype)
            indices = np.empty(int(indptr[-1]), dtype=int_dtype)
            first = 0
            for b in range(n_batches):
                tok = np.load(scratch / f"{b}.tok.npy")
                tf = np.load(scratch / f"{b}.tf.npy").astype(dtype)
                per_doc = np.load(scratch / f"{b}.docs.npy")
                doc = np.repeat(np.arange(first, first + len(per_doc), dtype=np.int64), per_doc)
                first += len(per_doc)
                # bm25s's formula, element-wise with the same dtypes: tf (float32), l_d (int),
                # l_avg (float64 scalar), idf (float32) -> float64 products stored as float32
                tfc = tfc_fn(tf_array=tf, l_d=doc_len[doc], l_avg=avg_doc_len, k1=retriever.k1, b=retriever.b,
                             delta=retriever.delta)
                score = idf[tok] * tfc
                if nonocc is not None:
                    score -= nonocc[tok]
                order = np.argsort(tok, kind="stable")
                tok_sorted = tok[order]
                counts = np.bincount(tok_sorted, minlength=n_vocab)
                starts = np.cumsum(counts) - counts
                pos = heads[tok_sorted] + (np.arange(len(tok_sorted)) - starts[tok_sorted])
                data[pos] = score[order]
                indices[pos] = doc[order]
                heads += counts
                del tok, tf, per_doc, doc, tfc, score, order, tok_sorted, pos
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    vocab[""] = n_vocab  # bm25s's index(create_empty_token=True) adds the empty token last
    retriever.scores = {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}
    retriever.vocab_dict = vocab
    retriever.nonoccurrence_array = nonocc
    retriever.unique_token_ids_set = set(vocab.values())
    retriever.save(str(out / "bm25"), show_progress=False)
    write_info(out, {"type": "bm25", **p.key_params(), "size": n_docs})
    return {"documents": n_docs, "vocabulary": len(vocab), "postings": int(indptr[-1])}


def _batches(texts_file: Path, n_batches: int, p: BM25Params, workers: int):
    """The tokens of each record batch, in order; ``workers`` processes tokenise ahead."""
    if workers == 1 or n_batches <= 1:
        for b in range(n_batches):
            yield _tokenize_batch(str(texts_file), b, p)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = []
        for b in range(n_batches):
            pending.append(pool.submit(_tokenize_batch, str(texts_file), b, p))
            if len(pending) > 2 * workers:  # bounded read-ahead: a few batches in memory at once
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()


# ----------------------------------------------------------------------------------------- search


def _open(index_dir: Path):
    import bm25s

    info = read_info(index_dir)
    if info["type"] != "bm25":
        raise IrflowError(f"expected a bm25 index, found {info['type']!r}", where=index_dir)
    p = BM25Params(**{f: info[f] for f in ("k1", "b", "method", "stemmer", "stopwords")})
    retriever = bm25s.BM25.load(str(Path(index_dir) / "bm25"), mmap=True, show_progress=False)
    return info, p, retriever


def _id_rank(index_dir: Path) -> np.ndarray:
    """Each row's position in doc id order: the tie-breaker of the run writer (``(-score, doc_id)``)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ids = pq.read_table(Path(index_dir) / "ids.parquet").column("id")
    order = pc.sort_indices(ids).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank


def search(index_dir: Path, queries: list[str], k: int, *, threads: int | None = None,
           chunk: int = 4096):
    """Top ``k`` (scores, row indices) per query, best first; fewer (-1 rows) where fewer documents
    share a term with the query, none for a query with no known term.

    Queries are tokenised and scored ``chunk`` at a time on ``threads`` threads (default: the
    usable cores); neither changes the result. Ties at the cut go to the smaller doc id. The
    result holds all queries; :func:`iter_search` yields it chunk by chunk instead.
    """
    k_eff = min(k, read_info(index_dir).get("size", k))
    scores = np.zeros((len(queries), k_eff), dtype=np.float32)
    rows = np.full((len(queries), k_eff), -1, dtype=np.int64)
    bar = progress_bar(len(queries), "bm25 search", "query")
    for start, s, r in iter_search(index_dir, queries, k, threads=threads, chunk=chunk):
        scores[start : start + len(s)] = s
        rows[start : start + len(r)] = r
        bar.update(len(s))
    bar.close()
    return scores, rows


def iter_search(index_dir: Path, queries: list[str], k: int, *, threads: int | None = None,
                chunk: int = 4096):
    """:func:`search`, one ``(first query, scores, rows)`` per chunk of ``chunk`` queries, so that a
    caller that writes results as they come holds one chunk's results at a time."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    if chunk < 1:
        raise IrflowError(f"chunk must be at least 1, got {chunk}")
    info, p, retriever = _open(index_dir)
    k = min(k, info["size"])
    if not queries or k < 1:
        return
    # plain ndarray views of the memory maps: slicing a np.memmap costs a Python subclass per slice
    data, indices, indptr = (np.asarray(retriever.scores[f]) for f in ("data", "indices", "indptr"))
    n_docs = retriever.scores["num_docs"]
    nonocc = retriever.nonoccurrence_array
    dtype = np.dtype(retriever.dtype)
    int_dtype = np.dtype(retriever.int_dtype)
    vocab = retriever.vocab_dict
    rank = _id_rank(index_dir)
    inv_rank = np.uint64(0xFFFFFFFF) - rank.astype(np.uint64)

    local = threading.local()  # one score and one mask array per thread, reused: no page faults

    def take(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        """``a[i]`` for valid indices, ~3x faster than fancy indexing."""
        return np.take(a, i, mode="clip")

    def top_k(token_ids: list[int]):
        if not hasattr(local, "s"):
            local.s, local.mask = np.empty(n_docs, dtype=dtype), np.empty(n_docs, dtype=bool)
        s, mask = local.s, local.mask
        # bm25s's get_scores_from_ids: the same additions in the same order
        ids = np.asarray(token_ids, dtype=int_dtype)
        s.fill(0)
        for t in ids:
            a, b = indptr[t], indptr[t + 1]
            np.add.at(s, indices[a:b], data[a:b])
        if nonocc is not None:
            s += nonocc[ids].sum()
        # Candidates: documents that share a term with the query (score > 0), and when one of the
        # query's columns has k rows or more, only those scoring at least the k-th best score among
        # that column's rows: a lower bound of the k-th best score overall, found cheaply, which
        # leaves far fewer candidates to select from
        longest = max(ids.tolist(), key=lambda t: indptr[t + 1] - indptr[t])
        a, b = indptr[longest], indptr[longest + 1]
        if b - a >= k:
            sub = take(s, indices[a:b])
            bound = np.partition(sub, len(sub) - k)[len(sub) - k]
            np.greater_equal(s, bound, out=mask) if bound > 0 else np.greater(s, 0, out=mask)
        else:
            np.greater(s, 0, out=mask)
        cand = np.flatnonzero(mask)
        cs = take(s, cand)
        if len(cand) > k:
            cut = len(cs) - k
            kth = np.partition(cs, cut)[cut]
            top = np.flatnonzero(cs > kth)
            tied = np.flatnonzero(cs == kth)
            need = k - len(top)
            if len(tied) > need:  # ties straddle the cut: the smallest doc ids
                tied = tied[np.argsort(rank[cand[tied]], kind="stable")[:need]]
            top = np.concatenate([top, tied])
            cand, cs = take(cand, top), take(cs, top)
        # best first, ties by doc id: one sort of (score bits, inverted id rank); a positive
        # float32's bits order as the float does
        order = np.argsort((cs.view(np.uint32).astype(np.uint64) << np.uint64(32)) | take(inv_rank, cand))[::-1]
        return take(cs, order), take(cand, order)

    def run(out: tuple[np.ndarray, np.ndarray], first: int, token_ids: list[list[int]]) -> None:
        scores, rows = out
        for i, ids in enumerate(token_ids, first):
            if ids:  # a query with no known term gets no results
                s, r = top_k(ids)
                scores[i, : len(r)] = s
                rows[i, : len(r)] = r

    def token_ids(start: int) -> list[list[int]]:
        tokens = _tokenize(queries[start : start + chunk], p, False)
        return [[vocab[t] for t in toks if t in vocab] for toks in tokens]

    def results(n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((n, k), dtype=np.float32), np.full((n, k), -1, dtype=np.int64)

    threads = threads or usable_cores()
    if threads == 1:  # no pool: a GIL hand-off on a busy machine can wait a whole scheduler slice
        for start in range(0, len(queries), chunk):
            ids = token_ids(start)
            out = results(len(ids))
            run(out, 0, ids)
            yield start, *out
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        ids = token_ids(0)
        for start in range(0, len(queries), chunk):
            out = results(len(ids))
            step = max(1, min(64, -(-len(ids) // threads)))
            spans = [pool.submit(run, out, j, ids[j : j + step]) for j in range(0, len(ids), step)]
            # tokenise the next chunk (pure Python) while the pool scores this one (numpy, mostly
            # without the GIL); each span writes its own rows of the output
            ids = token_ids(start + chunk) if start + chunk < len(queries) else []
            for f in spans:
                f.result()
            yield start, *out


def search_one_by_one(index_dir: Path, queries: list[str], k: int):
    """The former search: bm25s ``retrieve`` per query on one thread (the reference of the tests and
    of ``bench/bench_bm25.py``). Which of several documents tied at the cut it keeps is arbitrary."""
    info, p, retriever = _open(index_dir)
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
