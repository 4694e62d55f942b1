"""``irflow preprocess``: training sources into per-query training examples.

An example is a query with its positives (qrels grade >= ``min_grade``), its candidate negatives
(by default in first-stage order: retrieved, and judged non-relevant or unjudged; or judged
non-relevant documents, or both: see :func:`preprocess`), the grades of its judged documents, and
optional teacher scores. Judged documents that are not in the corpus are dropped and counted.
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
        Input("docs", "--docs", "prepare", "The prepared corpus: judged documents that are not in it are dropped "
              "with a counted warning (needed for --negatives judged|both).", required=False, kind="docs"),
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

    def check_inputs(self, given: set[str]) -> None:
        if self.negatives != "first-stage" and "docs" not in given:
            raise IrflowError(f"--negatives {self.negatives} needs the corpus (--docs: a prepare artifact)")
        if "run" in given and self.run_file:
            raise IrflowError("give --run or --run-file, not both")

    @property
    def rankgpt(self) -> tuple[str, str] | None:
        return (self.rankgpt_candidates, self.rankgpt_permutations) if self.rankgpt_candidates else None

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        from .data.sources import identity

        files = ("run_file", "rankgpt_candidates", "rankgpt_permutations", "pair_scores")
        return {"qrels": identity(self.qrels), "depth": self.depth, "min_grade": self.min_grade,
                "negatives": self.negatives, "split": [self.split_seed, self.test_size, self.valid_size],
                **{f: identity(getattr(self, f)) if getattr(self, f) else None for f in files}}


NEGATIVES = ("first-stage", "judged", "both")


def _in_corpus(docs_dir: Path, doc_ids: set[str]) -> set[str]:
    """Which of ``doc_ids`` the prepared corpus holds.

    Looked up with Arrow's hash set over the memory-mapped id column, so the full MS MARCO (8.8M
    ids) is never turned into Python strings: only the few judged and candidate ids are.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from .data import arrow

    if not doc_ids:
        return set()
    ids = arrow.open_table(Path(docs_dir) / arrow.TEXTS).column("id")
    wanted = pa.array(sorted(doc_ids), pa.string())
    mask = pc.is_in(wanted, value_set=ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0))
    return {d for d, keep in zip(wanted.to_pylist(), mask.to_pylist()) if keep}


def _interleave(a: list[str], b: list[str]) -> list[str]:
    """``a[0], b[0], a[1], b[1], ...`` without repeats: any prefix a trainer takes
    (``negatives[:negatives_depth]``) holds both kinds of negatives."""
    out: dict[str, None] = {}
    for i in range(max(len(a), len(b))):
        for lst in (a, b):
            if i < len(lst):
                out.setdefault(lst[i], None)
    return list(out)


def preprocess(p: PreprocessParams, queries_dir: Path, run_path: Path | None, out: Path, *,
               docs_dir: Path | None = None, negatives: str = "first-stage") -> dict:
    """Write ``examples.parquet``; return the stats (counts and warnings) for the manifest.

    ``docs_dir`` (the prepared corpus) lets judged documents that are not in the corpus be dropped
    with a counted warning: a corpus that is a subset of the judged one (the MS MARCO subset, a
    deduplicated or withdrawn document) is normal, and a positive the trainer cannot look up would
    stop training much later. Without it, ids are trusted as given.

    ``negatives`` chooses the training negatives: ``first-stage`` (the run's candidates that are not
    positives, in run order), ``judged`` (qrels entries graded below ``min_grade`` that are in the
    corpus: real hard negatives from strong systems' pools, highest grade first, then in run order),
    or ``both`` (the two interleaved, so every depth prefix holds both). Validation examples keep
    first-stage negatives whenever the query has a run: validation measures re-ranking of the first
    stage, as evaluation does. Judged negatives need ``docs_dir``.

    Every example keeps the grades of its judged documents in the corpus (``judged_docs`` /
    ``judged_grades``), so graded losses can use them; positives are those with grade >= min_grade.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .data.sources import iter_qrels
    from .data.split import assign
    from .prepare import load_ids
    from .trec import dedupe_qrels, read_run

    if negatives not in NEGATIVES:
        raise IrflowError(f"negatives must be one of {', '.join(NEGATIVES)}, not {negatives!r}")
    if negatives != "first-stage" and docs_dir is None:
        raise IrflowError(f"negatives {negatives!r} needs the corpus (docs): judged documents that are not in "
                          "it must be dropped")
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
    stats: dict = {"negatives": negatives}
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
    sources = set(ranked)
    if negatives != "first-stage":
        sources |= {q for q, judged in qrels.items() if any(g < p.min_grade for g in judged.values())}
    if not sources:
        raise IrflowError("no training source given: pass a first-stage run, RankGPT lists or pair scores")

    # Which referenced documents exist: only those of queries that can become examples.
    usable = sorted(q for q in sources if parts.get(q) in ("train", "valid"))
    present: set[str] | None = None
    missing = {"positives": 0, "judged_negatives": 0, "candidates": 0, "teacher_docs": 0}
    if docs_dir is not None:
        referenced: set[str] = set()
        for q in usable:
            referenced.update(qrels.get(q, {}))
            referenced.update(ranked.get(q, ()))
            referenced.update(teacher.get(q, {}))
        present = _in_corpus(docs_dir, referenced)

    def here(d: str) -> bool:
        return present is None or d in present

    cols = {k: [] for k in ("part", "qid", "positives", "negatives", "teacher_docs", "teacher_scores",
                            "judged_docs", "judged_grades")}
    unknown = skipped_test = no_positive = 0
    for q in sorted(sources):
        part = parts.get(q)
        if part is None:
            unknown += 1
            continue
        if part == "test":
            skipped_test += 1
            continue
        judged_all = qrels.get(q, {})
        judged = {d: g for d, g in judged_all.items() if here(d)}
        positives = sorted(d for d, g in judged.items() if g >= p.min_grade)
        missing["positives"] += sum(1 for d, g in judged_all.items() if g >= p.min_grade and d not in judged)
        missing["judged_negatives"] += sum(1 for d, g in judged_all.items() if g < p.min_grade and d not in judged)
        cands = ranked.get(q, [])
        kept_cands = [d for d in cands if here(d)]
        missing["candidates"] += len(cands) - len(kept_cands)
        t_all = teacher.get(q, {})
        t = {d: x for d, x in t_all.items() if here(d)}
        missing["teacher_docs"] += len(t_all) - len(t)
        first = [d for d in kept_cands if judged.get(d, 0) < p.min_grade]
        rank = {d: i for i, d in enumerate(kept_cands)}
        judged_neg = sorted((d for d, g in judged.items() if g < p.min_grade),
                            key=lambda d: (-judged[d], rank.get(d, len(rank)), d))
        mode = "first-stage" if (part == "valid" and q in ranked) else negatives
        negs = {"first-stage": first, "judged": judged_neg, "both": _interleave(first, judged_neg)}[mode]
        if not positives and q not in teacher:
            no_positive += 1
            continue
        cols["part"].append(part)
        cols["qid"].append(q)
        cols["positives"].append(positives)
        cols["negatives"].append(negs)
        cols["teacher_docs"].append(sorted(t))
        cols["teacher_scores"].append([t[d] for d in sorted(t)])
        cols["judged_docs"].append(sorted(judged))
        cols["judged_grades"].append([judged[d] for d in sorted(judged)])
    if not cols["qid"]:
        raise IrflowError("preprocessing kept no training query (no positives among the training queries?)")
    schema = pa.schema([("part", pa.string()), ("qid", pa.string()), ("positives", pa.list_(pa.string())),
                        ("negatives", pa.list_(pa.string())), ("teacher_docs", pa.list_(pa.string())),
                        ("teacher_scores", pa.list_(pa.float64())), ("judged_docs", pa.list_(pa.string())),
                        ("judged_grades", pa.list_(pa.int64()))])
    pq.write_table(pa.table(cols, schema=schema), out / EXAMPLES)
    if unknown:
        warnings.append(f"{unknown} queries of the training source are not among the queries and were dropped")
    if present is not None and any(missing.values()):
        detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in missing.items() if v)
        warnings.append(f"{p.qrels}: documents not in the corpus were dropped from the training examples "
                        f"({detail}); normal for a corpus that is a subset of the judged one")
    for w in warnings:
        log.warning("%s", w)
    n_train = cols["part"].count("train")
    return {"train_queries": n_train, "valid_queries": len(cols["part"]) - n_train,
            "test_queries_excluded": skipped_test, "dropped_no_positive": no_positive,
            "not_in_corpus": missing if present is not None else None, **stats, "warnings": warnings}


def load_examples(examples_dir: Path, part: str):
    """The examples of ``part`` (train / valid) as an :class:`irflow.train.examples.ExampleTable`."""
    from .train.examples import ExampleTable

    return ExampleTable.read(examples_dir, part)
