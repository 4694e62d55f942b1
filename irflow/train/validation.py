"""Validation sets shared by every model family: re-rank held-out training queries' candidates.

Each validation query's candidates are the first stage's top ``depth`` plus all its positives
(the approximate-retrieval validation of TAS-B and the re-ranking validation of the
cross-encoder papers alike); the metric is nDCG@10 with the qrels grades as gains where the
examples carry them (so validation measures what evaluation measures: on TREC DL a grade-1
passage among the candidates still counts), else with the positives as relevant.
"""

from __future__ import annotations


def candidates(examples, depth: int) -> tuple[dict[str, list[str]], list]:
    """qid -> candidate doc ids (first-stage order, then unretrieved positives), and the qrels."""
    import ir_measures

    cands = {ex.qid: list(dict.fromkeys(ex.negatives[:depth] + ex.positives)) for ex in examples}
    qrels = []
    for ex in examples:
        # graded gains where the examples carry the qrels grades (as the evaluation measures them);
        # judged documents below the positives' grade that are among the candidates keep their gain
        graded = {d: g for d, g in (getattr(ex, "grades", None) or {}).items() if g > 0}
        gains = {**{d: graded.get(d, 1) for d in ex.positives},
                 **{d: g for d, g in graded.items() if d in set(cands[ex.qid])}}
        qrels += [ir_measures.Qrel(ex.qid, d, g) for d, g in gains.items()]
    return cands, qrels


def ndcg10(qrels, scored: list[tuple[str, str, float]]) -> float:
    import ir_measures

    run = [ir_measures.ScoredDoc(q, d, float(s)) for q, d, s in scored]
    return float(ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, run)[ir_measures.nDCG @ 10])
