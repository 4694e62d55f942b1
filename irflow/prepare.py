"""``irflow prepare``: read a corpus or query set once, validate it, and store it as Arrow.

Texts go to ``texts.arrow`` (id, text); with a tokenizer, token ids go to ``tokens.arrow`` in the
same row order, truncated to ``max_length``, so every later encode memory-maps them instead of
tokenising again. ``tokens.json`` records which tokenizer made them (a digest of its vocabulary and
pipeline, see :func:`irflow.models.resolve.check_tokenizer`) and the max length: ids are only
meaningful to a model with that very tokenizer, and every reader checks. Validation happens here, while streaming: duplicate ids, non-UTF-8 bytes,
malformed lines and empty collections stop the step before anything is published.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from .data import arrow
from .data.sources import identity, iter_texts
from .errors import IrflowError
from .params import KeyContext, StepParams
from .progress import progress as progress_bar

log = logging.getLogger("irflow")


SplitPart = Literal["train", "valid", "test"]


class PrepareParams(StepParams):
    """``irflow prepare``: a dataset, optionally tokenised, optionally one part of a query split."""

    step: ClassVar[str] = "prepare"

    dataset: str = Field(description="irds:<id>, synthetic:<name>, or a JSONL/TSV file.")
    kind: Literal["docs", "queries"] = Field("docs", description="Documents or queries.")
    tokenizer: str | None = Field(None,
                                  description="Model whose tokenizer to apply (HF id or directory). Without it "
                                  "only texts are stored (what BM25 needs).")
    max_length: int = Field(256, ge=2, description="Truncate token sequences to this length (with --tokenizer).")
    split: SplitPart | None = Field(None, description="Keep only this part of a deterministic query split "
                                    "(queries only).")
    split_seed: int = Field(42, description="Seed of the query split.")
    test_size: int | float = Field(0.5, ge=0, description="Held-out test queries: a fraction (0.5) or a count (40).")
    valid_size: int | float = Field(0.1, ge=0, description="Validation queries: a fraction or a count.")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        from .models.resolve import identity as model_identity

        params = {
            "dataset": identity(self.dataset),
            "kind": self.kind,
            "tokenizer": model_identity(self.tokenizer) if self.tokenizer else None,
            "max_length": self.max_length if self.tokenizer else None,
        }
        if self.split is not None:  # absent rather than null, so unsplit keys stay as they were
            params["split"] = [self.split, self.split_seed, self.test_size, self.valid_size]
        return params


def prepare(p: PrepareParams, out: Path, *, chunk: int = 2048) -> dict:
    import pyarrow as pa

    if p.kind not in ("docs", "queries"):
        raise IrflowError(f"kind must be docs or queries, not {p.kind!r}")
    tok = None
    if p.tokenizer:
        from .models.resolve import load_tokenizer

        tok = load_tokenizer(p.tokenizer)
    texts = arrow.BatchWriter(out / arrow.TEXTS, pa.schema([("id", pa.string()), ("text", pa.string())]))
    tokens = (
        arrow.BatchWriter(out / arrow.TOKENS, pa.schema([("input_ids", pa.list_(pa.int32()))]))
        if tok is not None
        else None
    )
    what = {"docs": "doc", "queries": "query"}[p.kind]
    seen: dict[str, int | None] = {}
    n = empty = 0
    ids: list[str] = []
    bodies: list[str] = []

    def flush():
        if tokens is not None and bodies:
            enc = tok(bodies, add_special_tokens=True, truncation=True, max_length=p.max_length)
            tokens.add_many(input_ids=enc["input_ids"])
        texts.add_many(id=ids, text=bodies)
        ids.clear()
        bodies.clear()

    records = iter_texts(p.dataset, p.kind)  # type: ignore[arg-type]
    if p.split is not None:
        from .data.split import assign

        if p.kind != "queries":
            raise IrflowError("--split applies to queries only")
        part, seed, test, valid = p.split, p.split_seed, p.test_size, p.valid_size
        records = list(records)
        parts = assign((r[0] for r in records), seed=seed, test=test, valid=valid)
        records = [r for r in records if parts[r[0]] == part]
    bar = progress_bar(None, f"prepare {p.kind} ({p.dataset})", "row")
    try:
        for rid, text, where, line in records:
            if not rid:
                raise IrflowError(f"empty {what} id", where=where or p.dataset, line=line)
            if rid in seen:
                first = seen[rid]
                at = f" (first at line {first})" if first else ""
                raise IrflowError(f"duplicate {what} id {rid!r}{at}", where=where or p.dataset, line=line)
            seen[rid] = line
            text = " ".join(text.split())  # one space between words: newlines/tabs would break TSV exports
            empty += not text
            ids.append(rid)
            bodies.append(text)
            n += 1
            if len(ids) >= chunk:
                flush()
                bar.update(chunk)
        flush()
        bar.update(n % chunk)
    finally:
        bar.close()
        texts.close()
        if tokens is not None:
            tokens.close()
    if n == 0:
        raise IrflowError(f"the collection has no {p.kind}", where=p.dataset)
    stats: dict = {}
    if tok is not None:
        import json

        from .models.resolve import TOKENS_RECORD, tokenizer_record

        rec = tokenizer_record(tok, p.tokenizer, p.max_length)
        (out / TOKENS_RECORD).write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
        stats["tokenizer"] = rec
    warnings = []
    if empty:
        warnings.append(f"{p.dataset}: {empty} {p.kind} with empty text")
        log.warning("%s", warnings[-1])
    return {"rows": n, "empty_texts": empty, **stats, "warnings": warnings}


def load_ids(prepared: Path) -> list[str]:
    return arrow.open_table(Path(prepared) / arrow.TEXTS).column("id").to_pylist()


def load_texts(prepared: Path) -> tuple[list[str], list[str]]:
    t = arrow.open_table(Path(prepared) / arrow.TEXTS)
    return t.column("id").to_pylist(), t.column("text").to_pylist()


__all__ = ["PrepareParams", "prepare", "load_ids", "load_texts"]
