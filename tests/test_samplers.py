"""Statistical and structural tests of the random / TAS / TAS-Balanced samplers and the prefetcher.

Every batch comes from ``np.random.default_rng([seed, step])``, as in the training loop, so the
p-values below are fixed numbers: the tests are deterministic, yet each would fail for a sampler
with the wrong distribution (e.g. TAS-Balanced drawing bins in proportion to their size, which is
what plain TAS does).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.stats import chisquare

from irflow.errors import IrflowError
from irflow.train.samplers import (PairPool, Prefetcher, RandomSampler, TASBalancedSampler, TASSampler, Triple,
                                   make_sampler)

N_BATCHES = 10_000


def rng_at(step: int, seed: int = 13) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def make_pool(sizes: dict[str, int], seed: int = 0, decimals: int | None = None, bins: int = 10) -> PairPool:
    r = np.random.default_rng(seed)
    qids, pos, neg, ps, ns = [], [], [], [], []
    for q, n in sizes.items():
        for i in range(n):
            qids.append(q)
            pos.append(f"{q}-p{i}")
            neg.append(f"{q}-n{i}")
            a, b = float(r.normal() * 3), float(r.normal() * 3)
            if decimals is not None:
                a, b = round(a, decimals), round(b, decimals)
            ps.append(a)
            ns.append(b)
    return PairPool.from_arrays(qids, pos, neg, ps, ns, bins=bins)


def reference_bins(m: np.ndarray, h: int) -> np.ndarray:
    """The reference loader's binning, verbatim."""
    return np.digitize(m, np.arange(np.min(m), np.max(m), (np.max(m) - np.min(m)) / h)) - 1


def clustered_world(n_clusters=40, seed=3):
    """Clusters of 33..44 queries: all larger than b // n for b = 32 and any n >= 1."""
    r = np.random.default_rng(seed)
    sizes, clusters = {}, {}
    for c in range(n_clusters):
        for j in range(int(r.integers(33, 45))):
            q = f"c{c}q{j}"
            sizes[q] = int(r.integers(2, 6))
            clusters[q] = c * 7  # non-contiguous ids
    return make_pool(sizes, seed=seed), clusters


# ------------------------------------------------------------------------------------------ bins


@pytest.mark.parametrize("h", [10, 3, 7])
def test_bins_equal_the_reference_numpy_computation(h):
    r = np.random.default_rng(h)
    sizes = {f"q{i}": int(r.integers(2, 30)) for i in range(1500)}
    # rounded scores put margins exactly on bin edges, where np.arange's last bit matters
    total_overlong = 0
    for pool in (make_pool(sizes, seed=h, bins=h), make_pool(sizes, seed=h + 1, decimals=1, bins=h)):
        b = pool.binning(h)
        checked = overlong = 0
        for qi in range(pool.n_queries):
            s, c = pool.starts[qi], pool.counts[qi]
            m = pool.margins[s:s + c]
            got = b.pair_bin[s:s + c]
            assert got.min() >= 0 and got.max() <= h - 1
            if m.min() == m.max():
                assert (got == 0).all()
                continue
            edges = np.arange(m.min(), m.max(), (m.max() - m.min()) / h)
            ref = np.digitize(m, edges) - 1
            if len(edges) > h:
                # rounding gave np.arange h + 1 values: when the extra one is <= max the reference
                # indexes bin h of its h bins (IndexError); we keep h edges, the max stays in bin h-1
                ref = np.minimum(ref, h - 1)
                overlong += 1
            np.testing.assert_array_equal(got, ref)
            assert got[np.argmax(m)] == h - 1  # max in the closed last bin
            if edges[1] > edges[0]:  # (w below half an ulp of min collapses every edge onto min)
                assert got[np.argmin(m)] == 0
            checked += 1
        assert checked > 1000
        total_overlong += overlong
        # the layout: each pair in exactly one bin, bins listed per query, only non-empty ones
        assert sorted(b.order.tolist()) == list(range(len(pool)))
        assert (b.bin_size > 0).all()
        for qi in range(0, pool.n_queries, 97):
            ptr, cnt = b.q_bin_ptr[qi], b.q_bin_count[qi]
            s, c = pool.starts[qi], pool.counts[qi]
            assert cnt == len(np.unique(b.pair_bin[s:s + c]))
            for j in range(ptr, ptr + cnt):
                members = b.order[b.bin_start[j]: b.bin_start[j] + b.bin_size[j]]
                assert (pool.pair_query[members] == qi).all()
                assert (b.pair_bin[members] == b.bin_id[j]).all()
    if h == 7:
        assert total_overlong > 0  # the case the guard exists for does occur (with h = 7 here)


def test_all_equal_margins_use_one_bin_where_the_reference_crashes():
    qids = ["flat"] * 6 + ["other"] * 3
    ps = [2.0] * 6 + [1.0, 2.0, 3.0]
    ns = [1.0] * 6 + [0.0, 0.0, 0.0]
    pool = PairPool.from_arrays(qids, [f"p{i}" for i in range(9)], [f"n{i}" for i in range(9)], ps, ns)
    with pytest.raises((ValueError, ZeroDivisionError)), np.errstate(invalid="ignore"):
        reference_bins(pool.margins[:6], 10)
    b = pool.binning()
    assert (b.pair_bin[:6] == 0).all() and b.q_bin_count[0] == 1 and bool(b.constant[0])
    s = TASBalancedSampler(pool, {"flat": 0}, batch_size=8)
    seen = np.concatenate([s.sample(rng_at(t)).pairs for t in range(N_BATCHES)])
    assert set(seen.tolist()) == set(range(6))  # every pair reachable, all of the single bin
    counts = np.bincount(seen, minlength=6)
    assert chisquare(counts).pvalue > 0.01


def test_queries_with_fewer_than_two_pairs_are_dropped_for_tas_balanced_only():
    pool = make_pool({"one": 1, "three": 3, "also-one": 1, "two": 2})
    clusters = {"one": 0, "three": 0, "also-one": 1, "two": 1}
    tb = TASBalancedSampler(pool, clusters, batch_size=4)
    assert tb.dropped_queries == ("also-one", "one")
    assert tb.summary()["dropped_queries"] == 2 and tb.summary()["usable_queries"] == 2
    assert (pool.binning().pair_bin[pool.starts[pool.query_index["one"]]] == -1)
    seen = {pool.qids[q] for t in range(300) for q in tb.sample(rng_at(t)).queries.tolist()}
    assert seen == {"three", "two"}
    tas = TASSampler(pool, clusters, batch_size=4)
    seen = {pool.qids[q] for t in range(300) for q in tas.sample(rng_at(t)).queries.tolist()}
    assert seen == {"one", "three", "also-one", "two"}  # a single pair is fine for TAS
    # only single-pair queries: nothing usable for tas-balanced
    single = make_pool({"a": 1, "b": 1})
    with pytest.raises(IrflowError, match="no usable query"):
        make_sampler("tas-balanced", single, {"a": 0, "b": 0}, 4)
    assert len(make_sampler("tas", single, {"a": 0, "b": 0}, 4).batch(rng_at(0))) == 4


# ------------------------------------------------------------------------------- query selection


@pytest.mark.parametrize("cls", [TASSampler, TASBalancedSampler])
def test_each_batch_draws_exactly_n_clusters(cls):
    pool, clusters = clustered_world()
    qcluster = np.array([clusters[q] for q in pool.qids])
    b = 32
    samplers = {n: cls(pool, clusters, b, clusters_per_batch=n) for n in (1, 2, 4, 8)}
    repeats = {1: 0, 2: 0, 4: 0, 8: 0}
    for step in range(N_BATCHES):
        n = (1, 2, 4, 8)[step % 4]
        s = samplers[n].sample(rng_at(step))
        nq = b // n
        assert len(s.pairs) == b and len(s.queries) == b
        assert (pool.pair_query[s.pairs] == s.queries).all()
        assert (qcluster[s.queries] == s.clusters).all()  # each query is from its recorded cluster
        assert (s.draws == np.repeat(np.arange(n), nq)).all()  # n draws of b // n queries each
        seg = s.clusters.reshape(n, nq)
        assert (seg == seg[:, :1]).all()
        for row in s.queries.reshape(n, nq):
            assert len(set(row.tolist())) == nq  # without replacement inside a draw
        repeats[n] += len(set(seg[:, 0].tolist())) < n
    # clusters are drawn uniformly WITH replacement (reference): the number of batches in which a
    # cluster repeats follows the birthday probability over the 40 clusters
    k = len(set(clusters.values()))
    for n, observed in repeats.items():
        p = 1 - np.prod([1 - i / k for i in range(n)])
        trials = N_BATCHES // 4
        assert abs(observed - p * trials) <= 5 * np.sqrt(trials * p * (1 - p)) + 1e-9, (n, observed, p * trials)
    assert repeats[8] > 0


def test_clusters_per_batch_not_dividing_batch_size_cuts_the_last_draw():
    pool, clusters = clustered_world(seed=5)
    s = TASSampler(pool, clusters, 32, clusters_per_batch=3)  # n_q = 10: draws of 10, 10, 10, 2
    for step in range(500):
        smp = s.sample(rng_at(step))
        assert len(smp.queries) == 32
        assert np.bincount(smp.draws).tolist() == [10, 10, 10, 2]


def test_small_cluster_contributes_all_queries_in_stored_order_then_another_fills():
    sizes = {"s2": 3, "s0": 2, "s1": 4}
    sizes.update({f"big{i:03d}": 2 for i in range(50)})
    pool = make_pool(sizes)
    clusters = {"s2": 5, "s0": 5, "s1": 5}  # inserted out of order: stored order is by qid
    clusters.update({f"big{i:03d}": 9 for i in range(50)})
    small = [pool.query_index[q] for q in ("s0", "s1", "s2")]
    # one small cluster only: the batch is its queries, in order, repeated and cut at b
    only = TASSampler(pool, {"s2": 5, "s0": 5, "s1": 5}, batch_size=8)
    for step in range(50):
        assert only.sample(rng_at(step)).queries.tolist() == (small * 3)[:8]
        assert only.sample(rng_at(step)).draws.tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    s = TASBalancedSampler(pool, clusters, batch_size=8)
    filled = 0
    for step in range(2000):
        smp = s.sample(rng_at(step))
        assert len(smp.queries) == 8
        for d in range(int(smp.draws.max()) + 1):
            qs = smp.queries[smp.draws == d].tolist()
            cid = set(smp.clusters[smp.draws == d].tolist())
            assert len(cid) == 1
            if cid == {5}:
                assert qs == small[:len(qs)]  # all of it, unshuffled (cut only at the batch end)
                if len(qs) == 3 and d < smp.draws.max():
                    filled += 1
            else:
                assert len(qs) == len(set(qs))
        first = smp.draws == 0
        if smp.clusters[0] == 5:
            assert first.sum() == 3 and smp.draws.max() >= 1
        else:
            assert first.sum() == 8 and smp.draws.max() == 0  # a big cluster fills the batch alone
    assert filled > 500  # the small cluster is drawn about half the time


# -------------------------------------------------------------------------------- distributions


def skewed_pool() -> tuple[PairPool, list[int]]:
    """One query, 1000 pairs over a margin range [0, 10] (w = 1): bins 0, 2, 5, 6, 9 non-empty."""
    r = np.random.default_rng(7)
    margins = np.concatenate([[0.0], r.uniform(0.05, 0.95, 899), r.uniform(2.05, 2.95, 60),
                              r.uniform(5.05, 5.95, 30), r.uniform(6.05, 6.95, 9), [10.0]])
    n = len(margins)
    pool = PairPool.from_arrays(["skew"] * n, [f"p{i}" for i in range(n)], [f"n{i}" for i in range(n)],
                                (margins + 1.0).tolist(), [1.0] * n)
    sizes = np.bincount(pool.binning().pair_bin, minlength=10).tolist()
    assert sizes == [900, 0, 60, 0, 0, 30, 9, 0, 0, 1]
    return pool, [0, 2, 5, 6, 9]


def bin_draws(sampler, pool) -> np.ndarray:
    pairs = np.concatenate([sampler.sample(rng_at(t)).pairs for t in range(N_BATCHES)])
    assert len(pairs) == 32 * N_BATCHES
    return pairs


def test_tas_balanced_bins_are_uniform_over_non_empty_bins_and_tas_is_not():
    pool, nonempty = skewed_pool()
    pair_bin = pool.binning().pair_bin
    pairs = bin_draws(TASBalancedSampler(pool, {"skew": 0}, 32), pool)
    freq = np.bincount(pair_bin[pairs], minlength=10)
    assert freq[[1, 3, 4, 7, 8]].sum() == 0
    assert chisquare(freq[nonempty]).pvalue > 0.01
    # uniform inside a bin: the 900 pairs of bin 0 and the 60 of bin 2
    for k, size in ((0, 900), (2, 60)):
        inside = pairs[pair_bin[pairs] == k]
        members = np.flatnonzero(pair_bin == k)
        counts = np.array([np.count_nonzero(inside == i) for i in members]) if size < 100 else \
            np.bincount(inside, minlength=len(pool))[members]
        assert counts.min() > 0 and chisquare(counts).pvalue > 0.01
    # the single max-margin pair (bin 9) is drawn a fifth of the time
    assert abs(freq[9] / len(pairs) - 0.2) < 0.01

    tas_pairs = bin_draws(TASSampler(pool, {"skew": 0}, 32), pool)
    tas_freq = np.bincount(pair_bin[tas_pairs], minlength=10)
    assert chisquare(tas_freq[nonempty]).pvalue < 1e-6  # plain TAS follows the bin sizes instead
    expected = np.array([900, 60, 30, 9, 1]) / 1000 * len(tas_pairs)
    assert chisquare(tas_freq[nonempty], expected).pvalue > 0.01
    assert chisquare(np.bincount(tas_pairs, minlength=len(pool))).pvalue > 0.01  # uniform over pairs


def test_random_sampler_is_uniform_over_all_pairs():
    pool = make_pool({"a": 1, "b": 50, "c": 7, "d": 200, "e": 42})
    s = RandomSampler(pool, 32)
    pairs = np.concatenate([s.sample(rng_at(t)).pairs for t in range(N_BATCHES)])
    counts = np.bincount(pairs, minlength=len(pool))
    assert counts.min() > 0 and chisquare(counts).pvalue > 0.01
    # uniform over pairs, so queries in proportion to their pair counts (not uniform over queries)
    qfreq = np.bincount(pool.pair_query[pairs], minlength=pool.n_queries)
    assert chisquare(qfreq, pool.counts / len(pool) * len(pairs)).pvalue > 0.01


# ---------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", ["random", "tas", "tas-balanced"])
def test_batch_is_a_pure_function_of_seed_and_step(name):
    pool, clusters = clustered_world(n_clusters=10)
    reordered = dict(reversed(list(clusters.items())))  # same clusters, another insertion order
    a = make_sampler(name, pool, clusters, 16, clusters_per_batch=2)
    b = make_sampler(name, pool, reordered if name != "random" else None, 16, clusters_per_batch=2)
    batches = [a.batch(rng_at(t)) for t in range(40)]
    assert [b.batch(rng_at(t)) for t in range(40)] == batches
    assert a.batch(rng_at(3)) == batches[3]
    assert len({tuple(x) for x in batches}) == 40  # different steps differ
    assert a.batch(rng_at(3, seed=14)) != batches[3]
    t = batches[0][0]
    assert isinstance(t, Triple)
    i = pool.query_index[t.qid]
    rows = range(pool.starts[i], pool.starts[i] + pool.counts[i])
    assert any((pool.pos_ids[r], pool.neg_ids[r], pool.pos_scores[r], pool.neg_scores[r])
               == (t.pos, t.neg, t.pos_score, t.neg_score) for r in rows)


def test_batches_from_a_100k_pair_pool_are_rows_of_the_pool():
    """At scale, every triple is one row of the pool and a TAS batch takes whole cluster draws.

    (Its speed, under 1 ms a batch, is measured by bench/bench_timings.py, not asserted here.)
    """
    r = np.random.default_rng(0)
    n = 100_000
    qids = [f"q{i % 3000}" for i in range(n)]
    pos_scores, neg_scores = r.normal(size=n), r.normal(size=n)
    pool = PairPool.from_arrays(qids, [f"p{i}" for i in range(n)], [f"n{i}" for i in range(n)],
                                pos_scores, neg_scores)
    clusters = {f"q{i}": i % 100 for i in range(3000)}
    for name in ("random", "tas", "tas-balanced"):
        s = make_sampler(name, pool, clusters, 32)
        for step in range(20):
            batch = s.batch(rng_at(step))
            assert len(batch) == 32
            for t in batch:
                i = int(t.pos[1:])
                assert (t.qid, t.neg, t.pos_score, t.neg_score) == (
                    f"q{i % 3000}", f"n{i}", pos_scores[i], neg_scores[i]), (name, t)
            if name != "random":  # clusters of 30 queries: 32 come from two draws, one after the other
                seq = [clusters[t.qid] for t in batch]
                runs = 1 + sum(a != b for a, b in zip(seq, seq[1:]))
                assert runs <= 2 and seq[:30] == [seq[0]] * 30, (name, step, seq)


# ----------------------------------------------------------------------------------- prefetcher


def test_prefetcher_matches_direct_calls_and_resumes_mid_way():
    pool, clusters = clustered_world(n_clusters=8)
    s = TASBalancedSampler(pool, clusters, 8)

    def fn(step):
        return s.batch(rng_at(step))

    with Prefetcher(fn, 0, 30, depth=3) as p:
        assert [p.get(t) for t in range(30)] == [fn(t) for t in range(30)]
        with pytest.raises(ValueError, match="past stop_step"):
            p.get(30)
    with Prefetcher(fn, 17, 30) as p:  # resume from step 17
        assert [p.get(t) for t in range(17, 30)] == [fn(t) for t in range(17, 30)]
    with Prefetcher(fn, 5, None) as p:  # open-ended
        assert p.get(5) == fn(5)
        with pytest.raises(ValueError, match="expected step 6"):
            p.get(7)


def test_prefetcher_propagates_exceptions_and_closes_a_blocked_thread():
    def fn(step):
        if step == 4:
            raise KeyError("missing doc d4")
        return step * step

    p = Prefetcher(fn, 0, 10, depth=2)
    assert [p.get(t) for t in range(4)] == [0, 1, 4, 9]
    with pytest.raises(KeyError, match="missing doc d4"):
        p.get(4)
    with pytest.raises(KeyError):
        p.get(5)
    p.close()

    started = threading.Event()

    def slow(step):
        started.set()
        return step

    p = Prefetcher(slow, 0, None, depth=1)  # producer fills the queue and blocks
    started.wait(5)
    time.sleep(0.1)
    p.close()
    assert not p._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        p.get(0)


# ------------------------------------------------------------------------------------ bad input


def test_bad_input_raises_irflow_errors():
    pool, clusters = clustered_world(n_clusters=3)
    with pytest.raises(IrflowError, match="unknown sampler 'tas-b'.*random, tas, tas-balanced"):
        make_sampler("tas-b", pool, clusters, 32)
    for name in ("random", "tas", "tas-balanced"):
        with pytest.raises(IrflowError, match="batch_size must be at least 1, got 0"):
            make_sampler(name, pool, clusters, 0)
    with pytest.raises(IrflowError, match="clusters_per_batch must be between 1 and 32, got 33"):
        make_sampler("tas", pool, clusters, 32, clusters_per_batch=33)
    with pytest.raises(IrflowError, match="clusters_per_batch must be between 1 and 32, got 0"):
        make_sampler("tas-balanced", pool, clusters, 32, clusters_per_batch=0)
    with pytest.raises(IrflowError, match="bins must be at least 1"):
        make_sampler("tas-balanced", pool, clusters, 32, bins=0)
    with pytest.raises(IrflowError, match="batch_size must be an integer"):
        make_sampler("random", pool, None, 2.5)
    with pytest.raises(IrflowError, match="needs query clusters"):
        make_sampler("tas", pool, None, 32)
    with pytest.raises(IrflowError, match="no usable query"):
        make_sampler("tas", pool, {"unknown-q": 0}, 32)
    with pytest.raises(IrflowError, match="no usable query"):
        make_sampler("tas-balanced", pool, {}, 32)
    with pytest.raises(IrflowError, match="is not an integer"):
        make_sampler("tas", pool, {pool.qids[0]: "c1"}, 32)
    with pytest.raises(IrflowError, match="no teacher-scored pairs") as e:
        PairPool.from_arrays([], [], [], [], [])
    assert e.value.where == "teacher pairs"
    with pytest.raises(IrflowError, match="differ in length"):
        PairPool.from_arrays(["q"], ["p"], ["n"], [1.0, 2.0], [0.0])
    with pytest.raises(IrflowError, match="non-finite"):
        PairPool.from_arrays(["q", "q"], ["p", "p2"], ["n", "n2"], [1.0, float("nan")], [0.0, 0.0])
    # a usable sampler still works after all that, and random ignores clusters
    assert len(make_sampler("random", pool, None, 5).batch(rng_at(0))) == 5


def test_recorded_bin_draws_are_the_bins_of_the_batches_training_drew():
    """What the trainer records (and the report plots) are the bins of exactly the pairs the training
    task drew (BiEncoderTask.local_triples, as its micro-batches do), re-drawn from (seed, step): the
    same for a resumed run as for an uninterrupted one."""
    from irflow.train.biencoder import BiEncoderTask, DenseConfig
    from irflow.train.loop import step_rng

    pool, nonempty = skewed_pool()
    pair_bin = pool.binning().pair_bin
    index = {x.pos: i for i, x in enumerate(pool.triples(np.arange(len(pool))))}  # positives are unique here
    sampler = TASBalancedSampler(pool, {"skew": 0}, 32)
    cfg = DenseConfig(objective="margin-mse", sampler=sampler.name, batch_size=32)
    task = BiEncoderTask(None, pool, sampler, {}, {}, cfg, seed=5, device="cpu")
    drawn = np.zeros(10, dtype=np.int64)
    for step in range(40):
        rng = step_rng(5, step)
        for _ in range(2):  # two micro-batches per step, from the step's one generator
            triples, sl = task.local_triples(rng)
            drawn += np.bincount(pair_bin[[index[x.pos] for x in triples[sl]]], minlength=10)
    recorded = sampler.bin_draws(5, 40, accum=2)
    assert recorded == drawn.tolist() and sum(recorded) == 40 * 2 * 32
    assert sampler.bin_draws(6, 40, accum=2) != recorded  # another seed, other draws
    assert [recorded[b] > 0 for b in range(10)] == [b in nonempty for b in range(10)]


def test_teacher_pairs_over_arrow_equal_the_per_example_loop():
    """teacher_pairs (a join and index arithmetic over Arrow columns) gives exactly the pairs, in
    the order, of the loop it replaced: per example, scored positives x scored negatives of the top
    depth; queries the teacher lacks give none; without a teacher every pair with scores 0."""
    from irflow.train.biencoder import teacher_pairs
    from irflow.train.examples import Example, TeacherScores

    r = np.random.default_rng(3)
    docs = [f"d{i}" for i in range(60)]
    examples, teacher = [], {}
    for q in range(40):
        picked = [docs[i] for i in r.permutation(60)[: r.integers(0, 25)]]
        k = int(r.integers(0, 4))
        ex = Example(f"q{q}", picked[:k], picked[k:])
        examples.append(ex)
        if q % 7 != 3:  # some queries have no teacher scores at all
            teacher[ex.qid] = {d: float(r.normal()) for d in picked if r.random() < 0.7}

    def loop(examples, teacher, depth):
        out = [], [], [], [], []
        for ex in examples:
            t = teacher.get(ex.qid, {}) if teacher is not None else None
            ps = [d for d in ex.positives if t is None or d in t]
            ns = [d for d in ex.negatives[:depth] if t is None or d in t]
            for p in ps:
                for n in ns:
                    for col, v in zip(out, (ex.qid, p, n, t[p] if t else 0.0, t[n] if t else 0.0)):
                        col.append(v)
        return out

    for t in (teacher, TeacherScores.of(teacher), None):
        for depth in (1, 5, 100):
            got = teacher_pairs(examples, t, depth)
            want = loop(examples, teacher if t is not None else None, depth)
            assert [got[i].to_pylist() for i in range(3)] == list(want[:3])
            assert got[3].tolist() == want[3] and got[4].tolist() == want[4]
            assert len(want[0]) > 0
    pool = PairPool.from_arrays(*teacher_pairs(examples, teacher, 5))
    ref = PairPool.from_arrays(*loop(examples, teacher, 5))
    assert pool.qids == ref.qids and (pool.pos_ids == ref.pos_ids).all() and (pool.neg_ids == ref.neg_ids).all()
    assert (pool.margins == ref.margins).all() and (pool.pair_query == ref.pair_query).all()
