"""Readers of training sources: RankGPT permutations and pairwise teacher scores."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from irflow.data.training import (
    PairScoreStats,
    RankGPTStats,
    parse_rankgpt_permutation,
    read_pair_scores,
    read_rankgpt,
)
from irflow.errors import IrflowError


def test_module_does_not_import_torch():
    import subprocess

    code = "import sys, irflow.data.training; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------- parse_rankgpt_permutation


@pytest.mark.parametrize("text, n, expected", [
    ("[3] > [1] > [2]", 3, [2, 0, 1]),
    (" [ 3 ]>[1] >  [2] \n", 3, [2, 0, 1]),
    ("[1]", 1, [0]),
    (" > ".join(f"[{k}]" for k in [5, 18, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20]),
     20,
     [4, 17, 0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19]),
])
def test_parse_permutation_good(text, n, expected):
    assert parse_rankgpt_permutation(text, n) == expected


@pytest.mark.parametrize("text", [
    "[3] > [1] > [a]",  # not an int
    "[3] > 1 > [2]",  # no brackets
    "[3] > [1] > [2",  # unclosed
    "[3] > [1] > [-2]",  # sign
    "[3] > [1] > [2.0]",  # not an int
    "[3] > [1] > [2] >",  # empty trailing token
    "[3] [1] [2]",  # no separators
    "[0] > [1] > [2]",  # out of range (1-based)
    "[4] > [1] > [2]",  # out of range
    "[3] > [1] > [3]",  # repeated
    "[3] > [1]",  # too few
    "[3] > [1] > [2] > [4]",  # too many (and out of range)
    "",
    "I cannot rank these passages.",
])
def test_parse_permutation_bad_is_none(text):
    assert parse_rankgpt_permutation(text, 3) is None


def test_parse_permutation_not_a_string():
    assert parse_rankgpt_permutation(None, 3) is None  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ read_rankgpt


def _cand(qid, docs):
    """A candidates line; ``docs`` are (rank, docid)."""
    return json.dumps({"query_id": qid, "query": "text is ignored",
                       "retrieved_passages": [{"rank": r, "docid": d, "text": "x"} for r, d in docs]})


@pytest.fixture()
def cands(tmp_path):
    p = tmp_path / "cand.jsonl"
    p.write_text("\n".join([
        _cand("q1", [(1, "a"), (2, "b"), (3, "c")]),
        "",  # blank lines are skipped (and not counted in the list alignment)
        _cand(2, [(3, 30), (1, 10), (2, 20)]),  # integer ids, out of rank order in the file
        _cand("q3", [(1, "x"), (2, "y"), (3, "z")]),
    ]) + "\n", encoding="utf-8")
    return p


def _perms(tmp_path, obj, name="perm.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj), encoding="utf-8")
    return p


def test_rankgpt_list_form(tmp_path, cands):
    perms = _perms(tmp_path, ["[2] > [3] > [1]", "[1] > [3] > [2]", "[3] > [2] > [1]"])
    run, stats = read_rankgpt(cands, perms, n=3)
    assert run == {"q1": ["b", "c", "a"], "2": ["10", "30", "20"], "q3": ["z", "y", "x"]}
    assert list(run) == ["q1", "2", "q3"]  # file order
    assert isinstance(stats, RankGPTStats)
    assert (stats.form, stats.queries, stats.kept, stats.dropped) == ("list", 3, 3, 0)
    assert stats.warnings == []


def test_rankgpt_dict_form_with_missing_and_unmatched(tmp_path, cands):
    perms = _perms(tmp_path, {"2": "[2] > [1] > [3]", "q1": "[1] > [2] > [3]", "q9": "[1] > [2] > [3]"})
    run, stats = read_rankgpt(cands, perms, n=3)
    assert run == {"q1": ["a", "b", "c"], "2": ["20", "10", "30"]}
    assert (stats.form, stats.kept, stats.dropped) == ("dict", 2, 1)
    assert stats.drop_reasons == {"no permutation": 1}
    assert stats.dropped_qids == ["q3"]
    assert stats.unmatched_permutations == 1


def test_rankgpt_bad_permutations_are_dropped_and_counted(tmp_path, cands, caplog):
    perms = _perms(tmp_path, ["[2] > [3]", "[1] > [3] > [2]", None])
    with caplog.at_level(logging.WARNING, logger="irflow"):
        run, stats = read_rankgpt(cands, perms, n=3)
    assert run == {"2": ["10", "30", "20"]}
    assert (stats.kept, stats.dropped) == (1, 2)
    assert stats.drop_reasons == {"permutation is not a string": 1, "wrong count": 1}
    assert stats.dropped_qids == ["q1", "q3"]
    assert len(stats.warnings) == 1
    assert f"{perms}: dropped 2 of 3 queries" in stats.warnings[0]
    assert "first: q1, q3" in caplog.text


def test_rankgpt_wrong_candidate_count_and_duplicates_are_dropped(tmp_path):
    cands = tmp_path / "cand.jsonl"
    cands.write_text("\n".join([
        _cand("q1", [(1, "a"), (2, "b"), (3, "c")]),
        _cand("q2", [(1, "a"), (2, "b")]),
        _cand("q3", [(1, "a"), (2, "b"), (2, "c")]),
        _cand("q4", [(1, "a"), (2, "b"), (3, "a")]),
    ]), encoding="utf-8")
    perms = _perms(tmp_path, ["[1] > [2] > [3]"] * 4)
    run, stats = read_rankgpt(cands, perms, n=3)
    assert list(run) == ["q1"]
    assert stats.drop_reasons == {"duplicate candidate doc id": 1, "duplicate candidate rank": 1,
                                  "wrong candidate count": 1}


def test_rankgpt_all_dropped_is_an_error(tmp_path, cands):
    perms = _perms(tmp_path, ["[1] > [2] > [3]"] * 3)
    with pytest.raises(IrflowError) as e:
        read_rankgpt(cands, perms, n=20)
    assert str(e.value) == (f"{perms}: no usable query: all 3 dropped (wrong candidate count: 3); "
                            "is n=20 right?")


@pytest.mark.parametrize("line, message", [
    ('{"query_id": "q2", "retrieved_passages": [', "not valid JSON"),
    ('["q2"]', "expected a JSON object, found list"),
    ('{"retrieved_passages": []}', "missing key 'query_id'"),
    ('{"query_id": "", "retrieved_passages": []}', "query_id '' is not a non-empty string or integer"),
    ('{"query_id": true, "retrieved_passages": []}', "query_id True is not"),
    ('{"query_id": "q2"}', "query q2: 'retrieved_passages' must be a list, found nothing"),
    ('{"query_id": "q2", "retrieved_passages": {}}', "'retrieved_passages' must be a list, found dict"),
    ('{"query_id": "q2", "retrieved_passages": [{"docid": "a"}]}',
     "query q2: retrieved_passages[0] must be an object with 'rank' and 'docid'"),
    ('{"query_id": "q2", "retrieved_passages": [{"rank": "1", "docid": "a"}]}',
     "query q2: retrieved_passages[0].rank '1' is not an integer"),
    ('{"query_id": "q2", "retrieved_passages": [{"rank": 1, "docid": null}]}',
     "retrieved_passages[0].docid None is not a non-empty string or integer"),
    (_cand("q1", [(1, "a")]), "query id 'q1' appears twice (first on line 1)"),
])
def test_rankgpt_malformed_candidates_line(tmp_path, line, message):
    cands = tmp_path / "cand.jsonl"
    cands.write_text(_cand("q1", [(1, "a"), (2, "b"), (3, "c")]) + "\n" + line + "\n", encoding="utf-8")
    perms = _perms(tmp_path, ["[1] > [2] > [3]"] * 2)
    with pytest.raises(IrflowError) as e:
        read_rankgpt(cands, perms, n=3)
    assert (e.value.where, e.value.line) == (str(cands), 2)
    assert str(e.value).startswith(f"{cands}:2: ")
    assert message in str(e.value)


def test_rankgpt_list_of_wrong_length(tmp_path, cands):
    perms = _perms(tmp_path, ["[1] > [2] > [3]"] * 2)
    with pytest.raises(IrflowError) as e:
        read_rankgpt(cands, perms, n=3)
    assert str(e.value).startswith(f"{perms}: 2 permutations for 3 queries in {cands}")


@pytest.mark.parametrize("content, line, message", [
    ('[\n"[1] > [2] > [3]",\n"[1]" "[2]"\n]', 3, "not valid JSON: Expecting ',' delimiter"),
    ('"[1] > [2] > [3]"', None, "expected a JSON list of permutation strings or an object"),
    ("  \n", None, "empty permutations file"),
])
def test_rankgpt_malformed_permutations_file(tmp_path, cands, content, line, message):
    perms = tmp_path / "perm.json"
    perms.write_text(content, encoding="utf-8")
    with pytest.raises(IrflowError) as e:
        read_rankgpt(cands, perms, n=3)
    assert (e.value.where, e.value.line) == (str(perms), line)
    assert message in str(e.value)


def test_rankgpt_non_utf8(tmp_path, cands):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_cand("q1", [(1, "a")]).encode() + b"\n" + b'{"query_id": "q\xff"}\n')
    perms = _perms(tmp_path, ["[1]"] * 2)
    with pytest.raises(IrflowError, match=rf"^{bad}:2: not valid UTF-8"):
        read_rankgpt(bad, perms, n=1)
    badp = tmp_path / "bad.json"
    badp.write_bytes(b'[\n"[1] > [2] > [3]",\n"\xe9"\n]')
    with pytest.raises(IrflowError, match=rf"^{badp}:3: not valid UTF-8"):
        read_rankgpt(cands, badp, n=3)


def test_rankgpt_missing_and_empty_files(tmp_path, cands):
    perms = _perms(tmp_path, ["[1] > [2] > [3]"] * 3)
    with pytest.raises(IrflowError, match=rf"^{tmp_path / 'nope.jsonl'}: no such file$"):
        read_rankgpt(tmp_path / "nope.jsonl", perms, n=3)
    with pytest.raises(IrflowError, match=rf"^{tmp_path / 'nope.json'}: no such file$"):
        read_rankgpt(cands, tmp_path / "nope.json", n=3)
    with pytest.raises(IrflowError, match="is a directory"):
        read_rankgpt(tmp_path, perms, n=3)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(IrflowError, match=rf"^{empty}: empty candidates file$"):
        read_rankgpt(empty, perms, n=3)
    with pytest.raises(IrflowError, match="n must be an integer >= 1"):
        read_rankgpt(cands, perms, n=0)


# -------------------------------------------------------------------------------- read_pair_scores


def _pairs(tmp_path, text, name="pairs.tsv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_pair_scores_good(tmp_path):
    p = _pairs(tmp_path, "12.5\t-3.25\tq1\td1\td2\n\n4   4.5  q2 d3  d1\n1e1\t-1E-2\tq1\td1\td3\n")
    rows, stats = read_pair_scores(p)
    assert rows == [("q1", "d1", "d2", 12.5, -3.25), ("q2", "d3", "d1", 4.0, 4.5),
                    ("q1", "d1", "d3", 10.0, -0.01)]
    assert isinstance(stats, PairScoreStats)
    assert (stats.lines, stats.kept, stats.duplicates) == (3, 3, 0)
    assert (stats.unknown_queries, stats.unknown_docs) == (0, 0)
    assert stats.warnings == []


def test_pair_scores_unknown_ids_are_dropped_and_counted(tmp_path, caplog):
    p = _pairs(tmp_path, "\n".join([
        "1 0 q1 d1 d2",
        "1 0 qX d1 d2",  # unknown query (docs not checked further)
        "1 0 q1 dX d2",  # unknown positive
        "1 0 q1 d1 dY",  # unknown negative
        "1 0 qZ dX dY",
        "2 1 q2 d2 d1",
    ]))
    with caplog.at_level(logging.WARNING, logger="irflow"):
        rows, stats = read_pair_scores(p, known_queries={"q1", "q2"}, known_docs={"d1": 0, "d2": 1})
    assert rows == [("q1", "d1", "d2", 1.0, 0.0), ("q2", "d2", "d1", 2.0, 1.0)]
    assert (stats.unknown_queries, stats.unknown_docs, stats.kept, stats.lines) == (2, 2, 2, 6)
    assert stats.unknown_query_examples == ["qX", "qZ"]
    assert stats.unknown_doc_examples == ["dX", "dY"]
    assert f"{p}: 2 lines dropped, query id not in the query set (first: qX, qZ)" in caplog.text
    assert f"{p}: 2 lines dropped, doc id not in the collection (first: dX, dY)" in caplog.text


def test_pair_scores_duplicates_and_same_doc(tmp_path):
    p = _pairs(tmp_path, "1 0 q1 d1 d2\n1 0 q1 d1 d2\n5 0 q1 d1 d2\n1 0 q1 d2 d1\n3 3 q1 d1 d1\n")
    rows, stats = read_pair_scores(p)
    assert rows == [("q1", "d1", "d2", 1.0, 0.0), ("q1", "d2", "d1", 1.0, 0.0)]
    assert (stats.duplicates, stats.conflicting_duplicates, stats.same_doc) == (2, 1, 1)
    assert len(stats.warnings) == 2


@pytest.mark.parametrize("line, message", [
    ("1 0 q1 d1", "expected 5 columns 'pos_score neg_score query_id pos_id neg_id', found 4"),
    ("1 0 q1 d1 d2 extra", "expected 5 columns 'pos_score neg_score query_id pos_id neg_id', found 6"),
    ("high 0 q1 d1 d2", "pos_score 'high' is not a number"),
    ("1 0,5 q1 d1 d2", "neg_score '0,5' is not a number"),
    ("nan 0 q1 d1 d2", "pos_score 'nan' is not finite"),
    ("1 -inf q1 d1 d2", "neg_score '-inf' is not finite"),
    ("1e999 0 q1 d1 d2", "pos_score '1e999' is not finite"),
])
def test_pair_scores_malformed_line(tmp_path, line, message):
    p = _pairs(tmp_path, f"1 0 q1 d1 d2\n\n{line}\n")
    with pytest.raises(IrflowError) as e:
        read_pair_scores(p)
    assert str(e.value) == f"{p}:3: {message}"


def test_pair_scores_non_utf8_missing_empty(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"1 0 q1 d1 d2\n1 0 q\xff d1 d2\n")
    with pytest.raises(IrflowError, match=rf"^{bad}:2: not valid UTF-8"):
        read_pair_scores(bad)
    with pytest.raises(IrflowError, match=rf"^{tmp_path / 'nope.tsv'}: no such file$"):
        read_pair_scores(tmp_path / "nope.tsv")
    empty = _pairs(tmp_path, "\n  \n", name="empty.tsv")
    with pytest.raises(IrflowError, match=rf"^{empty}: empty pair-score file$"):
        read_pair_scores(empty)


def test_pair_scores_nothing_usable_is_an_error(tmp_path):
    p = _pairs(tmp_path, "1 0 q1 d1 d2\n1 0 q2 d1 d2\n")
    with pytest.raises(IrflowError) as e:
        read_pair_scores(p, known_queries=set())
    assert str(e.value).startswith(f"{p}: no usable pair among 2 lines (2 unknown queries")


def test_pair_scores_bom(tmp_path):
    p = tmp_path / "bom.tsv"
    p.write_bytes("\ufeff1 0 q1 d1 d2\n".encode())
    rows, _ = read_pair_scores(p)
    assert rows == [("q1", "d1", "d2", 1.0, 0.0)]


# ------------------------------------------------------------------ preprocess: subsets and negatives

# Corpus d1..d6; qrels also judge dX/dY/dZ, which the corpus (a subset) does not hold.
PP_DOCS = "".join(f"d{i}\tdocument {i}\n" for i in range(1, 7))
PP_QUERIES = "q1\tfirst\nq2\tsecond\nq3\tthird\n"
PP_QRELS = ("q1 0 d1 2\nq1 0 dX 3\nq1 0 d2 0\nq1 0 d3 1\nq1 0 dY 0\n"
            "q2 0 dZ 2\nq2 0 d4 0\n"  # q2's only positive is missing: no example
            "q3 0 d5 1\nq3 0 d6 0\n")
PP_RUN = ("q1 Q0 d4 1 9 r\nq1 Q0 d2 2 8 r\nq1 Q0 d1 3 7 r\nq1 Q0 d5 4 6 r\n"
          "q2 Q0 d4 1 9 r\nq3 Q0 d1 1 9 r\nq3 Q0 d5 2 8 r\n")


@pytest.fixture()
def pp(tmp_path):
    """Prepared docs and queries (by the real prepare step), a qrels file and a run file."""
    from irflow.prepare import PrepareParams, prepare

    dirs = {}
    for kind, text in (("docs", PP_DOCS), ("queries", PP_QUERIES)):
        src = tmp_path / f"{kind}.tsv"
        src.write_text(text)
        dirs[kind] = tmp_path / f"prepared-{kind}"
        dirs[kind].mkdir()
        prepare(PrepareParams(str(src), kind), dirs[kind])
    (tmp_path / "qrels.txt").write_text(PP_QRELS)
    (tmp_path / "run.trec").write_text(PP_RUN)
    return tmp_path, dirs


def _preprocess(tmp_path, dirs, *, with_docs=True, min_grade=1, **kw):
    from irflow.preprocess import PreprocessParams, load_examples, preprocess

    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    out.mkdir()
    p = PreprocessParams(str(tmp_path / "qrels.txt"), min_grade=min_grade, valid_size=0)
    stats = preprocess(p, dirs["queries"], tmp_path / "run.trec", out,
                       docs_dir=dirs["docs"] if with_docs else None, **kw)
    return stats, {e.qid: e for e in load_examples(out, "train")}


def test_preprocess_drops_judged_docs_missing_from_the_corpus_with_a_count(pp, caplog):
    stats, ex = _preprocess(*pp)
    assert sorted(ex) == ["q1", "q3"]  # q2's positive dZ is not in the corpus
    assert ex["q1"].positives == ["d1", "d3"]  # dX dropped
    assert ex["q1"].negatives == ["d4", "d2", "d5"]  # first-stage order, positives removed
    assert stats["not_in_corpus"] == {"positives": 2, "judged_negatives": 1, "candidates": 0, "teacher_docs": 0}
    assert stats["dropped_no_positive"] == 1
    warned = [w for w in stats["warnings"] if "not in the corpus" in w]
    assert len(warned) == 1 and "2 positives" in warned[0] and "1 judged negatives" in warned[0]
    assert any("not in the corpus" in r.getMessage() for r in caplog.records)
    # Every doc an example names exists in the corpus: the trainer can look all of them up.
    corpus = {f"d{i}" for i in range(1, 7)}
    for e in ex.values():
        assert set(e.positives) | set(e.negatives) | set(e.grades or {}) <= corpus


def test_preprocess_keeps_the_grades_of_judged_docs(pp):
    _, ex = _preprocess(*pp)
    assert ex["q1"].grades == {"d1": 2, "d2": 0, "d3": 1}
    assert ex["q3"].grades == {"d5": 1, "d6": 0}


def test_preprocess_without_the_corpus_trusts_the_ids(pp):
    stats, ex = _preprocess(*pp, with_docs=False)
    assert ex["q1"].positives == ["d1", "d3", "dX"] and "q2" in ex
    assert stats["not_in_corpus"] is None


@pytest.mark.parametrize("negatives, q1, q3", [
    ("first-stage", ["d4", "d2", "d5"], ["d1"]),
    # judged non-relevant in the corpus only (dY is not): highest grade first, then run order
    ("judged", ["d2"], ["d6"]),
    ("both", ["d4", "d2", "d5"], ["d1", "d6"]),
])
def test_preprocess_negatives_choice(pp, negatives, q1, q3):
    stats, ex = _preprocess(*pp, negatives=negatives)
    assert stats["negatives"] == negatives
    assert ex["q1"].negatives == q1 and ex["q3"].negatives == q3


def test_judged_negatives_highest_grade_first(pp):
    _, ex = _preprocess(*pp, negatives="judged", min_grade=2)
    assert ex["q1"].positives == ["d1"] and ex["q1"].negatives == ["d3", "d2"]


def test_interleaved_negatives_put_both_kinds_in_every_prefix():
    from irflow.preprocess import _interleave

    assert _interleave(["a", "b", "c", "d"], ["x", "b", "y"]) == ["a", "x", "b", "c", "y", "d"]


def test_judged_negatives_need_the_corpus_and_a_known_choice(pp):
    with pytest.raises(IrflowError, match="needs the corpus"):
        _preprocess(*pp, with_docs=False, negatives="judged")
    with pytest.raises(IrflowError, match="negatives must be one of"):
        _preprocess(*pp, negatives="pooled")
