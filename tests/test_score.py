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


def test_doc_texts_index_only_the_ids_asked_for_by_scanning_the_corpus(tmp_path, monkeypatch):
    """DocTexts finds the rows of the ids a step needs by a slice-wise scan of the mapped id column
    (no index over the corpus); order, missing ids and multi-chunk columns as a dict would give."""
    import pyarrow as pa

    from irflow.data import arrow
    from irflow.errors import IrflowError
    from irflow.rerank import DocTexts

    ids = [f"d{i}" for i in range(1000)]
    table = pa.Table.from_batches([pa.record_batch({"id": ids[a:a + 300], "text": [f"text {i}" for i in
                                                                                  range(a, min(a + 300, 1000))]})
                                   for a in range(0, 1000, 300)])  # a column of 4 chunks
    with pa.OSFile(str(tmp_path / arrow.TEXTS), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    monkeypatch.setattr(DocTexts, "SCAN_ROWS", 7)  # many slices per chunk
    monkeypatch.setattr(DocTexts, "RELEASE_BYTES", 1)  # pages released after every chunk gathered
    full = DocTexts(tmp_path)
    assert len(full) == 1000 and full["d999"] == "text 999"
    want = ["d998", "d3", "d301", "d3", "d650"]
    sub = DocTexts(tmp_path, ids=want)
    assert sorted(sub) == ["d3", "d301", "d650", "d998"]  # only what was asked for
    assert sub.texts(want) == [f"text {i}" for i in (998, 3, 301, 3, 650)]
    assert [sub[d] for d in want] == [full[d] for d in want]
    assert dict(full.subset(["d7", "d900"]).items()) == {"d7": "text 7", "d900": "text 900"}
    assert len(full.subset([])) == 0
    with pytest.raises(IrflowError, match="'nope' is not in the corpus"):
        DocTexts(tmp_path, ids=["d1", "nope"])["nope"]
    with pytest.raises(IrflowError, match="'nope' is not in the corpus"):
        sub.texts(["d3", "nope"])


def test_example_table_builds_each_query_as_the_lists_and_dicts_did(scoring_inputs):
    """ExampleTable (Arrow columns) gives, one query at a time, the Example a list of Python objects
    held; a teacher replaces an example's own scores where it has the query; counts and doc ids are
    computed over the columns."""
    from irflow.preprocess import load_examples
    from irflow.train.examples import Example, ExampleTable, TeacherScores

    s = scoring_inputs
    rows = pq.read_table(s["examples"] / "examples.parquet").to_pylist()
    table = load_examples(s["examples"], "train")
    want = [r for r in rows if r["part"] == "train"]
    assert len(table) == len(want) > 5
    for ex, r in zip(table, want):
        assert (ex.qid, ex.positives, ex.negatives) == (r["qid"], r["positives"], r["negatives"])
        assert ex.teacher == (dict(zip(r["teacher_docs"], r["teacher_scores"])) or None)
    assert table[-1].qid == want[-1]["qid"] and table[2].qid == want[2]["qid"]
    teacher_dir = s["root"] / _score(s, s["root"] / "s1").stdout.strip()
    t = TeacherScores.read(teacher_dir)
    scores = pq.read_table(teacher_dir / "teacher.parquet").to_pylist()
    with_t = table.with_teacher(t)
    for ex in with_t:
        assert ex.teacher == {r["doc_id"]: r["score"] for r in scores if r["qid"] == ex.qid}
    n = with_t.counts()
    assert n["teacher"].tolist() == [t.count(q) for q in with_t.qids]
    assert n["positives"].tolist() == [len(r["positives"]) for r in want]
    names = {d for r in want for c in ("positives", "negatives", "teacher_docs", "judged_docs") for d in r[c]}
    names |= {r["doc_id"] for r in scores}
    assert sorted(with_t.doc_ids().to_pylist()) == sorted(names)
    mine = [Example("q1", ["a"], ["b", "c"], {"a": 1.0, "b": 0.5}, {"a": 2}), Example("q2", [], ["d"])]
    assert list(ExampleTable.of(mine)) == [mine[0], Example("q2", [], ["d"], None, None)]
    assert list(ExampleTable.of(mine).select([1])) == [Example("q2", [], ["d"])]
