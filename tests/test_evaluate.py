"""irflow.evaluate against hand-computed trec_eval values, ties, duplicates and significance."""

from __future__ import annotations

import logging
import math
from math import log2

import pytest

from irflow.errors import IrflowError
from irflow.evaluate import DEFAULT_MEASURES, evaluate_runs, paired_ttest, write_tables
from irflow.trec import read_qrels, read_run, write_run

# Grades 0/1/2. nDCG@10 is trec_eval's linear gain: sum grade / log2(rank + 1), IDCG from the
# judged grades sorted descending. RR, R and AP count grade >= 2 as relevant (rel=2).
QRELS = """\
q1 0 d1 2
q1 0 d2 1
q1 0 d3 0
q1 0 d4 2
q1 0 d5 1
q2 0 e1 1
q2 0 e2 2
q3 0 f1 2
"""

# system A: q1 ranks d3 d1 d5 d9 d4 ; q2 ranks e1 x e2 ; q3 missing
RUN_A = """\
q1 Q0 d3 1 10 A
q1 Q0 d1 2 9 A
q1 Q0 d5 3 8 A
q1 Q0 d9 4 7 A
q1 Q0 d4 5 6 A
q2 Q0 e1 1 3 A
q2 Q0 x 2 2 A
q2 Q0 e2 3 1 A
"""

# system B: q1 ranks d1 d4 d2 d5 ; q2 ranks e2 ; q3 ranks f9 f1 ; plus an unjudged query q4
RUN_B = """\
q1 Q0 d1 1 0.9 B
q1 Q0 d4 2 0.8 B
q1 Q0 d2 3 0.7 B
q1 Q0 d5 4 0.6 B
q2 Q0 e2 1 5.0 B
q3 Q0 f9 1 2.0 B
q3 Q0 f1 2 1.0 B
q4 Q0 zz 1 1.0 B
"""

# --- hand-computed per-query values -----------------------------------------------------------
IDCG_Q1 = 2 / log2(2) + 2 / log2(3) + 1 / log2(4) + 1 / log2(5)   # grades 2,2,1,1,0
IDCG_Q2 = 2 / log2(2) + 1 / log2(3)                              # grades 2,1
IDCG_Q3 = 2.0
HAND = {
    "A": {
        "nDCG@10": [(2 / log2(3) + 1 / log2(4) + 2 / log2(6)) / IDCG_Q1, (1 + 2 / log2(4)) / IDCG_Q2, 0.0],
        "RR(rel=2)@10": [1 / 2, 1 / 3, 0.0],
        "R(rel=2)@1000": [1.0, 1.0, 0.0],
        "AP(rel=2)": [(1 / 2 + 2 / 5) / 2, 1 / 3, 0.0],
    },
    "B": {
        "nDCG@10": [1.0, 2 / IDCG_Q2, (2 / log2(3)) / IDCG_Q3],
        "RR(rel=2)@10": [1.0, 1.0, 1 / 2],
        "R(rel=2)@1000": [1.0, 1.0, 1.0],
        "AP(rel=2)": [1.0, 1.0, 1 / 2],
    },
}
QIDS = ["q1", "q2", "q3"]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "qrels").write_text(QRELS)
    (tmp_path / "a.trec").write_text(RUN_A)
    (tmp_path / "b.trec").write_text(RUN_B)
    qrels, _ = read_qrels(tmp_path / "qrels")
    a, _ = read_run(tmp_path / "a.trec")
    b, _ = read_run(tmp_path / "b.trec")
    return qrels, a, b


def test_hand_computed_values_and_missing_query(files, caplog):
    qrels, a, b = files
    with caplog.at_level(logging.WARNING, logger="irflow"):
        res = evaluate_runs({"A": a, "B": b}, qrels, DEFAULT_MEASURES, baseline="A")
    assert res.systems == ["A", "B"]
    assert res.measures == DEFAULT_MEASURES
    assert res.query_ids == QIDS
    for sys_name, by_measure in HAND.items():
        for m, values in by_measure.items():
            got = [res.per_query[sys_name][m][q] for q in QIDS]
            assert got == pytest.approx(values, abs=1e-12), (sys_name, m)
            # every system is averaged over the same 3 queries; A's missing q3 counts 0
            assert res.means[sys_name][m] == pytest.approx(sum(values) / 3, abs=1e-12)
    assert res.missing_queries == {"A": 1, "B": 0}
    assert res.extra_queries == {"A": 0, "B": 1}  # B's q4 has no qrels: ignored
    assert "system A: 1 of 3 evaluation queries have no results and count 0" in res.warnings
    assert any("count 0" in r.getMessage() for r in caplog.records)


def test_ttest_matches_scipy_on_hand_vectors(files):
    from scipy import stats

    qrels, a, b = files
    res = evaluate_runs({"A": a, "B": b}, qrels, DEFAULT_MEASURES, baseline="A")
    for m in ("nDCG@10", "AP(rel=2)"):
        row = res.test("B", m)
        ref = stats.ttest_rel(HAND["B"][m], HAND["A"][m])
        assert row.baseline == "A"
        assert row.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert row.t == pytest.approx(ref.statistic, rel=1e-9)
        # and the t statistic by its textbook formula
        d = [x - y for x, y in zip(HAND["B"][m], HAND["A"][m])]
        mean = sum(d) / 3
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
        assert row.t == pytest.approx(mean / (sd / math.sqrt(3)), rel=1e-9)
        assert row.mean_diff == pytest.approx(mean, abs=1e-12)
    assert res.test("A", "nDCG@10") is None  # no row for the baseline itself
    assert len(res.significance) == len(DEFAULT_MEASURES)


def test_identical_systems_get_p_one():
    assert paired_ttest([0.5, 0.2, 0.0], [0.5, 0.2, 0.0]) == (0.0, 1.0)
    assert all(math.isnan(x) for x in paired_ttest([0.5], [0.2]))
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": [("d1", 1.0)], "q2": [("x", 1.0), ("d2", 0.5)]}
    res = evaluate_runs({"base": run, "copy": run}, qrels, ["nDCG@10"], baseline="base")
    row = res.test("copy", "nDCG@10")
    assert (row.mean_diff, row.t, row.p_value) == (0.0, 0.0, 1.0)


def test_ties_written_then_read_evaluate_like_trec_eval(tmp_path):
    # three docs tied at 1.0; only d1 relevant. Deterministic order is (-score, doc_id): d1 d2 d3.
    qrels = {"q1": {"d1": 2, "d2": 0, "d3": 0}}
    tied = {"q1": [("d3", 1.0), ("d2", 1.0), ("d1", 1.0)]}
    # trec_eval on the raw ties would sort by docno descending: d3 d2 d1 -> RR 1/3 (the ambiguity)
    raw_trec_eval_order = sorted(tied["q1"], key=lambda x: (-x[1], tuple(-ord(c) for c in x[0])))
    assert [d for d, _ in raw_trec_eval_order] == ["d3", "d2", "d1"]

    path = tmp_path / "tied.trec"
    write_run(path, tied, "t")
    lines = [l.split() for l in path.read_text().splitlines()]
    scores = [float(l[4]) for l in lines]
    assert all(x > y for x, y in zip(scores, scores[1:]))  # strictly decreasing after write
    # trec_eval's own ordering of the written file (score desc, docno desc) == the rank column
    te = sorted(lines, key=lambda l: (-float(l[4]), tuple(-ord(c) for c in l[2])))
    assert [l[2] for l in te] == ["d1", "d2", "d3"] == [l[2] for l in sorted(lines, key=lambda l: int(l[3]))]

    back, _ = read_run(path)
    measures = ["RR(rel=2)@10", "nDCG@10"]
    res_file = evaluate_runs({"t": back}, qrels, measures)
    res_mem = evaluate_runs({"t": tied}, qrels, measures)  # in-memory ties get the same treatment
    assert res_file.means["t"]["RR(rel=2)@10"] == 1.0  # d1 at rank 1
    assert res_file.means["t"]["nDCG@10"] == pytest.approx(1.0)
    assert res_file.means == res_mem.means

    # an independent provider reading the file itself agrees
    import ir_measures

    ref = ir_measures.calc_aggregate([ir_measures.parse_measure("RR(rel=2)@10")],
                                     ir_measures.read_trec_qrels(_qrels_file(tmp_path, qrels)),
                                     ir_measures.read_trec_run(str(path)))
    assert list(ref.values()) == [1.0]


def _qrels_file(tmp_path, qrels):
    p = tmp_path / "qrels.txt"
    p.write_text("".join(f"{q} 0 {d} {r}\n" for q, j in qrels.items() for d, r in j.items()))
    return str(p)


def test_duplicate_doc_ids_repaired_give_hand_value(tmp_path, caplog):
    qrels = {"q1": {"d1": 2, "d2": 1, "d3": 2}}
    p = tmp_path / "dup.trec"
    p.write_text("q1 Q0 d1 1 3.0 x\nq1 Q0 d1 2 2.5 x\nq1 Q0 d2 3 2.0 x\n")
    idcg = 2 + 2 / log2(3) + 1 / log2(4)
    # counting d1 twice (what a naive evaluator does) fakes a perfect ranking
    naive = (2 + 2 / log2(3) + 1 / log2(4)) / idcg
    correct = (2 + 1 / log2(3)) / idcg
    assert naive == pytest.approx(1.0) and naive > correct

    with caplog.at_level(logging.WARNING, logger="irflow"):
        run, stats = read_run(p)
    assert stats.duplicates == 1
    assert any("1 duplicate doc ids repaired" in r.getMessage() for r in caplog.records)
    res = evaluate_runs({"x": run}, qrels, ["nDCG@10"])
    assert res.means["x"]["nDCG@10"] == pytest.approx(correct, abs=1e-12)

    with pytest.raises(IrflowError) as ei:
        read_run(p, repair_duplicates=False)
    assert ei.value.line == 2

    # duplicates in an in-memory run are repaired and counted too
    mem = {"q1": [("d1", 3.0), ("d1", 2.5), ("d2", 2.0)]}
    res = evaluate_runs({"x": mem}, qrels, ["nDCG@10"])
    assert res.duplicates_repaired == {"x": 1}
    assert res.means["x"]["nDCG@10"] == pytest.approx(correct, abs=1e-12)
    assert "system x: 1 duplicate doc ids repaired (kept the highest score)" in res.warnings


def test_duplicate_qrels_do_not_inflate_idcg(tmp_path):
    p = tmp_path / "qrels"
    p.write_text("q1 0 d1 2\nq1 0 d1 2\nq1 0 d2 1\n")
    qrels, stats = read_qrels(p)
    assert stats.duplicates == 1 and qrels == {"q1": {"d1": 2, "d2": 1}}
    run = {"q1": [("d1", 2.0), ("d2", 1.0)]}
    res = evaluate_runs({"x": run}, qrels, ["nDCG@10"])
    # deduplicated IDCG = 2 + 1/log2(3) = DCG -> 1.0 ; the duplicate row would have made it
    # 2 + 2/log2(3) + 1/2 and the score (2 + 1/log2(3)) / that < 1
    assert res.means["x"]["nDCG@10"] == pytest.approx(1.0)


def test_query_ids_restrict_and_drop_qrels(files, caplog):
    qrels, a, b = files
    with caplog.at_level(logging.WARNING, logger="irflow"):
        res = evaluate_runs({"A": a, "B": b}, qrels, ["nDCG@10"], query_ids=["q1", "q2", "q7"])
    assert res.query_ids == ["q1", "q2"]
    assert res.dropped_qrels == 1 and res.topics_without_qrels == 1
    assert "1 qrels rows for queries not in the topics were dropped" in res.warnings
    assert res.missing_queries == {"A": 0, "B": 0}
    assert res.means["A"]["nDCG@10"] == pytest.approx(sum(HAND["A"]["nDCG@10"][:2]) / 2)
    assert any("qrels rows for queries not in the topics" in r.getMessage() for r in caplog.records)


def test_measure_parsing(files):
    qrels, a, _ = files
    res = evaluate_runs({"A": a}, qrels, ["RR(rel=2)@10", "P@5"])
    assert res.measures == ["nDCG@10", "RR(rel=2)@10", "P@5"]  # nDCG@10 added
    assert res.means["A"]["P@5"] == pytest.approx((3 / 5 + 2 / 5 + 0) / 3)  # P counts rel >= 1
    with pytest.raises(IrflowError, match="'nDCG@ten'"):
        evaluate_runs({"A": a}, qrels, ["nDCG@ten"])
    with pytest.raises(IrflowError, match="'Bogus@10'"):
        evaluate_runs({"A": a}, qrels, ["Bogus@10"])


def test_bad_arguments(files):
    qrels, a, _ = files
    with pytest.raises(IrflowError, match="baseline 'Z'"):
        evaluate_runs({"A": a}, qrels, ["nDCG@10"], baseline="Z")
    with pytest.raises(IrflowError, match="no runs"):
        evaluate_runs({}, qrels, ["nDCG@10"])
    with pytest.raises(IrflowError, match="no query has qrels"):
        evaluate_runs({"A": a}, qrels, ["nDCG@10"], query_ids=["zz"])


def test_write_tables(files, tmp_path):
    qrels, a, b = files
    res = evaluate_runs({"B": b, "A": a}, qrels, DEFAULT_MEASURES, baseline="A")
    out = tmp_path / "tables"
    write_tables(res, out)

    def rows(name):
        return [l.split("\t") for l in (out / name).read_text().splitlines()]

    m = rows("metrics.tsv")
    assert m[0] == ["system", "measure", "value"]
    assert len(m) == 1 + 2 * 4
    assert m[1] == ["B", "nDCG@10", f"{sum(HAND['B']['nDCG@10']) / 3:.4f}"]  # runs dict order: B first

    pq = rows("perquery.tsv")
    assert pq[0] == ["system", "measure", "query_id", "value"]
    assert len(pq) == 1 + 2 * 4 * 3
    assert ["A", "RR(rel=2)@10", "q3", "0.0000"] in pq
    assert ["A", "AP(rel=2)", "q1", "0.4500"] in pq

    sig = rows("significance.tsv")
    assert sig[0] == ["system", "baseline", "measure", "mean_diff", "t", "p_value"]
    assert [r[:3] for r in sig[1:]] == [["B", "A", x] for x in DEFAULT_MEASURES]
    ndcg_row = res.test("B", "nDCG@10")
    assert sig[1][3:] == [f"{ndcg_row.mean_diff:.4f}", f"{ndcg_row.t:.4f}", f"{ndcg_row.p_value:.4g}"]

    nd = rows("ndcg.tsv")
    assert nd[0] == ["system", "nDCG@10", "queries", "p_value", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)"]
    assert nd[1][0] == "B" and nd[1][2] == "3" and nd[1][3] == f"{ndcg_row.p_value:.4g}"
    assert nd[2][0] == "A" and nd[2][3] == ""  # no p-value for the baseline itself
    assert nd[2][4] == f"{(1 / 2 + 1 / 3) / 3:.4f}"

    cov = rows("coverage.tsv")
    assert cov == [["system", "queries", "answered", "missing", "extra", "duplicates_repaired"],
                   ["B", "3", "3", "0", "1", "0"], ["A", "3", "2", "1", "0", "0"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["metrics.tsv", "perquery.tsv", "significance.tsv", "ndcg.tsv", "coverage.tsv"])


def test_write_tables_without_baseline(files, tmp_path):
    qrels, a, _ = files
    res = evaluate_runs({"A": a}, qrels, ["AP(rel=2)"])
    write_tables(res, tmp_path)
    assert (tmp_path / "significance.tsv").read_text() == "system\tbaseline\tmeasure\tmean_diff\tt\tp_value\n"
    nd = (tmp_path / "ndcg.tsv").read_text().splitlines()
    assert nd[0] == "system\tnDCG@10\tqueries\tp_value\tAP(rel=2)"
    assert nd[1].split("\t")[3] == ""


def test_module_imports_stay_light():
    import subprocess
    import sys

    code = ("import sys, irflow.evaluate, irflow.fuse, irflow.trec; "
            "bad = [m for m in ('ir_measures', 'scipy', 'pandas') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
