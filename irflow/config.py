"""The experiment config: what to run (datasets, models, systems), never threads or paths.

Validated with pydantic before any job runs: an unknown key or a wrong type stops Snakemake with
one message naming the key path (``experiments.demo.systems.dense.pooling: ...``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import IrflowError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BM25System(_Strict):
    """Lucene BM25 with bm25s. Defaults: k1=0.9, b=0.4, English stop words, Snowball stemming."""

    type: Literal["bm25"]
    k1: float = 0.9
    b: float = 0.4
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene"
    stemmer: str | None = "english"
    stopwords: str | None = "en"
    k: int = Field(1000, ge=1)


class DenseSystem(_Strict):
    """A single-vector bi-encoder, a faiss index over its shards, and search."""

    type: Literal["dense"]
    model: str = "all-MiniLM-L6-v2"
    pooling: Literal["mean", "cls"] = "mean"
    similarity: Literal["cos", "dot"] = "cos"
    doc_max_length: int = Field(256, ge=2)
    query_max_length: int = Field(64, ge=2)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    shards: int = Field(1, ge=1)
    index: str = "Flat"
    train_size: int = Field(100_000, ge=1)
    nprobe: int | None = Field(None, ge=1)
    k: int = Field(1000, ge=1)


class FusionSystem(_Strict):
    """Reciprocal rank fusion (or normalised CombSUM) of other systems of the same experiment."""

    type: Literal["fusion"]
    runs: list[str] = Field(min_length=2)
    method: Literal["rrf", "combsum"] = "rrf"
    rrf_k: int = Field(60, ge=1)
    norm: Literal["minmax", "zscore", "none"] = "minmax"
    k: int = Field(1000, ge=1)


System = Annotated[BM25System | DenseSystem | FusionSystem, Field(discriminator="type")]


class Experiment(_Strict):
    corpus: str
    queries: str
    qrels: str | None = None  # default: the queries' dataset
    measures: list[str] = ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)"]
    baseline: str | None = None  # default: the first system
    systems: dict[str, System] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self):
        names = list(self.systems)
        for name, s in self.systems.items():
            if isinstance(s, FusionSystem):
                for r in s.runs:
                    if r not in self.systems:
                        raise ValueError(f"systems.{name}.runs names unknown system {r!r}")
                    if isinstance(self.systems[r], FusionSystem):
                        raise ValueError(f"systems.{name}.runs: fusing a fusion ({r!r}) is not supported")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the systems ({', '.join(names)})")
        return self


class Config(_Strict):
    experiments: dict[str, Experiment] = Field(min_length=1)


def _loc(loc: tuple) -> str:
    parts = []
    for i, x in enumerate(loc):
        if i >= 2 and loc[i - 2] == "systems" and x in ("bm25", "dense", "fusion"):
            continue  # pydantic's discriminator tag after a system's name, not a config key
        parts.append(f"[{x}]" if isinstance(x, int) else ("." if parts else "") + str(x))
    return "".join(parts)


def validate(raw: dict, source: str = "config") -> Config:
    """The typed config, or an IrflowError naming every bad key."""
    try:
        return Config.model_validate(raw or {})
    except ValidationError as e:
        lines = []
        for err in e.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"{_loc(err['loc'])}: {msg}")
        if len(lines) == 1:  # the common case: one line, naming the key
            raise IrflowError(f"invalid config: {lines[0]}", where=source) from None
        raise IrflowError("invalid config:\n  " + "\n  ".join(lines), where=source) from None
