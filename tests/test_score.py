"""Teacher scoring streams in chunks: a killed job resumes after its last finished chunk and ends
with exactly the scores of an uninterrupted run; the pairs are those the examples name."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from conftest import irflow


@pytest.fixture(scope="module")
def scoring_inputs(tiny_store, tiny_bert):
    first = tiny_store.tiny_first_stage(k=20)
    examples = tiny_store("preprocess", "--qrels", "synthetic:tiny", "--queries", first["queries"], "--run",
                          first["bm25"], "--test-size", "0.3", "--min-grade", 2, "--depth", 20)
    return {"root": tiny_store.root, "env": tiny_store.env, "queries": first["queries"], "docs": first["docs"],
            "examples": examples, "model": tiny_bert}


def _score(s, store, *extra, check=True):
    args = ["score", "--model", s["model"], "--examples", s["examples"], "--queries", s["queries"],
            "--docs", s["docs"], "--depth", 15, "--max-length", 48, "--precision", "fp32", "--threads", 1,
            "--chunk", 40, "--store", store, *extra]
    return irflow(args, s["env"], s["root"], check=check)


def test_killed_scoring_resumes_from_its_last_chunk_with_the_same_scores(scoring_inputs):
    s = scoring_inputs
    whole = _score(s, s["root"] / "s1")
    a = pq.read_table(s["root"] / whole.stdout.strip() / "teacher.parquet")

    killed = _score(s, s["root"] / "s2", "--stop-after", 2, check=False)
    assert killed.returncode != 0
    partial = [p for p in (s["root"] / "s2" / "score").iterdir() if p.name.startswith(".partial-")]
    assert len(partial) == 1 and len(list(partial[0].glob("m0-c*.arrow"))) == 2
    assert not list((s["root"] / "s2" / "score").glob("*/manifest.json")), "a killed run published"

    resumed = _score(s, s["root"] / "s2", "--stop-after", 1000)
    b = pq.read_table(s["root"] / resumed.stdout.strip() / "teacher.parquet")
    assert resumed.stdout.strip() == whole.stdout.strip().replace("/s1/", "/s2/")
    assert a.num_rows > 80 and a.equals(b)
    assert not partial[0].exists(), "finished chunks are removed once the artifact is published"


def test_pairs_are_the_examples_candidates_each_once(scoring_inputs):
    s = scoring_inputs
    t = pq.read_table(s["root"] / _score(s, s["root"] / "s1").stdout.strip() / "teacher.parquet").to_pydict()
    ex = pq.read_table(s["examples"] / "examples.parquet").to_pylist()
    expected = {(r["qid"], d) for r in ex for d in r["positives"] + r["negatives"][:15]}
    got = list(zip(t["qid"], t["doc_id"]))
    assert len(got) == len(set(got)) and set(got) == expected
