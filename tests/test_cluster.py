"""Query clustering for topic-aware sampling: faiss k-means behaves, and ``irflow cluster`` clusters
exactly the training queries, is keyed and guarded like every step, and rejects bad input."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import irflow
from irflow.cluster import CLUSTERS, ClusterParams, cluster_sizes_stats, kmeans_assign, train_query_ids
from irflow.errors import IrflowError


def _blobs(k=5, per=40, d=16, noise=0.05, seed=0):
    """``k`` tight groups of unit vectors around orthonormal centres, and each vector's group."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(d, d)))[0][:k]
    labels = np.repeat(np.arange(k), per)
    x = centres[labels] + noise * rng.normal(size=(k * per, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def _same_partition(a, b) -> bool:
    """Equal up to relabelling: the label pairs form a bijection."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("spherical", [True, False])
def test_kmeans_recovers_well_separated_groups(spherical):
    # Lloyd's algorithm from a random start can merge two groups (a local optimum, as in the
    # reference); the seeds are fixed, and the result is deterministic, so this checks faiss is
    # driven correctly rather than that k-means is always globally optimal.
    x, labels = _blobs()
    assignment, k_used, centroids = kmeans_assign(x, 5, spherical=spherical)
    assert assignment.dtype == np.int64 and assignment.shape == (len(x),)
    assert k_used == 5 and centroids.shape == (5, x.shape[1])
    assert _same_partition(assignment, labels)
    if spherical:
        assert np.allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)


def test_spherical_assignment_is_argmax_inner_product():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 8)).astype(np.float32)  # not normalised: the assignment is by inner product
    assignment, k_used, centroids = kmeans_assign(x, 7, niter=5, seed=11)
    scores = x @ centroids.T
    assert np.allclose(scores[np.arange(len(x)), assignment], scores.max(1), atol=1e-5)
    assert (assignment == scores.argmax(1)).mean() > 0.99  # exact ties aside
    # (with unit centroids this is also the L2-nearest centroid; without --spherical it must be L2)
    a2, _, c2 = kmeans_assign(x, 7, niter=5, seed=11, spherical=False)
    d2 = ((x[:, None, :] - c2[None]) ** 2).sum(-1)
    assert np.allclose(d2[np.arange(len(x)), a2], d2.min(1), atol=1e-4)


def test_deterministic_for_a_fixed_seed():
    x, _ = _blobs(k=6, per=30, noise=0.3, seed=4)
    a1, _, c1 = kmeans_assign(x, 6, seed=99)
    a2, _, c2 = kmeans_assign(x, 6, seed=99)
    assert np.array_equal(a1, a2) and np.array_equal(c1, c2)
    _, _, c3 = kmeans_assign(x, 6, seed=100)
    assert not np.array_equal(c1, c3)  # the seed is used


def test_k_above_n_is_clamped_with_a_warning(caplog):
    x, _ = _blobs(k=2, per=3)
    with caplog.at_level(logging.WARNING, logger="irflow"):
        assignment, k_used, centroids = kmeans_assign(x, 10)
    assert k_used == 6 and centroids.shape[0] == 6
    assert sorted(assignment.tolist()) == list(range(6))  # every point is its own centroid
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("requested 10" in m and "to 6" in m for m in msgs), msgs


def test_bad_k_and_empty_input():
    x, _ = _blobs(k=2, per=3)
    with pytest.raises(IrflowError, match="k must be at least 1"):
        kmeans_assign(x, 0)
    with pytest.raises(IrflowError, match="no vectors"):
        kmeans_assign(np.zeros((0, 4), np.float32), 2)


def test_cluster_sizes_stats():
    s = cluster_sizes_stats(np.array([0, 0, 0, 2, 2, 4]), 6)
    assert s == {"k": 6, "non_empty": 3, "empty": 3, "min_size": 0, "max_size": 3, "mean_size": 1.0,
                 "median_size": 0.5}  # sizes 3,0,2,0,1,0


def test_key_covers_every_output_changing_parameter():
    base = ClusterParams(model="all-MiniLM-L6-v2")
    assert set(base.key_params()["model"]) == {"dir_sha256"}  # the packaged copy, by content
    for change in [dict(pooling="cls"), dict(normalize=False), dict(max_length=31), dict(k=7), dict(niter=3),
                   dict(seed=1), dict(spherical=False), dict(precision="fp32"), dict(model="other/model@" + "0" * 40)]:
        assert ClusterParams(**{**base.model_dump(), **change}).key_params() != base.key_params(), change


def test_examples_without_training_queries_are_an_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"part": ["valid", "valid"], "qid": ["q1", "q2"]}), tmp_path / "examples.parquet")
    with pytest.raises(IrflowError, match="no training queries"):
        train_query_ids(tmp_path)


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_bert):
    """Queries (texts only, and tokenised by tiny_bert at 30) and examples of the tiny collection.

    The training source is a hand-written run file, so no index or search is needed.
    """
    from irflow.data.synthetic import generate

    root = tmp_path_factory.mktemp("cluster")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               IRFLOW_GPU_LOCK_DIR=str(root / "gpu-locks"), OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    store = root / "store"

    def run(*args):
        return root / irflow([*args, "--store", store], env, root).stdout.strip()

    coll = generate("tiny")
    docs = [d for d, _ in coll.docs[:10]]
    (root / "run.trec").write_text("".join(f"{q} Q0 {d} {r + 1} {10 - r} hand\n"
                                           for q, _ in coll.queries for r, d in enumerate(docs)))
    queries = run("prepare", "--dataset", "synthetic:tiny", "--kind", "queries")
    tokenised = run("prepare", "--dataset", "synthetic:tiny", "--kind", "queries", "--tokenizer", tiny_bert,
                    "--max-length", 30)
    examples = run("preprocess", "--qrels", "synthetic:tiny", "--queries", queries, "--run-file", root / "run.trec",
                   "--test-size", "0.3", "--valid-size", "0.2")
    return {"root": root, "env": env, "store": store, "queries": queries, "tokenised": tokenised,
            "examples": examples, "all_qids": [q for q, _ in coll.queries]}


def _cluster(inp, model, *extra, check=True):
    args = ["cluster", "--examples", inp["examples"], "--queries", inp["queries"], "--model", model, "--k", 3,
            "--precision", "fp32", "--threads", 1, "--store", inp["store"], *extra]
    return irflow(args, inp["env"], inp["root"], check=check)


def test_cli_clusters_exactly_the_training_queries_and_reruns_free(inputs, tiny_bert):
    import pyarrow.parquet as pq

    from irflow.cluster import cluster_queries
    from irflow.data.split import assign

    r = _cluster(inputs, tiny_bert)
    art = inputs["root"] / r.stdout.strip()
    assert art.parent.name == "cluster" and sorted(p.name for p in art.iterdir()) == [CLUSTERS, "manifest.json"]

    t = pq.read_table(art / CLUSTERS)
    assert str(t.schema.field("qid").type) == "string" and str(t.schema.field("cluster").type) == "int32"
    ex = pq.read_table(inputs["examples"] / "examples.parquet").to_pydict()
    train = [q for p, q in zip(ex["part"], ex["qid"]) if p == "train"]
    valid = {q for p, q in zip(ex["part"], ex["qid"]) if p == "valid"}
    test = {q for q, p in assign(inputs["all_qids"], seed=42, test=0.3, valid=0.2).items() if p == "test"}
    qids = t.column("qid").to_pylist()
    assert len(train) >= 6 and valid and test
    assert qids == train and not set(qids) & (valid | test)
    clusters = np.array(t.column("cluster").to_pylist())
    assert clusters.min() >= 0 and clusters.max() < 3

    m = json.loads((art / "manifest.json").read_text())
    assert m["params"]["k"] == 3 and m["params"]["niter"] == 10 and m["params"]["seed"] == 1234
    assert m["params"]["spherical"] is True and m["params"]["max_length"] == 30 and m["seed"] == 1234
    assert set(m["inputs"]) == {"examples", "queries"}
    s = m["stats"]
    assert s["queries"] == len(train) and s["k_requested"] == 3 and s["tokens_from"] == "tokenizer"
    assert s["clusters"] == cluster_sizes_stats(clusters, 3)
    assert s["warnings"]  # 39 queries per cluster are advised; the tiny collection has fewer

    # a complete artifact does no work: same path, manifest untouched
    before = (art / "manifest.json").stat().st_mtime_ns
    again = _cluster(inputs, tiny_bert)
    assert again.stdout.strip() == r.stdout.strip()
    assert (art / "manifest.json").stat().st_mtime_ns == before
    assert [p.name for p in (inputs["store"] / "cluster").iterdir()] == [art.name]

    # prepared token ids of the same tokenizer and length give the very same clusters
    out = inputs["root"] / "inproc"
    out.mkdir()
    p = ClusterParams(model=str(tiny_bert), k=3)
    stats = cluster_queries(p, inputs["examples"], inputs["tokenised"], out, progress=False)
    assert stats["tokens_from"] == "prepared"
    assert pq.read_table(out / CLUSTERS).equals(t)


def test_cli_bad_inputs_write_nothing(inputs, tiny_bert):
    cluster_dir = inputs["store"] / "cluster"

    def listing():
        return sorted(p.name for p in cluster_dir.iterdir()) if cluster_dir.is_dir() else []

    before = listing()
    r = _cluster(inputs, tiny_bert, "--k", 0, check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert [line for line in r.stderr.splitlines() if line.strip()] == [
        "irflow cluster: error: --k: Input should be greater than or equal to 1, got 0"]

    wrong = cluster_dir / "0000000000000000"
    r = _cluster(inputs, tiny_bert, "--k", 4, "--out", wrong, check=False)
    assert r.returncode == 2 and r.stdout == "" and "disagree" in r.stderr
    assert listing() == before
