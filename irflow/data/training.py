"""Readers of training sources: RankGPT teacher permutations and pairwise teacher scores.

Both readers validate strictly. A file that cannot be read as the documented format (missing, not
UTF-8, malformed line, wrong column count, non-numeric or non-finite score) raises
:class:`~irflow.errors.IrflowError` naming the file and 1-based line. Content that is well formed but
unusable for training (a truncated or invalid teacher permutation, ids outside the collection,
repeated rows) is dropped, counted in the returned stats object and summarised in a warning on
``logging.getLogger("irflow")`` (also kept in ``stats.warnings`` for manifests). If nothing at
all survives, the reader raises: an empty training set is always a mistake (wrong ``n``, wrong
collection...).

No torch here: these run in data-preparation steps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IrflowError
from ..textfile import open_binary, text_lines

log = logging.getLogger("irflow")

__all__ = [
    "PairScoreStats",
    "RankGPTStats",
    "parse_rankgpt_permutation",
    "read_pair_scores",
    "read_rankgpt",
]

#: How many example ids the stats objects keep for each kind of drop.
MAX_EXAMPLES = 10


def _warn(warnings: list[str], message: str) -> None:
    log.warning("%s", message)
    warnings.append(message)


# ------------------------------------------------------------------------------------- RankGPT

_MISSING = object()
_BRACKETED = re.compile(r"\[\s*([0-9]+)\s*\]")


def _permutation_or_reason(text: object, n: int) -> list[int] | str:
    """The 0-based permutation, or why ``text`` is not a complete permutation of ``1..n``."""
    if not isinstance(text, str):
        return "permutation is not a string"
    tokens = [tok.strip() for tok in text.split(">")]
    out: list[int] = []
    seen: set[int] = set()
    for tok in tokens:
        match = _BRACKETED.fullmatch(tok)
        if match is None:
            return "token is not [int]"
        k = int(match.group(1))
        if not 1 <= k <= n:
            return "index out of range"
        if k in seen:
            return "repeated index"
        seen.add(k)
        out.append(k - 1)
    if len(out) != n:
        return "wrong count"
    return out


def parse_rankgpt_permutation(text: str, n: int) -> list[int] | None:
    """Parse a RankGPT answer ``"[5] > [18] > [1] > ..."`` into 0-based candidate indices, best first.

    Tokens are separated by ``>``; each must be ``[k]`` with a decimal integer ``k`` (spaces around
    and inside the brackets are allowed). Returns ``None`` (= drop the query) if a token is not of
    that form, an index is outside ``1..n``, an index repeats, or there are not exactly ``n``
    indices: the result is always a permutation of ``range(n)``.
    """
    got = _permutation_or_reason(text, n)
    return got if isinstance(got, list) else None


@dataclass
class RankGPTStats:
    """What :func:`read_rankgpt` found."""

    candidates: str  #: the candidates JSONL path
    permutations: str  #: the permutations JSON path
    form: str = ""  #: ``"list"`` or ``"dict"``: the permutations file's form
    queries: int = 0  #: queries (non-blank lines) in the candidates file
    kept: int = 0  #: queries returned
    dropped: int = 0  #: queries dropped (see ``drop_reasons``)
    dropped_qids: list[str] = field(default_factory=list)  #: the first few dropped query ids
    drop_reasons: dict[str, int] = field(default_factory=dict)  #: reason -> number of queries
    unmatched_permutations: int = 0  #: dict form only: permutations of query ids not in the candidates
    warnings: list[str] = field(default_factory=list)


def _is_id(value: object) -> bool:
    return (isinstance(value, str) and value.strip() != "" and value == value.strip()) or (
        isinstance(value, int) and not isinstance(value, bool))


def _candidates(path: Path) -> Iterator[tuple[int, str, list[str] | str]]:
    """Yield ``(line, query id, doc ids ordered by rank | reason to drop)`` of a candidates JSONL."""
    where = str(path)
    for n, text in text_lines(path):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise IrflowError(f"not valid JSON: {e.msg} (column {e.colno})", where=where, line=n) from None
        if not isinstance(obj, dict):
            raise IrflowError(f"expected a JSON object, found {type(obj).__name__}", where=where, line=n)
        if "query_id" not in obj:
            raise IrflowError("missing key 'query_id'", where=where, line=n)
        qid = obj["query_id"]
        if not _is_id(qid):
            raise IrflowError(f"query_id {qid!r} is not a non-empty string or integer", where=where, line=n)
        qid = str(qid)
        passages = obj.get("retrieved_passages")
        if not isinstance(passages, list):
            raise IrflowError(f"query {qid}: 'retrieved_passages' must be a list, found "
                              f"{type(passages).__name__ if 'retrieved_passages' in obj else 'nothing'}",
                              where=where, line=n)
        ranked: list[tuple[int, str]] = []
        for i, p in enumerate(passages):
            if not isinstance(p, dict) or "docid" not in p or "rank" not in p:
                raise IrflowError(f"query {qid}: retrieved_passages[{i}] must be an object with "
                                  "'rank' and 'docid'", where=where, line=n)
            rank, doc = p["rank"], p["docid"]
            if not isinstance(rank, int) or isinstance(rank, bool):
                raise IrflowError(f"query {qid}: retrieved_passages[{i}].rank {rank!r} is not an integer",
                                  where=where, line=n)
            if not _is_id(doc):
                raise IrflowError(f"query {qid}: retrieved_passages[{i}].docid {doc!r} is not a non-empty "
                                  "string or integer", where=where, line=n)
            ranked.append((rank, str(doc)))
        ranks = [r for r, _ in ranked]
        docs = [d for _, d in ranked]
        if len(set(ranks)) != len(ranks):
            yield n, qid, "duplicate candidate rank"
        elif len(set(docs)) != len(docs):
            yield n, qid, "duplicate candidate doc id"
        else:
            yield n, qid, [d for _, d in sorted(ranked)]


def read_rankgpt(candidates_path: str | os.PathLike, permutations_path: str | os.PathLike, *,
                 n: int = 20) -> tuple[dict[str, list[str]], RankGPTStats]:
    """Read RankGPT teacher rankings: ``query id -> doc ids in the teacher's order``, best first.

    ``candidates_path`` is JSONL, one query per line::

        {"query_id": "1185869", "retrieved_passages": [{"rank": 1, "docid": "7067032"}, ...]}

    (other keys, e.g. texts, are ignored; ids may be strings or integers). Candidates are ordered by
    ``rank``; permutation index ``[k]`` refers to the k-th candidate in that order.

    ``permutations_path`` is one JSON document in either form:

    * a **list** of permutation strings aligned with the non-blank JSONL lines (the released
      ``marco-train-100k-gpt3.5.json``; RankGPT's ``specialization.py`` zips the two): its length
      must equal the number of queries;
    * a **dict** ``{query_id: permutation string}``; queries without an entry are dropped, entries
      for unknown queries are counted in ``unmatched_permutations``.

    A query is dropped (counted in ``stats.dropped`` / ``stats.drop_reasons``, first ids in
    ``stats.dropped_qids``) when its permutation is not a complete permutation of ``1..n`` (see
    :func:`parse_rankgpt_permutation`; e.g. the teacher's answer was truncated), is not a string
    (e.g. ``null``) or is missing, or when the query does not have exactly ``n`` candidates or has
    duplicate candidate ranks or doc ids. A malformed JSONL line (not JSON, missing or mistyped
    keys), a repeated query id, an unreadable or malformed permutations file, a list of the wrong
    length, or a result with no query at all raise :class:`IrflowError` naming file and line.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise IrflowError(f"RankGPT: the number of candidates n must be an integer >= 1, got {n!r}")
    cpath, ppath = Path(candidates_path), Path(permutations_path)
    cwhere, pwhere = str(cpath), str(ppath)
    stats = RankGPTStats(candidates=cwhere, permutations=pwhere)

    entries: list[tuple[str, list[str] | str]] = []
    first_line: dict[str, int] = {}
    for line, qid, docs in _candidates(cpath):
        if qid in first_line:
            raise IrflowError(f"query id {qid!r} appears twice (first on line {first_line[qid]})",
                              where=cwhere, line=line)
        first_line[qid] = line
        if isinstance(docs, list) and len(docs) != n:
            docs = "wrong candidate count"
        entries.append((qid, docs))
    stats.queries = len(entries)
    if not entries:
        raise IrflowError("empty candidates file", where=cwhere)

    perms = _load_permutations(ppath)
    if isinstance(perms, list):
        stats.form = "list"
        if len(perms) != len(entries):
            raise IrflowError(f"{len(perms)} permutations for {len(entries)} queries in {cwhere}; the list "
                              "form must hold one permutation per candidates line, in order", where=pwhere)
        texts: list[object] = list(perms)
    else:
        stats.form = "dict"
        texts = [perms.get(qid, _MISSING) for qid, _ in entries]
        stats.unmatched_permutations = sum(1 for k in perms if k not in first_line)

    reasons: Counter[str] = Counter()
    result: dict[str, list[str]] = {}
    for (qid, docs), text in zip(entries, texts):
        if isinstance(docs, str):
            reason: str | list[int] = docs
        elif text is _MISSING:
            reason = "no permutation"
        else:
            reason = _permutation_or_reason(text, n)
        if isinstance(reason, str):
            reasons[reason] += 1
            stats.dropped += 1
            if len(stats.dropped_qids) < MAX_EXAMPLES:
                stats.dropped_qids.append(qid)
            continue
        result[qid] = [docs[i] for i in reason]  # type: ignore[index]
    stats.kept = len(result)
    stats.drop_reasons = dict(sorted(reasons.items()))

    if stats.dropped:
        detail = ", ".join(f"{k}: {v}" for k, v in stats.drop_reasons.items())
        _warn(stats.warnings, f"{pwhere}: dropped {stats.dropped} of {stats.queries} queries ({detail}; "
                              f"first: {', '.join(stats.dropped_qids)})")
    if stats.unmatched_permutations:
        _warn(stats.warnings, f"{pwhere}: {stats.unmatched_permutations} permutations for query ids that "
                              f"are not in {cwhere} (ignored)")
    if not result:
        detail = ", ".join(f"{k}: {v}" for k, v in stats.drop_reasons.items())
        raise IrflowError(f"no usable query: all {stats.queries} dropped ({detail}); is n={n} right?",
                          where=pwhere)
    return result, stats


def _load_permutations(path: Path) -> list | dict[str, object]:
    where = str(path)
    with open_binary(path) as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise IrflowError(f"not valid UTF-8 ({e.reason})", where=where, line=line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise IrflowError("empty permutations file", where=where)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise IrflowError(f"not valid JSON: {e.msg} (column {e.colno})", where=where, line=e.lineno) from None
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        return {str(k): v for k, v in doc.items()}
    raise IrflowError(f"expected a JSON list of permutation strings or an object query_id -> permutation, "
                      f"found {type(doc).__name__}", where=where)


# ---------------------------------------------------------------------------------- pair scores


@dataclass
class PairScoreStats:
    """What :func:`read_pair_scores` found. Drop counts are lines, not distinct ids."""

    path: str
    lines: int = 0  #: non-blank lines read
    kept: int = 0  #: rows returned
    unknown_queries: int = 0  #: lines dropped: query id not in ``known_queries``
    unknown_docs: int = 0  #: lines dropped: pos or neg doc id not in ``known_docs`` (query known)
    duplicates: int = 0  #: lines dropped: ``(qid, pos, neg)`` seen before (the first copy is kept)
    conflicting_duplicates: int = 0  #: of those, how many had other scores than the kept copy
    same_doc: int = 0  #: lines dropped: pos id == neg id (no margin to learn)
    unknown_query_examples: list[str] = field(default_factory=list)  #: first few unknown query ids
    unknown_doc_examples: list[str] = field(default_factory=list)  #: first few unknown doc ids
    warnings: list[str] = field(default_factory=list)


PairScore = tuple[str, str, str, float, float]


def read_pair_scores(path: str | os.PathLike, *, known_queries: Container[str] | None = None,
                     known_docs: Container[str] | None = None) -> tuple[list[PairScore], PairScoreStats]:
    """Read pairwise teacher scores in the published Hofstätter format.

    One whitespace-separated line (tab in the released files) per triple::

        pos_score  neg_score  query_id  pos_passage_id  neg_passage_id

    Returns ``[(qid, pos_id, neg_id, pos_score, neg_score)]`` in file order. A line without exactly
    5 columns or with a score that is not a finite number raises :class:`IrflowError` naming file
    and line, as do a missing, non-UTF-8 or empty file. Dropped and counted: a query id not in
    ``known_queries`` or a doc id not in ``known_docs`` (checked only when given; any container with
    ``in``), a repeated ``(qid, pos, neg)`` (the first copy is kept; a repeat with other scores is
    also counted in ``conflicting_duplicates``) and a line whose two doc ids are the same. If no line
    survives the filters, :class:`IrflowError` is raised (usually the wrong collection).

    Ids are interned, but the result for the full MS MARCO file (~40M triples) still needs many GB.
    """
    path = Path(path)
    where = str(path)
    stats = PairScoreStats(path=where)
    rows: list[PairScore] = []
    first: dict[tuple[str, str, str], int] = {}
    ids: dict[str, str] = {}
    intern = ids.setdefault
    for n, text in text_lines(path):
        stats.lines += 1
        cols = text.split()
        if len(cols) != 5:
            raise IrflowError(f"expected 5 columns 'pos_score neg_score query_id pos_id neg_id', "
                              f"found {len(cols)}", where=where, line=n)
        scores = []
        for name, value in (("pos_score", cols[0]), ("neg_score", cols[1])):
            try:
                x = float(value)
            except ValueError:
                raise IrflowError(f"{name} {value!r} is not a number", where=where, line=n) from None
            if not math.isfinite(x):
                raise IrflowError(f"{name} {value!r} is not finite", where=where, line=n)
            scores.append(x)
        qid, pos, neg = cols[2], cols[3], cols[4]
        if known_queries is not None and qid not in known_queries:
            stats.unknown_queries += 1
            if len(stats.unknown_query_examples) < MAX_EXAMPLES and qid not in stats.unknown_query_examples:
                stats.unknown_query_examples.append(qid)
            continue
        if known_docs is not None:
            missing = [d for d in (pos, neg) if d not in known_docs]
            if missing:
                stats.unknown_docs += 1
                for d in missing:
                    if len(stats.unknown_doc_examples) < MAX_EXAMPLES and d not in stats.unknown_doc_examples:
                        stats.unknown_doc_examples.append(d)
                continue
        if pos == neg:
            stats.same_doc += 1
            continue
        key = (intern(qid, qid), intern(pos, pos), intern(neg, neg))
        if key in first:
            stats.duplicates += 1
            kept = rows[first[key]]
            if (kept[3], kept[4]) != (scores[0], scores[1]):
                stats.conflicting_duplicates += 1
            continue
        first[key] = len(rows)
        rows.append((key[0], key[1], key[2], scores[0], scores[1]))
    stats.kept = len(rows)

    if stats.lines == 0:
        raise IrflowError("empty pair-score file", where=where)
    if stats.unknown_queries:
        _warn(stats.warnings, f"{where}: {stats.unknown_queries} lines dropped, query id not in the query "
                              f"set (first: {', '.join(stats.unknown_query_examples)})")
    if stats.unknown_docs:
        _warn(stats.warnings, f"{where}: {stats.unknown_docs} lines dropped, doc id not in the collection "
                              f"(first: {', '.join(stats.unknown_doc_examples)})")
    if stats.duplicates:
        _warn(stats.warnings, f"{where}: {stats.duplicates} duplicate (qid, pos, neg) lines dropped, first "
                              f"copy kept ({stats.conflicting_duplicates} with different scores)")
    if stats.same_doc:
        _warn(stats.warnings, f"{where}: {stats.same_doc} lines dropped, positive and negative are the "
                              "same doc")
    if not rows:
        raise IrflowError(f"no usable pair among {stats.lines} lines ({stats.unknown_queries} unknown "
                          f"queries, {stats.unknown_docs} unknown docs, {stats.duplicates} duplicates, "
                          f"{stats.same_doc} same-doc pairs); wrong collection?", where=where)
    return rows, stats
