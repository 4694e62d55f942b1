"""irflow.trec: TREC run/qrels reading and writing, ties, duplicates, and bad input."""

from __future__ import annotations

import logging
import math
import struct
from collections import namedtuple

import pytest

from irflow.errors import IrflowError
from irflow.trec import (
    dedupe_qrels,
    qid_sort_key,
    read_qrels,
    read_run,
    strictly_decreasing,
    write_run,
)


F32_BELOW_1 = 1.0 - 2.0**-24  # the largest float32 below 1.0


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _write(tmp_path, name, text: str | bytes):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


# --------------------------------------------------------------------------------------- write_run

def test_write_run_orders_breaks_ties_and_round_trips(tmp_path):
    run = {
        "q10": [("b", 1.0), ("a", 1.0), ("c", 2.0)],
        "q2": [("x", 0.5), ("y", 0.75)],
    }
    path = tmp_path / "run.trec"
    write_run(path, run, "sys1")
    lines = [l.split() for l in path.read_text().splitlines()]
    # queries in natural order, docs by (-score, doc_id), ranks from 1
    assert [(l[0], l[2], l[3]) for l in lines] == [
        ("q2", "y", "1"), ("q2", "x", "2"),
        ("q10", "c", "1"), ("q10", "a", "2"), ("q10", "b", "3"),
    ]
    assert all(l[1] == "Q0" and l[5] == "sys1" for l in lines)
    # the tie a/b (1.0, 1.0) became strictly decreasing by one ulp
    q10 = [float(l[4]) for l in lines if l[0] == "q10"]
    assert q10[0] == 2.0 and q10[1] == 1.0
    assert q10[2] == F32_BELOW_1  # one float32 ulp: trec_eval holds scores in a C float
    assert all(a > b for a, b in zip(q10, q10[1:]))
    # trec_eval re-sorts by (score desc, docno desc) and ignores the rank column: with strictly
    # decreasing scores its order is exactly the written one
    trec_eval_order = sorted((l for l in lines if l[0] == "q10"), key=lambda l: (-float(l[4]), l[2]))
    assert [l[2] for l in trec_eval_order] == ["c", "a", "b"]
    # exact round trip of the written scores
    back, stats = read_run(path)
    assert back["q10"] == [("c", 2.0), ("a", 1.0), ("b", F32_BELOW_1)]
    assert back["q2"] == [("y", 0.75), ("x", 0.5)]
    assert stats.duplicates == 0 and stats.lines == 5 and stats.queries == 2 and stats.entries == 5
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]


def test_write_run_many_ties_and_awkward_scores(tmp_path):
    run = {"q": [(f"d{i}", 0.1 + 0.2) for i in range(50)] + [("z", 1e-300), ("w", -3.5)]}
    path = tmp_path / "r.trec"
    write_run(path, run, "t")
    back, _ = read_run(path)
    scores = [s for _, s in back["q"]]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert [d for d, _ in back["q"]][:3] == ["d0", "d1", "d10"]  # tie-break by doc id (string order)
    # writing the read-back run again is byte-identical (already strictly decreasing)
    path2 = tmp_path / "r2.trec"
    write_run(path2, back, "t")
    assert path2.read_bytes() == path.read_bytes()


def test_strictly_decreasing_cascades():
    out = strictly_decreasing([("c", 1.0), ("a", 1.0), ("b", 1.0)])
    assert out == [("a", 1.0), ("b", F32_BELOW_1), ("c", 1.0 - 2.0**-23)]


def test_strictly_decreasing_in_float32_and_minimal():
    # distinct doubles that collapse to the same float32 are nudged; well-separated scores untouched
    close = [("a", 0.5), ("b", 0.5 - 1e-12), ("c", 0.25), ("d", 0.1 + 0.2), ("e", 0.30000000000000004)]
    out = strictly_decreasing(close)
    assert [d for d, _ in out] == ["a", "b", "d", "e", "c"]
    s = [x for _, x in out]
    assert all(x > y for x, y in zip(s, s[1:]))
    assert all(_f32(x) > _f32(y) for x, y in zip(s, s[1:]))
    assert s[0] == 0.5 and s[4] == 0.25 and s[2] == 0.1 + 0.2  # kept at full double precision
    assert strictly_decreasing(out) == out  # idempotent
    # scores trec_eval cannot hold
    with pytest.raises(ValueError, match="float32 range"):
        strictly_decreasing([("a", 1e39)])


def test_written_ties_are_unambiguous_for_pytrec_eval(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    qrels = {"q": {"a": 1, "b": 0, "c": 0}}
    tied = {"q": [("c", 0.7), ("b", 0.7), ("a", 0.7)]}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    # trec_eval breaks raw ties by docno descending (c, b, a) -> RR 1/3 ...
    assert ev.evaluate({"q": dict(tied["q"])})["q"]["recip_rank"] == pytest.approx(1 / 3)
    # ... and a one-ulp *double* nudge is not enough: it compares C floats
    one_ulp = {"a": 0.7, "b": math.nextafter(0.7, 0), "c": math.nextafter(math.nextafter(0.7, 0), 0)}
    assert ev.evaluate({"q": one_ulp})["q"]["recip_rank"] == pytest.approx(1 / 3)
    # the written file ranks a, b, c for trec_eval exactly as its rank column says
    path = tmp_path / "t.trec"
    write_run(path, tied, "t")
    with open(path) as f:
        parsed = pytrec_eval.parse_run(f)
    assert ev.evaluate(parsed)["q"]["recip_rank"] == 1.0


@pytest.mark.parametrize(
    "run, tag, msg",
    [
        ({"q": [("a", 1.0), ("a", 0.5)]}, "t", "appears twice"),
        ({"q": [("a", float("nan"))]}, "t", "non-finite"),
        ({"q": [("a b", 1.0)]}, "t", "whitespace"),
        ({"q": [("a", 1.0)]}, "my tag", "whitespace"),
        ({"q": [("a", 1e39)]}, "t", "float32 range"),
    ],
)
def test_write_run_rejects_bad_runs(tmp_path, run, tag, msg):
    path = tmp_path / "bad.trec"
    with pytest.raises(IrflowError, match=msg) as ei:
        write_run(path, run, tag)
    assert ei.value.where == str(path)
    assert not path.exists()


def test_qid_sort_key_natural():
    ids = ["q10", "q2", "q1", "a", "10", "9"]
    assert sorted(ids, key=qid_sort_key) == ["9", "10", "a", "q1", "q2", "q10"]


# ---------------------------------------------------------------------------------------- read_run

def test_read_run_repairs_duplicates_with_warning(tmp_path, caplog):
    p = _write(tmp_path, "dup.trec",
               "q1 Q0 d1 1 3.0 x\n"
               "q1 Q0 d2 2 2.0 x\n"
               "q1 Q0 d1 3 2.5 x\n"
               "\n"
               "q2 Q0 d1 1 1 x\n"
               "q2 Q0 d1 2 4 x\n")
    with caplog.at_level(logging.WARNING, logger="irflow"):
        run, stats = read_run(p)
    assert run == {"q1": [("d1", 3.0), ("d2", 2.0)], "q2": [("d1", 4.0)]}
    assert stats.duplicates == 2 and stats.lines == 5 and stats.entries == 3
    assert stats.warnings == [f"{p}: 2 duplicate doc ids repaired (kept the highest score of each)"]
    assert any("2 duplicate doc ids repaired" in r.getMessage() for r in caplog.records)


def test_read_run_without_repair_names_the_duplicate_line(tmp_path):
    p = _write(tmp_path, "dup.trec", "q1 Q0 d1 1 3.0 x\nq1 Q0 d2 2 2.0 x\nq1 Q0 d1 3 2.5 x\n")
    with pytest.raises(IrflowError) as ei:
        read_run(p, repair_duplicates=False)
    assert (ei.value.where, ei.value.line) == (str(p), 3)
    assert str(ei.value).startswith(f"{p}:3: duplicate doc id 'd1'")
    assert "first on line 1" in str(ei.value)


def test_read_run_sorts_by_score_then_doc_id_ignoring_rank_column(tmp_path):
    p = _write(tmp_path, "r.trec", "q Q0 b 1 1.0 x\nq Q0 a 2 1.0 x\nq Q0 c 3 5 x\n")
    run, _ = read_run(p)
    assert run == {"q": [("c", 5.0), ("a", 1.0), ("b", 1.0)]}


def test_read_run_wrong_column_count_names_file_and_line(tmp_path):
    p = _write(tmp_path, "bad.trec", "q1 Q0 d1 1 3.0 x\nq1 Q0 d2 2 2.0\n")
    with pytest.raises(IrflowError) as ei:
        read_run(p)
    assert ei.value.where == str(p) and ei.value.line == 2
    assert str(ei.value) == f"{p}:2: expected 6 columns 'qid Q0 docid rank score tag', found 5"


@pytest.mark.parametrize(
    "line, msg",
    [
        ("q1 Q0 d2 2 high x", "score 'high' is not a number"),
        ("q1 Q0 d2 2 nan x", "score 'nan' is not finite"),
        ("q1 Q0 d2 2 -inf x", "score '-inf' is not finite"),
        ("q1 Q0 d2 two 1.0 x", "rank 'two' is not an integer"),
    ],
)
def test_read_run_bad_numbers(tmp_path, line, msg):
    p = _write(tmp_path, "bad.trec", "q1 Q0 d1 1 3.0 x\n" + line + "\n")
    with pytest.raises(IrflowError) as ei:
        read_run(p)
    assert str(ei.value) == f"{p}:2: {msg}"


def test_read_run_non_utf8(tmp_path):
    p = _write(tmp_path, "bin.trec", b"q1 Q0 d1 1 3.0 x\nq1 Q0 d\xff\xfe 2 2.0 x\n")
    with pytest.raises(IrflowError, match="not valid UTF-8") as ei:
        read_run(p)
    assert (ei.value.where, ei.value.line) == (str(p), 2)
    assert str(ei.value).startswith(f"{p}:2: ")


@pytest.mark.parametrize("content", ["", "\n  \n\t\n"])
def test_read_run_empty(tmp_path, content):
    p = _write(tmp_path, "empty.trec", content)
    with pytest.raises(IrflowError, match="empty run file") as ei:
        read_run(p)
    assert ei.value.where == str(p)


def test_read_run_missing_file(tmp_path):
    p = tmp_path / "nope.trec"
    with pytest.raises(IrflowError) as ei:
        read_run(p)
    assert str(ei.value) == f"{p}: no such file"


# ------------------------------------------------------------------------------------------- qrels

def test_read_qrels_dedupes_and_resolves_conflicts(tmp_path, caplog):
    p = _write(tmp_path, "qrels.txt",
               "q1 0 d1 2\n"
               "q1 0 d2 1\n"
               "q1 0 d1 2\n"   # exact duplicate -> dropped
               "q1 0 d2 0\n"   # conflict 1 vs 0 -> keep 1
               "q2 0 e1 -1\n"
               "q2 0 e1 3\n")  # conflict -1 vs 3 -> keep 3
    with caplog.at_level(logging.WARNING, logger="irflow"):
        qrels, stats = read_qrels(p)
    assert qrels == {"q1": {"d1": 2, "d2": 1}, "q2": {"e1": 3}}
    assert (stats.rows, stats.duplicates, stats.conflicts, stats.queries, stats.judgements) == (6, 1, 2, 2, 3)
    assert stats.warnings[0] == f"{p}: 1 duplicate qrels rows dropped"
    assert stats.warnings[1].startswith(f"{p}: 2 qrels pairs with conflicting grades, kept the maximum")
    assert "query q1 doc d2: 1 vs 0" in stats.warnings[1]
    assert len([r for r in caplog.records if r.name == "irflow"]) == 2


def test_dedupe_qrels_from_ir_datasets_like_tuples():
    Qrel = namedtuple("TrecQrel", ["query_id", "doc_id", "relevance", "iteration"])
    raw = [Qrel("1", "a", 1, "0"), Qrel("1", "a", 1, "0"), Qrel("1", "b", 0, "0")]
    qrels, stats = dedupe_qrels(((q.query_id, q.doc_id, q.relevance) for q in raw))
    assert qrels == {"1": {"a": 1, "b": 0}}
    assert stats.duplicates == 1 and stats.conflicts == 0
    assert stats.warnings == ["1 duplicate qrels rows dropped"]


def test_clean_qrels_have_no_warnings(tmp_path):
    p = _write(tmp_path, "q.txt", "q1 0 d1 1\nq1 Q0 d2 0\n")
    qrels, stats = read_qrels(p)
    assert qrels == {"q1": {"d1": 1, "d2": 0}} and stats.warnings == []


@pytest.mark.parametrize(
    "content, line, msg",
    [
        ("q1 0 d1 1\nq1 0 d2\n", 2, "expected 4 columns 'qid iter docid rel', found 3"),
        ("q1 0 d1 1\n\nq1 0 d2 1.5\n", 3, "relevance '1.5' is not an integer"),
        ("q1 0 d1 1 extra\n", 1, "expected 4 columns 'qid iter docid rel', found 5"),
    ],
)
def test_read_qrels_bad_lines(tmp_path, content, line, msg):
    p = _write(tmp_path, "q.txt", content)
    with pytest.raises(IrflowError) as ei:
        read_qrels(p)
    assert str(ei.value) == f"{p}:{line}: {msg}"


def test_read_qrels_empty_missing_and_binary(tmp_path):
    p = _write(tmp_path, "q.txt", "")
    with pytest.raises(IrflowError, match="empty qrels file"):
        read_qrels(p)
    with pytest.raises(IrflowError, match="no such file"):
        read_qrels(tmp_path / "missing.txt")
    b = _write(tmp_path, "b.txt", b"\x80\x81 0 d 1\n")
    with pytest.raises(IrflowError, match="not valid UTF-8") as ei:
        read_qrels(b)
    assert ei.value.line == 1


def test_read_run_keeps_only_the_queries_asked_for(tmp_path):
    f = tmp_path / "run.trec"
    f.write_text("q1 Q0 a 1 2.0 t\nq2 Q0 b 1 3.0 t\nq1 Q0 c 2 1.0 t\nq3 Q0 a 1 1.0 t\n")
    whole, _ = read_run(f)
    some, stats = read_run(f, queries={"q1", "q3"})
    assert some == {q: whole[q] for q in ("q1", "q3")} and stats.lines == 4
    f.write_text("q1 Q0 a 1 2.0 t\nq2 Q0 b 1\n")  # a malformed line of another query still fails
    with pytest.raises(IrflowError, match="expected 6 columns"):
        read_run(f, queries={"q1"})
