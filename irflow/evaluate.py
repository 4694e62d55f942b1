"""Evaluation of runs against qrels with ir_measures, plus paired significance tests.

What this module pins down, so that numbers are comparable across systems and tools:

* **Query set.** Every system is averaged over the same queries: those with qrels (restricted to
  ``query_ids`` when given). A query a run does not answer scores 0 on every measure, like
  ``trec_eval -c``; the count is reported per system.
* **Ties and duplicates.** Runs are deduplicated (highest score kept, counted) and made strictly
  decreasing in ``(-score, doc_id)`` order before scoring (in float32 too, which is what trec_eval
  and pytrec_eval compare), exactly as :func:`irflow.trec.write_run` writes them, so an in-memory
  run and its TREC file evaluate identically under every provider.
* **Measures** are ir_measures strings (``nDCG@10`` is trec_eval's linear-gain nDCG); nDCG@10 is
  always included.
* **Significance.** A paired two-sided t-test (``scipy.stats.ttest_rel``) of each system against
  the baseline, per measure, over the per-query values. When every per-query difference is 0 the
  test is undefined (scipy returns nan); we report ``t = 0`` and ``p = 1.0`` (no evidence of a
  difference). With fewer than 2 queries, ``t`` and ``p`` are nan.

Heavy libraries (ir_measures, scipy) are imported inside the functions that use them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from typing import ClassVar

from pydantic import Field, field_validator

from .errors import IrflowError
from .params import Input, KeyContext, StepParams
from .trec import Qrels, Run, _atomic_write_text, dedupe_ranking, qid_sort_key, strictly_decreasing

log = logging.getLogger("irflow")

__all__ = [
    "DEFAULT_MEASURES",
    "NDCG10",
    "EvalResult",
    "Significance",
    "evaluate_runs",
    "paired_ttest",
    "parse_measures",
    "write_tables",
]

DEFAULT_MEASURES = ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)"]
NDCG10 = "nDCG@10"


@dataclass
class Significance:
    """Paired two-sided t-test of ``system`` against ``baseline`` on one measure."""

    system: str
    baseline: str
    measure: str
    mean_diff: float  #: mean(system - baseline) over the evaluation queries
    t: float
    p_value: float


@dataclass
class EvalResult:
    """Everything :func:`evaluate_runs` computed; :func:`write_tables` renders it."""

    systems: list[str]  #: in the order of the ``runs`` mapping
    measures: list[str]  #: canonical ir_measures strings, nDCG@10 first if it was added
    query_ids: list[str]  #: the evaluation query set (natural sort order)
    per_query: dict[str, dict[str, dict[str, float]]]  #: system -> measure -> query id -> value
    means: dict[str, dict[str, float]]  #: system -> measure -> mean over ``query_ids``
    missing_queries: dict[str, int]  #: system -> evaluation queries it did not answer (scored 0)
    extra_queries: dict[str, int]  #: system -> answered queries outside the evaluation set (ignored)
    duplicates_repaired: dict[str, int]  #: system -> duplicate doc ids dropped before scoring
    baseline: str | None = None
    significance: list[Significance] = field(default_factory=list)
    dropped_qrels: int = 0  #: qrels rows of queries not in ``query_ids``
    topics_without_qrels: int = 0  #: ``query_ids`` that have no qrels (not evaluated)
    warnings: list[str] = field(default_factory=list)

    def test(self, system: str, measure: str) -> Significance | None:
        """The significance row of ``system`` on ``measure`` (None for the baseline / no baseline)."""
        for row in self.significance:
            if row.system == system and row.measure == measure:
                return row
        return None


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


def parse_measures(measures: Iterable[str]) -> list:
    """Parse ir_measures strings; an unparsable one raises :class:`IrflowError` naming it.

    nDCG@10 is prepended when absent. Repeated measures are kept once.
    """
    import ir_measures

    parsed = []
    for text in measures:
        try:
            m = ir_measures.parse_measure(str(text))
        except Exception as e:  # ValueError (syntax), NameError (unknown measure), ...
            raise IrflowError(f"cannot parse measure {text!r}: {e}", where="measures") from None
        if m not in parsed:
            parsed.append(m)
    ndcg = ir_measures.parse_measure(NDCG10)
    if ndcg not in parsed:
        parsed.insert(0, ndcg)
    return parsed


def paired_ttest(system: list[float], baseline: list[float]) -> tuple[float, float]:
    """``(t, p)`` of a paired two-sided t-test; ``(0.0, 1.0)`` when all differences are 0."""
    if len(system) != len(baseline):
        raise ValueError("paired t-test needs vectors of equal length")
    if len(system) < 2:
        return math.nan, math.nan
    if all(a == b for a, b in zip(system, baseline)):
        return 0.0, 1.0
    import warnings

    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_rel(system, baseline)
    return float(res.statistic), float(res.pvalue)


def _prepare_run(name: str, run: Run, eval_qids: set[str]) -> tuple[dict[str, dict[str, float]], int, int]:
    """ir_measures run dict restricted to ``eval_qids``; returns (run, extra queries, duplicates)."""
    out: dict[str, dict[str, float]] = {}
    extra = dups = 0
    for qid, docs in run.items():
        if qid not in eval_qids:
            if docs:
                extra += 1
            continue
        ranked, dropped = dedupe_ranking(docs)
        dups += dropped
        for doc, score in ranked:
            if not math.isfinite(float(score)):
                raise IrflowError(f"run {name!r}, query {qid}: doc {doc!r} has non-finite score {score!r}")
        if ranked:
            try:
                out[qid] = dict(strictly_decreasing(ranked))
            except ValueError as e:
                raise IrflowError(f"run {name!r}, query {qid}: {e}") from None
    return out, extra, dups


def evaluate_runs(runs: Mapping[str, Run], qrels: Qrels, measures: list[str] = DEFAULT_MEASURES, *,
                  baseline: str | None = None, query_ids: Iterable[str] | None = None,
                  qrels_source: str | None = None) -> EvalResult:
    """Score every run on the same query set and test each against ``baseline``.

    ``qrels`` must already be deduplicated (a dict cannot hold duplicates; use
    :func:`irflow.trec.read_qrels` or :func:`irflow.trec.dedupe_qrels`). See the module docstring
    for the query-set, tie and significance rules. ``qrels_source`` (a file or spec) prefixes the
    warning about dropped qrels rows.
    """
    import ir_measures

    if not runs:
        raise IrflowError("nothing to evaluate: no runs given")
    if baseline is not None and baseline not in runs:
        raise IrflowError(f"baseline {baseline!r} is not one of the evaluated systems {list(runs)}")
    parsed = parse_measures(measures)
    names = [str(m) for m in parsed]
    warnings: list[str] = []

    qrels_eval: dict[str, dict[str, int]] = {q: dict(j) for q, j in qrels.items()}
    dropped_rows = 0
    topics_without_qrels = 0
    if query_ids is not None:
        topics = {str(q) for q in query_ids}
        for qid in list(qrels_eval):
            if qid not in topics:
                dropped_rows += len(qrels_eval.pop(qid))
        if dropped_rows:
            prefix = f"{qrels_source}: " if qrels_source else ""
            _warn(warnings, f"{prefix}{dropped_rows} qrels rows for queries not in the topics were dropped")
        topics_without_qrels = len(topics - set(qrels_eval))
        if topics_without_qrels:
            _warn(warnings, f"{topics_without_qrels} of {len(topics)} topics have no qrels "
                            "and are not evaluated")
    qrels_eval = {q: j for q, j in qrels_eval.items() if j}
    if not qrels_eval:
        raise IrflowError("no query has qrels" + (" among the given topics" if query_ids is not None else ""))
    qids = sorted(qrels_eval, key=qid_sort_key)
    eval_set = set(qids)

    per_query: dict[str, dict[str, dict[str, float]]] = {}
    means: dict[str, dict[str, float]] = {}
    missing: dict[str, int] = {}
    extra: dict[str, int] = {}
    dups: dict[str, int] = {}
    for name, run in runs.items():
        prepared, extra[name], dups[name] = _prepare_run(name, run, eval_set)
        if dups[name]:
            _warn(warnings, f"system {name}: {dups[name]} duplicate doc ids repaired "
                            "(kept the highest score)")
        missing[name] = len(eval_set - set(prepared))
        if missing[name]:
            _warn(warnings, f"system {name}: {missing[name]} of {len(qids)} evaluation queries have no "
                            "results and count 0")
        values: dict[str, dict[str, float]] = {m: {q: 0.0 for q in qids} for m in names}
        if prepared:
            qrels_sub = {q: qrels_eval[q] for q in prepared}
            by_measure = dict(zip(parsed, names))
            for metric in ir_measures.iter_calc(parsed, qrels_sub, prepared):
                m = by_measure.get(metric.measure, str(metric.measure))
                if m in values and metric.query_id in eval_set:
                    values[m][metric.query_id] = float(metric.value)
        per_query[name] = values
        means[name] = {m: math.fsum(values[m].values()) / len(qids) for m in names}

    significance: list[Significance] = []
    if baseline is not None:
        for name in runs:
            if name == baseline:
                continue
            for m in names:
                sys_v = [per_query[name][m][q] for q in qids]
                base_v = [per_query[baseline][m][q] for q in qids]
                t, p = paired_ttest(sys_v, base_v)
                diff = math.fsum(a - b for a, b in zip(sys_v, base_v)) / len(qids)
                significance.append(Significance(name, baseline, m, diff, t, p))

    return EvalResult(
        systems=list(runs), measures=names, query_ids=qids, per_query=per_query, means=means,
        missing_queries=missing, extra_queries=extra, duplicates_repaired=dups, baseline=baseline,
        significance=significance, dropped_qrels=dropped_rows, topics_without_qrels=topics_without_qrels,
        warnings=warnings,
    )


def _f4(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


def _p4(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4g}"


def _tsv(rows: list[list[str]]) -> str:
    return "".join("\t".join(r) + "\n" for r in rows)


def write_tables(result: EvalResult, out_dir: str | Path) -> None:
    """Write ``metrics.tsv``, ``perquery.tsv``, ``significance.tsv``, ``ndcg.tsv`` and ``coverage.tsv``.

    Tab-separated with a header row; values with 4 decimals, p-values with 4 significant digits.
    ``ndcg.tsv``: ``system, nDCG@10, queries, p_value`` (p of nDCG@10 vs the baseline, empty for
    the baseline itself or without one) then one column per other measure. ``queries`` is the
    size of the evaluation query set (the same for every system; missing queries counted 0).
    ``coverage.tsv``: ``system, queries, answered, missing, extra, duplicates_repaired``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = result
    n = len(r.query_ids)

    metrics = [["system", "measure", "value"]]
    perquery = [["system", "measure", "query_id", "value"]]
    for s in r.systems:
        for m in r.measures:
            metrics.append([s, m, _f4(r.means[s][m])])
            for q in r.query_ids:
                perquery.append([s, m, q, _f4(r.per_query[s][m][q])])

    sig = [["system", "baseline", "measure", "mean_diff", "t", "p_value"]]
    for row in r.significance:
        sig.append([row.system, row.baseline, row.measure, _f4(row.mean_diff), _f4(row.t), _p4(row.p_value)])

    others = [m for m in r.measures if m != NDCG10]
    ndcg = [["system", NDCG10, "queries", "p_value", *others]]
    for s in r.systems:
        test = r.test(s, NDCG10)
        p = _p4(test.p_value) if test is not None else ""
        ndcg.append([s, _f4(r.means[s][NDCG10]), str(n), p, *(_f4(r.means[s][m]) for m in others)])

    coverage = [["system", "queries", "answered", "missing", "extra", "duplicates_repaired"]]
    for s in r.systems:
        miss = r.missing_queries[s]
        coverage.append([s, str(n), str(n - miss), str(miss), str(r.extra_queries[s]),
                         str(r.duplicates_repaired[s])])

    for fname, rows in (("metrics.tsv", metrics), ("perquery.tsv", perquery),
                        ("significance.tsv", sig), ("ndcg.tsv", ndcg), ("coverage.tsv", coverage)):
        _atomic_write_text(out / fname, _tsv(rows))


# --------------------------------------------------------------------------------- the store step


def parse_named_runs(specs) -> dict[str, Path]:
    """``NAME=DIR`` command-line values, in order, names unique."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise IrflowError(f"--run expects NAME=DIR, got {spec!r}")
        if name in out:
            raise IrflowError(f"--run names system {name!r} twice")
        out[name] = Path(path)
    return out


class EvaluateParams(StepParams):
    """``irflow evaluate``: named runs against qrels, over one query set, t-tested against a baseline."""

    step: ClassVar[str] = "evaluate"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("queries", "--queries", "prepare", "The prepare artifact of the evaluated queries (qrels of other "
              "queries are dropped).", kind="queries"),
        Input("run", "--run", ("search", "fuse", "rerank"), "A system's name and its run artifact (repeat; the "
              "first is the default baseline).", multiple=True, named=True),
    )

    qrels: str = Field(description="irds:<id>, synthetic:<name>, or a TREC qrels file.")
    measure: list[str] = Field(default_factory=lambda: list(DEFAULT_MEASURES),
                               description="ir_measures measure (repeat).")
    baseline: str | None = Field(None, description="System that every other is t-tested against (default: the "
                                 "first run).")

    @field_validator("measure")
    @classmethod
    def _measures(cls, v):
        if not v:
            raise ValueError("give at least one measure")
        return v

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        """The systems' names (from the named runs, in order) are part of what is evaluated."""
        from .data.sources import identity

        systems = [n.split(":", 1)[1] for n in (ctx.inputs if ctx else {}) if n.startswith("run:")]
        baseline = self.baseline or systems[0]
        if baseline not in systems:
            raise IrflowError(f"--baseline {baseline!r} is not one of the runs ({', '.join(systems)})")
        return {"systems": list(systems), "qrels": identity(self.qrels), "measures": list(self.measure),
                "baseline": baseline}


def evaluate_step(runs: Mapping[str, Path], qrels_spec: str, queries_dir: Path, measures: list[str],
                  baseline: str, out: Path) -> dict:
    from .data.sources import iter_qrels
    from .prepare import load_ids
    from .search import RUN
    from .trec import dedupe_qrels, read_run

    from .progress import progress as progress_bar

    loaded, warnings = {}, []
    bar = progress_bar(len(runs) + 2, "evaluate", "step")
    for name, d in runs.items():
        loaded[name], stats = read_run(Path(d) / RUN)
        warnings += stats.warnings
        bar.update(1)
    qrels, qstats = dedupe_qrels(iter_qrels(qrels_spec), source=qrels_spec)
    warnings += qstats.warnings
    bar.update(1)
    result = evaluate_runs(loaded, qrels, measures, baseline=baseline, query_ids=load_ids(queries_dir),
                           qrels_source=qrels_spec)
    write_tables(result, out)
    bar.update(1)
    bar.close()
    return {"queries": len(result.query_ids), "warnings": warnings + result.warnings,
            "means": result.means}
