"""Rank fusion: reciprocal rank fusion and CombSUM over :data:`irflow.trec.Run` dictionaries.

Input rankings are re-sorted by ``(-score, doc_id)`` (the order :func:`irflow.trec.write_run`
writes and every evaluator then sees) and duplicate doc ids keep their highest score, so fusing
in-memory runs and fusing the same runs read back from disk give the same result. Outputs are
sorted by ``(-score, doc_id)`` and cut to ``depth`` documents per query when given.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field

from .errors import IrflowError
from .params import Input, StepParams, KeyContext
from .trec import Run, dedupe_ranking

log = logging.getLogger("irflow")

__all__ = ["NORMS", "combsum", "rrf"]

NORMS = ("minmax", "zscore", None)


def _ranked(run: Run, qid: str, which: int) -> list[tuple[str, float]]:
    docs, dropped = dedupe_ranking(run.get(qid, ()))
    if dropped:
        log.warning("fusion input %d, query %s: %d duplicate doc ids, kept the highest score",
                    which, qid, dropped)
    return docs


def _finish(scores: dict[str, float], depth: int | None) -> list[tuple[str, float]]:
    out = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return out[:depth] if depth is not None else out


def _check(runs: Sequence[Run], depth: int | None) -> list[str]:
    if not runs:
        raise IrflowError("fusion needs at least one run")
    if depth is not None and depth < 1:
        raise IrflowError(f"fusion depth must be >= 1, got {depth}")
    qids: set[str] = set()
    for run in runs:
        qids.update(run)
    return sorted(qids)


def rrf(runs: Sequence[Run], k: int = 60, depth: int | None = None) -> Run:
    """Reciprocal rank fusion (Cormack et al., 2009): ``score(d) = sum_r 1 / (k + rank_r(d))``.

    ``rank_r`` is 1-based over run ``r`` sorted by ``(-score, doc_id)``; a run that does not
    retrieve ``d`` contributes nothing. ``depth`` cuts the fused output (not the inputs).
    """
    if k < 0:
        raise IrflowError(f"RRF k must be >= 0, got {k}")
    fused: Run = {}
    for qid in _check(runs, depth):
        scores: dict[str, float] = {}
        for i, run in enumerate(runs):
            for rank, (doc, _score) in enumerate(_ranked(run, qid, i), start=1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
        fused[qid] = _finish(scores, depth)
    return fused


def _normalise(docs: list[tuple[str, float]], norm: str | None) -> dict[str, float]:
    if norm is None or not docs:
        return {d: float(s) for d, s in docs}
    values = [float(s) for _, s in docs]
    if norm == "minmax":
        lo, hi = min(values), max(values)
        if hi == lo:  # one distinct score: every retrieved doc is "the best" of this run
            return {d: 1.0 for d, _ in docs}
        return {d: (float(s) - lo) / (hi - lo) for d, s in docs}
    # zscore with the population standard deviation
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    if std == 0.0:
        return {d: 0.0 for d, _ in docs}
    return {d: (float(s) - mean) / std for d, s in docs}


def combsum(runs: Sequence[Run], norm: str | None = "minmax", weights: Sequence[float] | None = None,
            depth: int | None = None) -> Run:
    """Weighted CombSUM: ``score(d) = sum_r w_r * norm_r(score_r(d))``.

    ``norm`` is applied per run and per query: ``"minmax"`` maps to [0, 1] (a query whose scores are
    all equal maps to 1.0), ``"zscore"`` to ``(s - mean) / std`` with the population std (0.0 when
    the std is 0), ``None`` keeps raw scores. A doc a run does not retrieve contributes 0.
    ``weights`` defaults to 1 for every run.
    """
    if norm not in NORMS:
        raise IrflowError(f"unknown score normalisation {norm!r}; choose one of minmax, zscore or none")
    qids = _check(runs, depth)
    if weights is None:
        weights = [1.0] * len(runs)
    if len(weights) != len(runs):
        raise IrflowError(f"{len(weights)} fusion weights for {len(runs)} runs")
    if not all(math.isfinite(float(w)) for w in weights):
        raise IrflowError(f"fusion weights must be finite, got {list(weights)}")
    fused: Run = {}
    for qid in qids:
        scores: dict[str, float] = {}
        for i, (run, w) in enumerate(zip(runs, weights)):
            for doc, s in _normalise(_ranked(run, qid, i), norm).items():
                scores[doc] = scores.get(doc, 0.0) + float(w) * s
        fused[qid] = _finish(scores, depth)
    return fused


# --------------------------------------------------------------------------------- the store step


class FuseParams(StepParams):
    """``irflow fuse``: reciprocal rank fusion or normalised CombSUM of two or more runs."""

    step: ClassVar[str] = "fuse"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("run", "--run", ("search", "fuse", "rerank"), "Search/fuse/rerank artifacts to combine (repeat, "
              "at least two).", multiple=True, min_count=2),
    )

    method: Literal["rrf", "combsum"] = Field("rrf", description="Reciprocal rank fusion or normalised CombSUM.")
    rrf_k: int = Field(60, ge=1, description="RRF's rank constant.")
    norm: Literal["minmax", "zscore", "none"] = Field("minmax", description="Per-query score normalisation for "
                                                      "combsum.")
    k: int = Field(1000, ge=1, description="Results kept per query.")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        """Only the parameters the method actually uses."""
        return {"method": self.method, "rrf_k": self.rrf_k if self.method == "rrf" else None,
                "norm": self.norm if self.method == "combsum" else None, "k": self.k}


def fuse_runs(p: FuseParams, run_dirs: list, out) -> dict:
    from pathlib import Path

    from .search import RUN
    from .trec import read_run, write_run

    runs, warnings = [], []
    for d in run_dirs:
        run, stats = read_run(Path(d) / RUN)
        runs.append(run)
        warnings += stats.warnings
    if p.method == "rrf":
        fused = rrf(runs, k=p.rrf_k, depth=p.k)
    else:
        fused = combsum(runs, norm=None if p.norm == "none" else p.norm, depth=p.k)
    write_run(Path(out) / RUN, fused, f"fuse-{p.method}")
    return {"queries": len(fused), "warnings": warnings}
