"""Dense search over per-shard indexes (one in memory at a time, top k merged) gives the run that one
index over all shards gives: exact inner products are comparable across shards."""

from __future__ import annotations

from conftest import irflow


def test_per_shard_indexes_give_the_single_index_run(tmp_path, env, tiny_bert):
    store = tmp_path / "store"

    def run(*args):
        return tmp_path / irflow([*args, "--store", store], env, tmp_path).stdout.strip()

    docs = run("prepare", "--dataset", "synthetic:tiny", "--tokenizer", tiny_bert, "--max-length", 48)
    queries = run("prepare", "--dataset", "synthetic:tiny", "--kind", "queries")
    shards = [run("encode", "--prepared", docs, "--model", tiny_bert, "--precision", "fp32", "--shard", i,
                  "--num-shards", 3) for i in range(3)]
    whole = run("index", "faiss", *[a for s in shards for a in ("--shard", s)])
    parts = [run("index", "faiss", "--shard", s) for s in shards]
    one = run("search", "--index", whole, "--queries", queries, "--k", 25, "--precision", "fp32")
    merged = run("search", *[a for p in parts for a in ("--index", p)], "--queries", queries, "--k", 25,
                 "--precision", "fp32")
    a, b = (one / "run.trec").read_text().splitlines(), (merged / "run.trec").read_text().splitlines()
    assert len(a) > 100 and len(a) == len(b)
    assert [line.split()[:4] for line in a] == [line.split()[:4] for line in b]  # same docs, same ranks
    for x, y in zip(a, b):
        assert abs(float(x.split()[4]) - float(y.split()[4])) < 1e-5


def test_indexes_of_different_encoders_are_not_merged(tmp_path, env, tiny_bert):
    store = tmp_path / "store"

    def run(*args, check=True):
        return irflow([*args, "--store", store], env, tmp_path, check=check)

    docs = tmp_path / run("prepare", "--dataset", "synthetic:tiny", "--tokenizer", tiny_bert, "--max-length",
                          48).stdout.strip()
    queries = tmp_path / run("prepare", "--dataset", "synthetic:tiny", "--kind", "queries").stdout.strip()
    idx = []
    for pooling in ("mean", "cls"):
        enc = tmp_path / run("encode", "--prepared", docs, "--model", tiny_bert, "--pooling", pooling,
                             "--precision", "fp32").stdout.strip()
        idx.append(tmp_path / run("index", "faiss", "--shard", enc).stdout.strip())
    r = run("search", "--index", idx[0], "--index", idx[1], "--queries", queries, check=False)
    assert r.returncode == 2 and "different models" in r.stderr, r.stderr
