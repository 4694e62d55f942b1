"""TREC run and qrels files: strict readers, a tie-free writer, and duplicate handling.

Evaluation tools disagree on runs with tied scores (trec_eval re-sorts by score and breaks ties by
docno, ignoring the rank column; other providers keep file order) and on duplicate doc ids
(trec_eval refuses them, others count them twice, which can push nDCG above 1). Duplicate qrels
rows inflate the ideal DCG. This module removes all three ambiguities:

* :func:`write_run` orders each query by ``(-score, doc_id)`` and nudges tied scores down so that
  scores are *strictly* decreasing, also after trec_eval parses them into a C ``float`` (float32;
  a one-ulp nudge of a double would still tie there). Every tool then sees the same ranking.
  Scores are written with ``repr`` so they read back bit-identical.
* :func:`read_run` validates every line and repairs (or rejects) duplicate ``(qid, docid)`` pairs.
* :func:`read_qrels` / :func:`dedupe_qrels` drop repeated qrels rows and resolve conflicting grades
  to the maximum, counting and logging each.

Every bad input raises :class:`~irflow.errors.IrflowError` naming the file and 1-based line.
Warnings go to ``logging.getLogger("irflow")`` and are also returned in the stats objects so that
callers can record them in a manifest.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import uuid
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import IrflowError
from .textfile import text_lines

log = logging.getLogger("irflow")

#: query id -> ranked ``[(doc_id, score)]``, best first.
Run = dict[str, list[tuple[str, float]]]
#: query id -> {doc_id: relevance grade}.
Qrels = dict[str, dict[str, int]]

__all__ = [
    "Qrels",
    "QrelsStats",
    "Run",
    "RunStats",
    "dedupe_qrels",
    "dedupe_ranking",
    "qid_sort_key",
    "read_qrels",
    "read_run",
    "strictly_decreasing",
    "write_run",
]


@dataclass
class RunStats:
    """What :func:`read_run` found in a run file."""

    path: str
    lines: int = 0  #: non-blank lines read
    queries: int = 0  #: distinct query ids
    entries: int = 0  #: (qid, docid) pairs kept
    duplicates: int = 0  #: duplicate (qid, docid) lines dropped (lower-scored copy)
    warnings: list[str] = field(default_factory=list)


@dataclass
class QrelsStats:
    """What :func:`dedupe_qrels` / :func:`read_qrels` found."""

    source: str | None = None
    rows: int = 0  #: rows read
    queries: int = 0  #: distinct query ids kept
    judgements: int = 0  #: distinct (qid, docid) pairs kept
    duplicates: int = 0  #: repeated rows with the same grade, dropped
    conflicts: int = 0  #: repeated rows with a different grade (the max grade is kept)
    warnings: list[str] = field(default_factory=list)


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


_DIGITS = re.compile(r"(\d+)")


def qid_sort_key(qid: str) -> tuple:
    """Natural sort key: ``"q2" < "q10"``; pieces alternate str/int, so keys always compare."""
    parts = _DIGITS.split(qid)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _rank_key(item: tuple[str, float]) -> tuple[float, str]:
    return (-item[1], item[0])


def dedupe_ranking(docs: Iterable[tuple[str, float]]) -> tuple[list[tuple[str, float]], int]:
    """Keep the highest score of each doc id; return ``(docs sorted by (-score, doc_id), n_dropped)``."""
    best: dict[str, float] = {}
    dropped = 0
    for doc, score in docs:
        if doc in best:
            dropped += 1
            if score > best[doc]:
                best[doc] = score
        else:
            best[doc] = score
    return sorted(best.items(), key=_rank_key), dropped


#: Largest finite float32: trec_eval parses scores into a C ``float``.
FLOAT32_MAX = 3.4028234663852886e38


def _f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (what trec_eval's ``float sim`` holds)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _f32_below(x: float) -> float:
    """The largest float32 strictly below the float32 value ``x``."""
    import numpy as np  # cheap, and already a dependency; kept local to keep import minimal

    return float(np.nextafter(np.float32(x), np.float32(-np.inf)))


def strictly_decreasing(docs: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Sort by ``(-score, doc_id)`` and lower tied scores so they are strictly decreasing.

    The order is unchanged; only a score that would not rank strictly below its predecessor is
    replaced. trec_eval (and pytrec_eval, which wraps it) keeps scores in a C ``float``, so two
    doubles one ulp apart still tie there and get re-ordered by docno. The rule is therefore applied
    in float32: a score whose float32 rounding is not below the float32 rounding of the previous
    score becomes the next float32 below that (an exact double too). Scores that already differ in
    float32 keep their full double value. The result is strictly decreasing both as doubles and as
    float32, and applying the function again changes nothing. Duplicate doc ids must have been
    removed before; scores beyond the float32 range raise ``ValueError``.
    """
    out: list[tuple[str, float]] = []
    prev32 = math.inf
    for doc, score in sorted(docs, key=_rank_key):
        score = float(score)
        if not abs(score) <= FLOAT32_MAX:
            raise ValueError(f"score {score!r} of doc {doc!r} is outside the float32 range trec_eval reads")
        s32 = _f32(score)
        if s32 >= prev32:
            score = s32 = _f32_below(prev32)
            if math.isinf(score):
                raise ValueError("too many tied scores at the bottom of the float32 range")
        out.append((doc, score))
        prev32 = s32
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_token(value: str, what: str, where: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise IrflowError(f"{what} {value!r} is empty or contains whitespace; TREC files cannot hold it",
                          where=where)


def write_run(path: str | os.PathLike, run: Run, tag: str) -> None:
    """Write ``run`` as ``qid Q0 docid rank score tag`` lines, atomically.

    Queries in natural sort order; documents by ``(-score, doc_id)``; scores made strictly
    decreasing within each query (see :func:`strictly_decreasing`) and written with ``repr`` so they
    round-trip exactly. Ranks start at 1. Duplicate doc ids within a query, non-finite scores and
    ids or tags containing whitespace raise :class:`IrflowError` (they would make the file
    ambiguous or unreadable).
    """
    path = Path(path)
    where = str(path)
    _check_token(tag, "run tag", where)
    lines: list[str] = []
    for qid in sorted(run, key=qid_sort_key):
        _check_token(qid, "query id", where)
        docs = run[qid]
        seen: set[str] = set()
        for doc, score in docs:
            _check_token(doc, f"doc id (query {qid})", where)
            if doc in seen:
                raise IrflowError(f"query {qid}: doc id {doc!r} appears twice in the run", where=where)
            seen.add(doc)
            if not math.isfinite(float(score)):
                raise IrflowError(f"query {qid}: doc {doc!r} has non-finite score {score!r}", where=where)
            if abs(float(score)) > FLOAT32_MAX:
                raise IrflowError(f"query {qid}: doc {doc!r} has score {score!r} beyond the float32 range "
                                  "that trec_eval reads", where=where)
        try:
            ranked = strictly_decreasing(docs)
        except ValueError as e:
            raise IrflowError(f"query {qid}: {e}", where=where) from None
        for rank, (doc, score) in enumerate(ranked, start=1):
            lines.append(f"{qid} Q0 {doc} {rank} {score!r} {tag}\n")
    _atomic_write_text(path, "".join(lines))


def _iter_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(1-based line number, whitespace-split columns)`` of the non-blank lines."""
    for n, text in text_lines(path):
        yield n, text.split()


def read_run(path: str | os.PathLike, *, repair_duplicates: bool = True,
             queries: Container[str] | None = None) -> tuple[Run, RunStats]:
    """Read and validate a TREC run file.

    Each non-blank line must have 6 whitespace-separated columns ``qid Q0 docid rank score tag``
    with an integer rank and a finite numeric score. A duplicate ``(qid, docid)`` is repaired by
    keeping the highest-scored copy (counted in :attr:`RunStats.duplicates`, with a warning) or,
    with ``repair_duplicates=False``, rejected naming the duplicate's line. Returns per-query lists
    sorted by ``(-score, doc_id)``; the rank column is validated but otherwise ignored, as
    trec_eval does. ``queries`` (qids: a set, or a dict keyed by qid), if given, keeps only those queries' lines (every
    line is still checked for its 6 columns): a re-ranker of 1,000 test queries need not hold a
    first-stage run of 100,000 training queries as well.
    """
    path = Path(path)
    where = str(path)
    stats = RunStats(path=where)
    scores: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for n, cols in _iter_lines(path):
        stats.lines += 1
        if len(cols) != 6:
            raise IrflowError(f"expected 6 columns 'qid Q0 docid rank score tag', found {len(cols)}",
                              where=where, line=n)
        qid, _q0, doc, rank, score_text, _tag = cols
        if queries is not None and qid not in queries:
            continue
        try:
            int(rank)
        except ValueError:
            raise IrflowError(f"rank {rank!r} is not an integer", where=where, line=n) from None
        try:
            score = float(score_text)
        except ValueError:
            raise IrflowError(f"score {score_text!r} is not a number", where=where, line=n) from None
        if not math.isfinite(score):
            raise IrflowError(f"score {score_text!r} is not finite", where=where, line=n)
        docs = scores.setdefault(qid, {})
        if doc in docs:
            if not repair_duplicates:
                raise IrflowError(
                    f"duplicate doc id {doc!r} for query {qid!r} (first on line {first_line[(qid, doc)]})",
                    where=where, line=n)
            stats.duplicates += 1
            if score > docs[doc]:
                docs[doc] = score
        else:
            docs[doc] = score
            if not repair_duplicates:  # only a rejection names it: a dict over every entry costs ~200 B each
                first_line[(qid, doc)] = n
    if stats.lines == 0:
        raise IrflowError("empty run file", where=where)
    if stats.duplicates:
        _warn(stats.warnings, f"{where}: {stats.duplicates} duplicate doc ids repaired "
                              "(kept the highest score of each)")
    run: Run = {qid: sorted(scores.pop(qid).items(), key=_rank_key) for qid in list(scores)}  # one copy at a time
    stats.queries = len(run)
    stats.entries = sum(len(d) for d in run.values())
    return run, stats


def dedupe_qrels(rows: Iterable[tuple[str, str, int]], *, source: str | None = None
                 ) -> tuple[Qrels, QrelsStats]:
    """Collapse ``(qid, docid, rel)`` rows to one grade per pair.

    A repeated row with the same grade is dropped; a repeated pair with a different grade keeps the
    maximum. Both are counted and logged (``source`` prefixes the messages). Works on rows from a
    file or from ``ir_datasets`` (``(q.query_id, q.doc_id, q.relevance)``).
    """
    stats = QrelsStats(source=source)
    qrels: Qrels = {}
    first_conflict: tuple[str, str, int, int] | None = None
    for qid, doc, rel in rows:
        stats.rows += 1
        rel = int(rel)
        judged = qrels.setdefault(str(qid), {})
        doc = str(doc)
        if doc in judged:
            if judged[doc] == rel:
                stats.duplicates += 1
            else:
                stats.conflicts += 1
                if first_conflict is None:
                    first_conflict = (str(qid), doc, judged[doc], rel)
                judged[doc] = max(judged[doc], rel)
        else:
            judged[doc] = rel
    prefix = f"{source}: " if source else ""
    if stats.duplicates:
        _warn(stats.warnings, f"{prefix}{stats.duplicates} duplicate qrels rows dropped")
    if stats.conflicts:
        q, d, a, b = first_conflict  # type: ignore[misc]
        _warn(stats.warnings, f"{prefix}{stats.conflicts} qrels pairs with conflicting grades, kept "
                              f"the maximum (first: query {q} doc {d}: {a} vs {b})")
    stats.queries = len(qrels)
    stats.judgements = sum(len(j) for j in qrels.values())
    return qrels, stats


def read_qrels(path: str | os.PathLike) -> tuple[Qrels, QrelsStats]:
    """Read and validate a TREC qrels file (``qid iter docid rel``, integer ``rel``), deduplicated."""
    path = Path(path)
    where = str(path)

    def rows() -> Iterator[tuple[str, str, int]]:
        for n, cols in _iter_lines(path):
            if len(cols) != 4:
                raise IrflowError(f"expected 4 columns 'qid iter docid rel', found {len(cols)}",
                                  where=where, line=n)
            qid, _it, doc, rel = cols
            try:
                grade = int(rel)
            except ValueError:
                raise IrflowError(f"relevance {rel!r} is not an integer", where=where, line=n) from None
            yield qid, doc, grade

    qrels, stats = dedupe_qrels(rows(), source=where)
    if stats.rows == 0:
        raise IrflowError("empty qrels file", where=where)
    return qrels, stats
