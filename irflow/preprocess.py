"""``irflow preprocess``: training sources into per-query training examples.

An example is a query with its positives (qrels grade >= ``min_grade``), its candidate negatives in
first-stage order (retrieved, and judged non-relevant or unjudged), and optional teacher scores.
Sources: qrels + a first-stage run (an irflow search artifact or any TREC run file, such as a
ColBERTv2 top-k), RankGPT permutations (teacher ranks, as ``max_rank - rank + 1``), and pairwise
teacher-score files (``pos_score neg_score qid pos_id neg_id``).

Queries are split deterministically (:mod:`irflow.data.split`) into train, validation and test;
test queries are dropped here, so they can never reach training. The output is
``examples.parquet`` with a ``part`` column (train | valid).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .errors import IrflowError
from .params import Input, KeyContext, StepParams, field_of
from .prepare import PrepareParams

log = logging.getLogger("irflow")
EXAMPLES = "examples.parquet"


class PreprocessParams(StepParams):
    """``irflow preprocess``: qrels + a candidate source into train/valid examples (test queries dropped)."""

    step: ClassVar[str] = "preprocess"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("queries", "--queries", "prepare", "Prepare artifact of ALL the collection's queries (the split is "
              "applied here).", kind="queries"),
        Input("run", "--run", ("search", "fuse", "rerank"), "First-stage run artifact whose top --depth gives "
              "candidate negatives.", required=False),
    )

    qrels: str = Field(description="irds:<id>, synthetic:<name>, or a TREC qrels file.")
    depth: int = Field(100, ge=1, description="Candidates kept per query.")
    min_grade: int = Field(1, description="Qrels grade that counts as positive.")
    negatives: Literal["first-stage", "judged", "both"] = Field(
        "first-stage", description="Negatives: the first stage's non-relevant candidates, the judged non-relevant "
        "documents (hard negatives from the assessment pools), or both.")
    split_seed: int = field_of(PrepareParams, "split_seed")
    test_size: int | float = field_of(PrepareParams, "test_size")
    valid_size: int | float = field_of(PrepareParams, "valid_size")
    run_file: str | None = Field(None, description="Or a TREC run file (e.g. a ColBERTv2 top-k).")
    rankgpt_candidates: str | None = Field(None, description="RankGPT candidate lists (JSONL).")
    rankgpt_permutations: str | None = Field(None, description="RankGPT permutations (JSON).")
    pair_scores: str | None = Field(None, description="Teacher scores: 'pos_score neg_score qid pos_id neg_id' "
                                    "lines.")

    @model_validator(mode="after")
    def _sources(self):
        if (self.rankgpt_candidates is None) != (self.rankgpt_permutations is None):
            raise ValueError("RankGPT needs both --rankgpt-candidates and --rankgpt-permutations")
        return self

    @property
    def rankgpt(self) -> tuple[str, str] | None:
        return (self.rankgpt_candidates, self.rankgpt_permutations) if self.rankgpt_candidates else None

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        from .data.sources import identity

        files = ("run_file", "rankgpt_candidates", "rankgpt_permutations", "pair_scores")
        return {"qrels": identity(self.qrels), "depth": self.depth, "min_grade": self.min_grade,
                "negatives": self.negatives, "split": [self.split_seed, self.test_size, self.valid_size],
                **{f: identity(getattr(self, f)) if getattr(self, f) else None for f in files}}


def preprocess(p: PreprocessParams, queries_dir: Path, run_path: Path | None, out: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .data.sources import iter_qrels
    from .data.split import assign
    from .prepare import load_ids
    from .trec import dedupe_qrels, read_run

    qids = load_ids(queries_dir)
    parts = assign(qids, seed=p.split_seed, test=p.test_size, valid=p.valid_size)
    qrels, qstats = dedupe_qrels(iter_qrels(p.qrels), source=p.qrels)
    warnings = list(qstats.warnings)
    ranked: dict[str, list[str]] = {}
    if run_path is not None:
        run, rstats = read_run(run_path)
        warnings += rstats.warnings
        ranked = {q: [d for d, _ in docs[: p.depth]] for q, docs in run.items()}
    teacher: dict[str, dict[str, float]] = {}
    stats: dict = {}
    if p.rankgpt:
        from .data.training import read_rankgpt

        lists, gstats = read_rankgpt(*p.rankgpt)
        stats["rankgpt"] = {"kept": gstats.kept, "dropped": gstats.dropped}
        for q, docs in lists.items():
            teacher[q] = {d: float(len(docs) - r) for r, d in enumerate(docs)}  # max_rank - rank + 1
            ranked.setdefault(q, docs)
    if p.pair_scores:
        from .data.training import read_pair_scores

        rows, pstats = read_pair_scores(p.pair_scores, known_queries=set(qids))
        stats["pair_scores"] = {"rows": len(rows), "unknown_queries": pstats.unknown_queries,
                                "duplicates": pstats.duplicates}
        for q, pos, neg, sp, sn in rows:
            t = teacher.setdefault(q, {})
            t[pos], t[neg] = sp, sn
            ranked.setdefault(q, [])
            if neg not in ranked[q]:
                ranked[q].append(neg)
    if not ranked:
        raise IrflowError("no training source given: pass a first-stage run, RankGPT lists or pair scores")
    cols = {k: [] for k in ("part", "qid", "positives", "negatives", "teacher_docs", "teacher_scores")}
    unknown = skipped_test = no_positive = 0
    for q in sorted(ranked):
        part = parts.get(q)
        if part is None:
            unknown += 1
            continue
        if part == "test":
            skipped_test += 1
            continue
        judged = qrels.get(q, {})
        positives = sorted(d for d, g in judged.items() if g >= p.min_grade)
        negatives = [d for d in ranked[q] if judged.get(d, 0) < p.min_grade]
        if not positives and q not in teacher:
            no_positive += 1
            continue
        t = teacher.get(q, {})
        cols["part"].append(part)
        cols["qid"].append(q)
        cols["positives"].append(positives)
        cols["negatives"].append(negatives)
        cols["teacher_docs"].append(sorted(t))
        cols["teacher_scores"].append([t[d] for d in sorted(t)])
    if not cols["qid"]:
        raise IrflowError("preprocessing kept no training query (no positives among the training queries?)")
    pq.write_table(pa.table(cols), out / EXAMPLES)
    if unknown:
        warnings.append(f"{unknown} queries of the training source are not among the queries and were dropped")
    for w in warnings:
        log.warning("%s", w)
    n_train = cols["part"].count("train")
    return {"train_queries": n_train, "valid_queries": len(cols["part"]) - n_train,
            "test_queries_excluded": skipped_test, "dropped_no_positive": no_positive, **stats,
            "warnings": warnings}


def load_examples(examples_dir: Path, part: str):
    import pyarrow.parquet as pq

    from .train.crossencoder import Example

    t = pq.read_table(Path(examples_dir) / EXAMPLES).to_pylist()
    return [Example(r["qid"], r["positives"], r["negatives"],
                    dict(zip(r["teacher_docs"], r["teacher_scores"])) or None) for r in t if r["part"] == part]
