"""Deterministic query splits for collections without a training split.

Queries are ordered by a seeded hash of their id and cut into test, validation and train parts of
exact sizes, so the split depends only on the query ids and the seed: any step (prepare,
preprocess, evaluate) recomputes the same assignment without passing files around, and the test
queries never reach training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from ..errors import IrflowError

PARTS = ("train", "valid", "test")


def _size(value: float | int, n: int, what: str) -> int:
    if isinstance(value, float) and 0 <= value < 1:
        return round(value * n)
    if isinstance(value, int) and 0 <= value <= n:
        return value
    raise IrflowError(f"{what} must be a fraction in [0, 1) or a count in [0, {n}], got {value!r}")


def assign(query_ids: Iterable[str], *, seed: int, test: float | int, valid: float | int = 0) -> dict[str, str]:
    """query id -> "train" | "valid" | "test"."""
    qids = list(dict.fromkeys(query_ids))
    n = len(qids)
    n_test, n_valid = _size(test, n, "test size"), _size(valid, n, "validation size")
    if n_test + n_valid >= n:
        raise IrflowError(f"split leaves no training queries ({n} queries, {n_test} test, {n_valid} validation)")
    order = sorted(qids, key=lambda q: hashlib.sha256(f"{seed}\0{q}".encode()).digest())
    return {q: "test" if i < n_test else "valid" if i < n_test + n_valid else "train" for i, q in enumerate(order)}
