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


class _Optim(_Strict):
    """What every training stage shares: the optimiser's schedule, seed and early stopping."""

    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(200, ge=1)
    grad_accum: int = Field(1, ge=1)
    clip_norm: float = Field(10.0, ge=0)
    seed: int = 42
    validate_every: int = Field(0, ge=0)
    patience: int = Field(5, ge=1)


class Clustering(_Strict):
    """TAS query clustering: a baseline encoder (default: the system's model), faiss spherical k-means."""

    model: str | None = None
    k: int = Field(2000, ge=1)
    niter: int = Field(10, ge=1)
    seed: int = 1234


class DenseStage(_Optim):
    """One fine-tuning stage of a bi-encoder (``irflow train --family bi-encoder``).

    Defaults are TAS-B's (tas_balanced.yaml): b = 32, one cluster per batch, h = 10 bins,
    alpha = 0.75, pairwise weight 1, the mean form of the in-batch loss, Adam without weight decay.
    """

    objective: Literal["margin-mse", "inbatch", "dual", "infonce"] = "margin-mse"
    sampler: Literal["random", "tas", "tas-balanced"] = "random"
    batch_size: int = Field(32, ge=1)
    clusters_per_batch: int = Field(1, ge=1)
    bins: int = Field(10, ge=1)
    alpha: float = Field(0.75, ge=0)
    pair_weight: float = Field(1.0, ge=0)
    inbatch_form: Literal["mean", "sum"] = "mean"
    temperature: float = Field(1.0, gt=0)
    negatives_depth: int = Field(100, ge=1)
    lr: float = Field(7e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _batch(self):
        if self.clusters_per_batch > self.batch_size:
            raise ValueError("clusters_per_batch cannot exceed batch_size")
        if self.objective != "margin-mse" and self.batch_size < 2:
            raise ValueError(f"objective {self.objective} needs in-batch negatives: batch_size >= 2")
        return self


class ColbertTeacher(_Strict):
    """The in-batch teacher: loaded as is, or fine-tuned first with pairwise Margin-MSE (``stage``)."""

    model: str = "all-MiniLM-L6-v2"
    stage: DenseStage | None = None

    @model_validator(mode="after")
    def _objective(self):
        if self.stage is not None and self.stage.objective != "margin-mse":
            raise ValueError("the ColBERT teacher trains with objective margin-mse")
        return self


class DenseTraining(_Strict):
    """Training a bi-encoder on the experiment's training split (TAS-Balanced, dual supervision)."""

    first_stage: str  # a bm25 system: candidate negatives and the validation candidates
    depth: int = Field(100, ge=1)
    min_grade: int = 1
    #: a separate training set (e.g. irds:msmarco-passage/train/judged); default: the experiment's split
    queries: str | None = None
    qrels: str | None = None
    valid: float | int = 0.1  # validation queries of a separate training set (fraction or count)
    #: margins: a rerank system of this experiment (its fine-tuned model) or cross-encoder ids (a mean ensemble)
    teacher: str | list[str]
    teacher_max_length: int = Field(256, ge=8)
    clusters: Clustering = Clustering()
    colbert: ColbertTeacher | None = None
    query_max_length: int = Field(30, ge=2)
    passage_max_length: int = Field(200, ge=2)
    scale: float | None = Field(None, gt=0)
    validation_depth: int = Field(100, ge=1)
    stages: list[DenseStage] = Field(min_length=1)

    @model_validator(mode="after")
    def _colbert(self):
        for i, st in enumerate(self.stages):
            if st.objective in ("inbatch", "dual") and self.colbert is None:
                raise ValueError(f"stages[{i}]: objective {st.objective} needs a colbert: teacher")
        return self


class DenseSystem(_Strict):
    """A single-vector bi-encoder, a faiss index over its shards, and search; trained if ``training``."""

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
    training: DenseTraining | None = None


class FusionSystem(_Strict):
    """Reciprocal rank fusion (or normalised CombSUM) of other systems of the same experiment."""

    type: Literal["fusion"]
    runs: list[str] = Field(min_length=2)
    method: Literal["rrf", "combsum"] = "rrf"
    rrf_k: int = Field(60, ge=1)
    norm: Literal["minmax", "zscore", "none"] = "minmax"
    k: int = Field(1000, ge=1)


class Stage(_Optim):
    """One fine-tuning stage of a cross-encoder (``irflow train``)."""

    objective: Literal["lce", "ranknet", "margin-mse", "kl"] = "lce"
    #: for teacher objectives: "previous" (the previous stage's model) or model ids/dirs (a mean ensemble)
    teacher: Literal["previous"] | list[str] | None = None
    batch_queries: int = Field(4, ge=1)
    group_size: int = Field(8, ge=2)
    negatives_depth: int = Field(100, ge=1)
    temperature: float = Field(1.0, gt=0)
    lr: float = Field(2e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _teacher(self):
        if self.objective == "lce" and self.teacher is not None:
            raise ValueError("objective lce uses qrels, not a teacher")
        if self.objective != "lce" and self.teacher is None:
            raise ValueError(f"objective {self.objective} needs a teacher")
        return self


class Training(_Strict):
    """Where a stage's training examples come from: the experiment's own training split."""

    first_stage: str  # a bm25/dense system of the experiment: its run gives candidate negatives
    depth: int = Field(200, ge=1)
    min_grade: int = 1


class RerankSystem(_Strict):
    """A cross-encoder re-ranking another system's top ``depth``; fine-tuned in ``stages`` if given."""

    type: Literal["rerank"]
    first_stage: str
    depth: int = Field(100, ge=1)
    model: str = "all-MiniLM-L6-v2"
    head: Literal["cosine", "mean", "seqcls"] | None = None
    #: cosine head: lower layers that attend within each segment (default: all but the top two)
    separate_layers: int | None = Field(None, ge=0)
    max_length: int = Field(256, ge=8)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    training: Training | None = None
    stages: list[Stage] = []

    @model_validator(mode="after")
    def _stages(self):
        if self.stages and self.training is None:
            raise ValueError("stages need a training: section (first_stage, depth)")
        if self.stages and self.stages[0].teacher == "previous":
            raise ValueError("stage 1 has no previous stage to use as teacher")
        return self


System = Annotated[BM25System | DenseSystem | FusionSystem | RerankSystem, Field(discriminator="type")]


class Split(_Strict):
    """Deterministic split of the queries: evaluation uses the test part only."""

    seed: int = 42
    test: float | int = 0.5
    valid: float | int = 0.1


class Experiment(_Strict):
    corpus: str
    queries: str
    qrels: str | None = None  # default: the queries' dataset
    measures: list[str] = ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@1000", "AP(rel=2)"]
    baseline: str | None = None  # default: the first system
    split: Split | None = None  # required when a system trains on this experiment's queries
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
            if isinstance(s, RerankSystem):
                for what, r in (("first_stage", s.first_stage),
                                ("training.first_stage", s.training.first_stage if s.training else None)):
                    if r is None:
                        continue
                    if r not in self.systems or isinstance(self.systems[r], (FusionSystem, RerankSystem)):
                        raise ValueError(f"systems.{name}.{what} must name a bm25 or dense system, not {r!r}")
                if s.training and _trained(self.systems.get(s.training.first_stage)):
                    raise ValueError(f"systems.{name}.training.first_stage must not be a trained system")
            if isinstance(s, DenseSystem) and s.training is not None:
                t = s.training
                first = self.systems.get(t.first_stage)
                if not isinstance(first, (BM25System, DenseSystem)) or _trained(first):
                    raise ValueError(f"systems.{name}.training.first_stage must name a bm25 or untrained dense "
                                     f"system, not {t.first_stage!r}")
                if isinstance(t.teacher, str) and not isinstance(self.systems.get(t.teacher), RerankSystem):
                    raise ValueError(f"systems.{name}.training.teacher must name a rerank system of this "
                                     f"experiment or list cross-encoder models, not {t.teacher!r}")
            if _trained(s) and self.split is None and not (isinstance(s, DenseSystem) and s.training.queries):
                raise ValueError(f"systems.{name} trains on the experiment's queries: add a split: section "
                                 "so that evaluation uses held-out queries only")
        if self.baseline is not None and self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the systems ({', '.join(names)})")
        return self


def _trained(s) -> bool:
    return bool(getattr(s, "stages", None)) or getattr(s, "training", None) is not None and isinstance(s, DenseSystem)


class Config(_Strict):
    experiments: dict[str, Experiment] = Field(min_length=1)


def _loc(loc: tuple) -> str:
    parts = []
    for i, x in enumerate(loc):
        if i >= 2 and loc[i - 2] == "systems" and x in ("bm25", "dense", "fusion", "rerank"):
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
