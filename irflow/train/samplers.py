"""Training-batch samplers over teacher-scored triples: random, topic-aware (TAS), TAS-Balanced.

These follow the TAS-Balanced loader of Hofstätter et al. (SIGIR 2021; matchmaker
``dataloaders/tas_balanced_training_loader.py``, see ``seed-algorithms.md`` A3):

* ``random``: b triples uniform over all teacher-scored pairs, like reading a shuffled triples
  file (the no-TAS baseline).
* ``tas``: draw a query cluster uniformly (with replacement), take ``b // n`` of its queries
  without replacement (or all of a smaller cluster, in its stored order), and another cluster
  until the batch holds exactly b triples; each query gets a pair uniform over its pairs (the
  reference's ``"random"`` pair strategy, i.e. the TAS-only ablation).
* ``tas-balanced``: the same queries, but the pair comes from one of ten equal-width bins of the
  query's own teacher-margin range (``s_pos - s_neg``): a bin uniform over the query's non-empty
  bins, then a pair uniform inside it. The reference redraws a bin until it hits a non-empty one,
  which is the same distribution; we draw over the non-empty bins directly (no rejection loop).

A step's batch is a pure function of the generator the training loop hands in
(``np.random.default_rng([seed, step])``): samplers keep no state between batches, so resuming at
step k reproduces the batches of an uninterrupted run exactly, with nothing to checkpoint. The
reference instead seeds Python's ``random`` once in a worker process, so its batch stream cannot be
resumed, and it orders each cluster's queries by ``list(set(...))`` -- hash order, which changes
between processes (``PYTHONHASHSEED``), so even a fresh run with the same seed is not
reproducible. Here clusters are sorted by cluster id and the queries in a cluster by qid.

Everything a batch needs is precomputed into flat numpy arrays (pairs grouped by query, per-query
offsets, per-bin offsets), so a batch is a handful of vectorised draws: far below a millisecond for
b = 32 regardless of the pool's size. :class:`Prefetcher` runs batch composition (sampling and,
in the caller, tokenisation) ahead of the training loop in a thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import IrflowError

#: The reference's hard-coded ``uniform_percentile_sampling_bins``.
DEFAULT_BINS = 10
SAMPLERS = ("random", "tas", "tas-balanced")


@dataclass(frozen=True, slots=True)
class Triple:
    """One training example: a query, a positive and a negative passage, and their teacher scores."""

    qid: str
    pos: str
    neg: str
    pos_score: float
    neg_score: float


@dataclass(frozen=True)
class Sample:
    """One batch as indices, before materialising (cheap; what tests and statistics look at).

    ``pairs`` index the pool's pair arrays, ``queries`` the pool's queries (``pool.qids``).
    For the topic-aware samplers ``clusters`` holds the cluster id each item's query was drawn
    from and ``draws`` the number (0, 1, ...) of the cluster draw within the batch; both are
    ``None`` for ``random``.
    """

    pairs: np.ndarray
    queries: np.ndarray
    clusters: np.ndarray | None = None
    draws: np.ndarray | None = None


def _check_int(value: Any, name: str, lo: int, hi: int | None = None, *, where: str = "sampler") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise IrflowError(f"{name} must be an integer, got {value!r}", where=where)
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        rng = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise IrflowError(f"{name} must be {rng}, got {value}", where=where)
    return value


def _check_pool(pool: Any) -> None:
    if not isinstance(pool, PairPool):
        raise TypeError(f"expected a PairPool, got {type(pool).__name__}")
    if len(pool) == 0:  # from_arrays refuses this already; a hand-built pool might not
        raise IrflowError("the pair pool is empty", where="sampler")


# ---------------------------------------------------------------------------------------- pool


@dataclass(frozen=True)
class Binning:
    """Per-query equal-width margin bins, laid out for O(1) draws.

    ``pair_bin[i]`` is pair i's bin (0..h-1), or -1 when its query has fewer than two pairs (the
    reference drops such queries for the bins strategy). ``order`` lists pair indices sorted by
    (query, bin, position); the non-empty bins of query q are ``q_bin_ptr[q] ..
    q_bin_ptr[q] + q_bin_count[q] - 1`` in ``bin_start`` / ``bin_size`` / ``bin_id``, and bin j
    holds ``order[bin_start[j] : bin_start[j] + bin_size[j]]``.
    """

    h: int
    pair_bin: np.ndarray
    order: np.ndarray
    bin_start: np.ndarray
    bin_size: np.ndarray
    bin_id: np.ndarray
    q_bin_ptr: np.ndarray
    q_bin_count: np.ndarray
    eligible: np.ndarray  # per query: has >= 2 pairs
    constant: np.ndarray  # per query: eligible but all margins equal (one bin)


def _py(x):
    return x.as_py() if hasattr(x, "as_py") else x


def _codes(values) -> tuple[list[str], np.ndarray]:
    """(distinct values in order of first appearance, each value's index among them)."""
    if hasattr(values, "dictionary_encode"):  # an Arrow array: its dictionary is in that order
        enc = values.combine_chunks().dictionary_encode() if hasattr(values, "combine_chunks") \
            else values.dictionary_encode()
        return enc.dictionary.to_pylist(), enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    index: dict[str, int] = {}
    codes = np.fromiter((index.setdefault(q, len(index)) for q in values), dtype=np.int64, count=len(values))
    return list(index), codes


def _objects(values) -> np.ndarray:
    """An object array of ``values``; from an Arrow array, one Python string per distinct value."""
    if hasattr(values, "dictionary_encode"):
        names, codes = _codes(values)
        distinct = np.empty(len(names), dtype=object)
        distinct[:] = names
        return distinct[codes]
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


class PairPool:
    """Teacher-scored triples grouped by query (pairs of a query are contiguous, input order kept).

    Attributes: ``qids`` (query index -> qid, in order of first appearance), ``query_index``
    (qid -> index), ``pos_ids`` / ``neg_ids`` (object arrays), ``pos_scores`` / ``neg_scores`` /
    ``margins`` (float64), ``pair_query`` (pair -> query index), ``starts`` / ``counts`` (per
    query), ``bins`` (the default number of margin bins).
    """

    def __init__(self, qids: list[str], pos_ids: np.ndarray, neg_ids: np.ndarray, pos_scores: np.ndarray,
                 neg_scores: np.ndarray, pair_query: np.ndarray, *, bins: int = DEFAULT_BINS):
        self.qids = qids
        self.query_index = {q: i for i, q in enumerate(qids)}
        self.pos_ids = pos_ids
        self.neg_ids = neg_ids
        self.pos_scores = pos_scores
        self.neg_scores = neg_scores
        self.margins = pos_scores - neg_scores
        self.pair_query = pair_query
        self.counts = np.bincount(pair_query, minlength=len(qids)).astype(np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1])).astype(np.int64)
        self.bins = _check_int(bins, "bins", 1, where="sampler.bins")
        self._binnings: dict[int, Binning] = {}
        self.binning(self.bins)

    @classmethod
    def from_arrays(cls, qids: Sequence[str], pos_ids: Sequence[str], neg_ids: Sequence[str],
                    pos_scores: Sequence[float], neg_scores: Sequence[float], *, bins: int = DEFAULT_BINS,
                    where: str | None = None) -> PairPool:
        """One row per teacher-scored triple (the KD ``pos_score neg_score qid pos neg`` file).

        Rows are grouped by query (stable: a query's pairs keep their input order). Scores must be
        finite, so that every margin lands in a bin. The margin bins for ``bins`` are computed now.
        """
        where = where or "teacher pairs"
        n = len(qids)
        lens = {"qids": n, "pos_ids": len(pos_ids), "neg_ids": len(neg_ids), "pos_scores": len(pos_scores),
                "neg_scores": len(neg_scores)}
        if len(set(lens.values())) != 1:
            raise IrflowError("columns differ in length: " + ", ".join(f"{k}={v}" for k, v in lens.items()),
                              where=where)
        if n == 0:
            raise IrflowError("no teacher-scored pairs", where=where)
        try:
            ps = np.asarray(pos_scores, dtype=np.float64)
            ns = np.asarray(neg_scores, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise IrflowError(f"teacher scores are not numbers: {e}", where=where) from None
        with np.errstate(over="ignore", invalid="ignore"):
            margins = ps - ns
        bad = ~(np.isfinite(ps) & np.isfinite(ns) & np.isfinite(margins))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            q, p_, n_ = (_py(x[i]) for x in (qids, pos_ids, neg_ids))
            raise IrflowError(f"{int(bad.sum())} pair(s) with a non-finite teacher score or margin, first: "
                              f"query {q!r} pos {p_!r} neg {n_!r} "
                              f"({ps[i]!r}, {ns[i]!r})", where=where)
        names, codes = _codes(qids)
        order = np.argsort(codes, kind="stable")
        pos, neg = _objects(pos_ids), _objects(neg_ids)
        return cls(names, pos[order], neg[order], ps[order], ns[order], codes[order], bins=bins)

    def __len__(self) -> int:
        return len(self.pos_scores)

    @property
    def n_queries(self) -> int:
        return len(self.qids)

    def triples(self, pairs: np.ndarray) -> list[Triple]:
        """Materialise pair indices as :class:`Triple` objects (in the given order)."""
        q, pos, neg = self.pair_query[pairs], self.pos_ids[pairs], self.neg_ids[pairs]
        ps, ns = self.pos_scores[pairs].tolist(), self.neg_scores[pairs].tolist()
        qids = self.qids
        return [Triple(qids[a], b, c, d, e) for a, b, c, d, e in zip(q.tolist(), pos, neg, ps, ns)]

    # ---------------------------------------------------------------------------------- bins

    def binning(self, h: int = DEFAULT_BINS) -> Binning:
        """The h equal-width margin bins of every query with >= 2 pairs (cached per h).

        Exactly the reference's ``np.digitize(m, np.arange(min, max, w)) - 1`` with
        ``w = (max - min) / h``, vectorised over all queries. ``np.arange`` builds its values as
        ``min + k * d`` with ``d = (min + w) - min`` (not ``w``: the two differ in the last bit for
        many real score sets, and a margin lying exactly on an edge then changes bin), so that is
        what we build (the tests compare with ``np.arange`` / ``np.digitize`` directly). Two
        guards the reference lacks:

        * All margins equal (w = 0): ``np.arange`` raises (ZeroDivisionError in numpy 2, ValueError
          in older numpy) and the reference crashes at load. We put all the query's pairs in bin 0,
          its single non-empty bin, so the bin choice is trivially uniform and the pair is uniform
          over the query's pairs.
        * ``np.arange`` returns ``ceil((max - min) / w)`` values, which rounding can make h + 1
          (it happens, e.g. with h = 7 on one-decimal scores; the tests hit it); when that extra
          edge is <= max the reference appends to bin h of its h-entry list and crashes. We use
          the first h edges, so the max is always in bin h-1 (the closed last bin
          ``[min + (h-1)w, max]``) and every pair is in exactly one bin 0..h-1.

        As in the reference, a range of a few ulps of ``min`` (two rounded scores
        whose differences are 0.19999999999999998 and 0.2) collapses the edges onto ``min`` and
        puts every pair in bin h-1: one non-empty bin, so again a pair uniform over the query's.
        """
        h = _check_int(h, "bins", 1, where="sampler.bins")
        if h in self._binnings:
            return self._binnings[h]
        nq = self.n_queries
        m = self.margins
        eligible = self.counts >= 2
        qmin = np.full(nq, np.inf)
        qmax = np.full(nq, -np.inf)
        np.minimum.at(qmin, self.pair_query, m)
        np.maximum.at(qmax, self.pair_query, m)
        with np.errstate(invalid="ignore", over="ignore"):
            w = (qmax - qmin) / h
            d = (qmin + w) - qmin  # np.arange's step, as its fill computes it
        if not np.isfinite(w[eligible]).all():
            q = self.qids[int(np.flatnonzero(eligible & ~np.isfinite(w))[0])]
            raise IrflowError(f"query {q!r}: the range of its teacher margins overflows a float64", where="sampler")
        constant = eligible & (w == 0)
        pm, pd = qmin[self.pair_query], d[self.pair_query]
        first = (qmin + w)[self.pair_query]  # np.arange's second value is computed as min + w
        count = np.zeros(len(m), dtype=np.int64)  # edges <= m, i.e. np.digitize(m, edges)
        for k in range(h):
            edge = pm if k == 0 else first if k == 1 else pm + k * pd
            count += m >= edge
        pair_bin = count - 1  # in 0..h-1: m >= min = edge 0, and there are only h edges
        pair_bin[constant[self.pair_query]] = 0
        pair_bin[~eligible[self.pair_query]] = -1

        keep = np.flatnonzero(pair_bin >= 0)
        key = self.pair_query[keep] * h + pair_bin[keep]
        srt = np.argsort(key, kind="stable")
        order = keep[srt]
        keys, bin_start, bin_size = np.unique(key[srt], return_index=True, return_counts=True)
        bin_query = keys // h
        q_bin_count = np.bincount(bin_query, minlength=nq).astype(np.int64)
        q_bin_ptr = np.concatenate(([0], np.cumsum(q_bin_count)[:-1])).astype(np.int64)
        b = Binning(h, pair_bin, order, bin_start.astype(np.int64), bin_size.astype(np.int64),
                    (keys % h).astype(np.int64), q_bin_ptr, q_bin_count, eligible, constant)
        self._binnings[h] = b
        return b


# ------------------------------------------------------------------------------------ clusters


class _Clusters:
    """Clusters restricted to usable queries: sorted by cluster id, members sorted by qid."""

    def __init__(self, pool: PairPool, clusters: Mapping[str, int] | None, usable: np.ndarray, what: str):
        if clusters is None:
            raise IrflowError(f"sampler {what!r} needs query clusters (qid -> cluster id)", where="sampler")
        if not isinstance(clusters, Mapping):
            raise IrflowError(f"clusters must map qid -> cluster id, got {type(clusters).__name__}",
                              where="sampler")
        groups: dict[int, list[str]] = {}
        unknown = 0
        for qid, cid in clusters.items():
            if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
                raise IrflowError(f"query {qid!r}: cluster id {cid!r} is not an integer", where="sampler")
            qi = pool.query_index.get(qid)
            if qi is None:
                unknown += 1
            elif usable[qi]:
                groups.setdefault(int(cid), []).append(qid)
        in_clusters = {q for q in clusters}
        self.unclustered_queries = sum(1 for i, q in enumerate(pool.qids) if usable[i] and q not in in_clusters)
        self.unknown_queries = unknown  # in the cluster mapping but not in the pair pool
        if not groups:
            raise IrflowError(
                f"no usable query: none of the {int(usable.sum())} pair-pool queries usable by {what!r} "
                f"is among the {len(clusters)} clustered queries", where="sampler")
        self.ids = np.array(sorted(groups), dtype=np.int64)
        members = [sorted(groups[c]) for c in self.ids.tolist()]
        self.size = np.array([len(c) for c in members], dtype=np.int64)
        self.start = np.concatenate(([0], np.cumsum(self.size)[:-1])).astype(np.int64)
        self.members = np.array([pool.query_index[q] for c in members for q in c], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def queries_of(self, cluster_id: int) -> list[int]:
        j = int(np.searchsorted(self.ids, cluster_id))
        if j >= len(self.ids) or self.ids[j] != cluster_id:
            return []
        return self.members[self.start[j]: self.start[j] + self.size[j]].tolist()


# ------------------------------------------------------------------------------------ samplers


class RandomSampler:
    """b triples uniform over all pairs (with replacement across and within batches)."""

    name = "random"

    def __init__(self, pool: PairPool, batch_size: int):
        _check_pool(pool)
        self.pool = pool
        self.batch_size = _check_int(batch_size, "batch_size", 1, where="sampler.batch_size")

    def sample(self, rng: np.random.Generator) -> Sample:
        pairs = rng.integers(0, len(self.pool), size=self.batch_size)
        return Sample(pairs, self.pool.pair_query[pairs])

    def batch(self, rng: np.random.Generator) -> list[Triple]:
        return self.pool.triples(self.sample(rng).pairs)

    def summary(self) -> dict:
        return {"sampler": self.name, "pairs": len(self.pool), "queries": self.pool.n_queries,
                "batch_size": self.batch_size}


class TASSampler:
    """Topic-aware sampling: queries from ``clusters_per_batch`` clusters, a pair uniform per query.

    ``n_q = batch_size // clusters_per_batch`` (the reference's ``int(b / n)``). Until the batch
    holds ``batch_size`` triples: draw a cluster uniformly *with replacement* (so a cluster, and
    hence a query, can appear twice in a batch, as in the reference); take ``n_q`` of its queries
    without replacement in random order, or, if the cluster has at most ``n_q`` queries, all of
    them in stored (qid) order; the batch is cut at exactly ``batch_size``. When ``n`` does not
    divide ``b`` there are ``ceil(b / n_q)`` draws, the last one partial (reference behaviour).
    Usable queries are those of the pool that are in the cluster mapping.
    """

    name = "tas"

    def __init__(self, pool: PairPool, clusters: Mapping[str, int] | None, batch_size: int,
                 clusters_per_batch: int = 1):
        _check_pool(pool)
        self.pool = pool
        self.batch_size = _check_int(batch_size, "batch_size", 1, where="sampler.batch_size")
        self.clusters_per_batch = _check_int(clusters_per_batch, "clusters_per_batch", 1, self.batch_size,
                                             where="sampler.clusters_per_batch")
        self.n_q = self.batch_size // self.clusters_per_batch
        self.clusters = _Clusters(pool, clusters, self._usable(), self.name)
        self.dropped_queries: tuple[str, ...] = ()

    def _usable(self) -> np.ndarray:
        return np.ones(self.pool.n_queries, dtype=bool)

    def _queries(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b, nq, cl = self.batch_size, self.n_q, self.clusters
        parts, cids, takes = [], [], []
        filled = 0
        while filled < b:
            c = int(rng.integers(len(cl)))
            size, start = int(cl.size[c]), int(cl.start[c])
            if nq < size:
                qs = cl.members[start + rng.choice(size, nq, replace=False)]
            else:
                qs = cl.members[start: start + size]
            take = min(len(qs), b - filled)
            parts.append(qs[:take])
            cids.append(c)
            takes.append(take)
            filled += take
        queries = np.concatenate(parts)
        clusters = np.repeat(cl.ids[cids], takes)
        draws = np.repeat(np.arange(len(takes)), takes)
        return queries, clusters, draws

    def _pairs(self, queries: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.pool
        return p.starts[queries] + rng.integers(0, p.counts[queries])

    def sample(self, rng: np.random.Generator) -> Sample:
        queries, clusters, draws = self._queries(rng)
        return Sample(self._pairs(queries, rng), queries, clusters, draws)

    def batch(self, rng: np.random.Generator) -> list[Triple]:
        return self.pool.triples(self.sample(rng).pairs)

    def summary(self) -> dict:
        cl = self.clusters
        return {"sampler": self.name, "pairs": len(self.pool), "queries": self.pool.n_queries,
                "usable_queries": int(cl.size.sum()), "clusters": len(cl),
                "dropped_queries": len(self.dropped_queries), "unclustered_queries": cl.unclustered_queries,
                "unknown_clustered_queries": cl.unknown_queries, "batch_size": self.batch_size,
                "clusters_per_batch": self.clusters_per_batch}


class TASBalancedSampler(TASSampler):
    """TAS query selection; the pair is balanced over the query's margin bins.

    The pair: a bin uniform over the query's *non-empty* bins (the reference redraws a uniform
    bin until it is non-empty: same distribution, no loop), then a pair uniform in the bin. Bins
    are :meth:`PairPool.binning` (``bins`` equal-width bins of the query's own margin range, not
    quantiles). Queries with fewer than two pairs are dropped, as the reference does for its
    bins strategy; their qids are in ``dropped_queries`` (sorted).
    """

    name = "tas-balanced"

    def __init__(self, pool: PairPool, clusters: Mapping[str, int] | None, batch_size: int,
                 clusters_per_batch: int = 1, bins: int = DEFAULT_BINS):
        _check_pool(pool)
        self.binned = pool.binning(bins)
        self.h = self.binned.h
        super().__init__(pool, clusters, batch_size, clusters_per_batch)
        self.dropped_queries = tuple(sorted(q for q, ok in zip(pool.qids, self.binned.eligible.tolist())
                                            if not ok))

    def _usable(self) -> np.ndarray:
        return self.binned.eligible

    def _pairs(self, queries: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bn = self.binned
        j = bn.q_bin_ptr[queries] + rng.integers(0, bn.q_bin_count[queries])
        return bn.order[bn.bin_start[j] + rng.integers(0, bn.bin_size[j])]

    def summary(self) -> dict:
        s = super().summary()
        s["bins"] = self.h
        return s

    def bin_draws(self, seed: int, steps: int, accum: int = 1) -> list[int]:
        """How often each margin bin (0 = smallest margins) was drawn in ``steps`` training steps.

        A step's batches are a pure function of (seed, step) (:func:`irflow.train.loop.step_rng`),
        so they are drawn again here instead of being counted while training: the counts then
        hold for a resumed run too, and the loop stays unaware of samplers.
        """
        from .loop import step_rng

        counts = np.zeros(self.h, dtype=np.int64)
        pair_bin = self.binned.pair_bin
        for step in range(steps):
            rng = step_rng(seed, step)
            for _ in range(accum):
                b = pair_bin[self.sample(rng).pairs]
                counts += np.bincount(b[b >= 0], minlength=self.h)[: self.h]
        return counts.tolist()


def make_sampler(name: str, pool: PairPool, clusters: Mapping[str, int] | None, batch_size: int,
                 clusters_per_batch: int = 1, bins: int = DEFAULT_BINS):
    """The sampler called ``name`` (``random`` | ``tas`` | ``tas-balanced``); ``random`` ignores clusters."""
    if name == "random":
        return RandomSampler(pool, batch_size)
    if name == "tas":
        return TASSampler(pool, clusters, batch_size, clusters_per_batch)
    if name == "tas-balanced":
        return TASBalancedSampler(pool, clusters, batch_size, clusters_per_batch, bins)
    raise IrflowError(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLERS)}", where="sampler")


# ---------------------------------------------------------------------------------- prefetcher


class Prefetcher:
    """Computes ``fn(step)`` for ``start_step, start_step + 1, ...`` in a daemon thread, ``depth`` ahead.

    ``get(step)`` returns ``fn(step)``; steps must be asked for in order from ``start_step``
    (resuming at step k is ``Prefetcher(fn, k, stop)``). Results are those of calling ``fn``
    directly as long as ``fn(step)`` depends only on ``step`` (a batch from
    ``default_rng([seed, step])``), which is what keeps prefetching deterministic. An exception in
    ``fn`` is re-raised by the ``get`` of that step (and any later one); the thread stops there.
    ``stop_step`` None means no end. Use as a context manager or call :meth:`close`.
    """

    _POLL = 0.05

    def __init__(self, fn: Callable[[int], Any], start_step: int, stop_step: int | None = None, depth: int = 4):
        self.fn = fn
        self.start_step = _check_int(start_step, "start_step", 0, where="prefetcher")
        self.stop_step = (None if stop_step is None
                          else _check_int(stop_step, "stop_step", self.start_step, where="prefetcher"))
        depth = _check_int(depth, "depth", 1, where="prefetcher")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._next = self.start_step
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="irflow-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=self._POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        step = self.start_step
        while not self._stop.is_set() and (self.stop_step is None or step < self.stop_step):
            try:
                value = self.fn(step)
            except BaseException as e:  # handed to the consumer, re-raised by get()
                self._put((step, None, e))
                return
            if not self._put((step, value, None)):
                return
            step += 1

    def get(self, step: int) -> Any:
        if self._error is not None:
            raise self._error
        if step != self._next:
            raise ValueError(f"prefetcher: asked for step {step}, expected step {self._next} (steps come in order)")
        if self.stop_step is not None and step >= self.stop_step:
            raise ValueError(f"prefetcher: step {step} is past stop_step {self.stop_step}")
        if self._stop.is_set():
            raise RuntimeError("prefetcher is closed")
        while True:
            try:
                got, value, error = self._queue.get(timeout=self._POLL)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError(f"prefetcher thread ended before step {step}") from None
        assert got == step, (got, step)
        if error is not None:
            self._error = error
            raise error
        self._next = step + 1
        return value

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=max(1.0, 10 * self._POLL))

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
