"""The experiment config: what to run (datasets, models, systems), never threads or paths.

Validated with pydantic before any job runs: an unknown key or a wrong type stops Snakemake with
one message naming the key path (``experiments.demo.systems.dense.pooling: ...``). Every field
that a step's command also takes is the step's own field (:func:`irflow.params.field_of`): one
definition, one default, whether the step runs from the config or by hand.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from .cluster import ClusterParams
from .encode import EncodeParams
from .errors import IrflowError
from .evaluate import EvaluateParams
from .fuse import FuseParams
from .index.bm25 import BM25Params
from .index.dense import FaissParams
from .params import Precision, WithPrecision, field_of
from .prepare import PrepareParams
from .preprocess import PreprocessParams
from .rerank import RerankParams
from .score import ScoreParams
from .search import SearchParams
from .train.params import BiEncoderTrainParams, CrossEncoderStage, CrossEncoderTrainParams
from .train.params import DenseStage as _DenseStage

#: experiment and system names reach paths, shell commands and regexes: letters, digits, . _ -
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Negatives = Literal["first-stage", "judged", "both"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BM25System(_Strict):
    """Lucene BM25 with bm25s. Defaults: k1=0.9, b=0.4, English stop words, Snowball stemming."""

    type: Literal["bm25"]
    k1: float = field_of(BM25Params, "k1")
    b: float = field_of(BM25Params, "b")
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = field_of(BM25Params, "method")
    stemmer: str | None = field_of(BM25Params, "stemmer")
    stopwords: str | None = field_of(BM25Params, "stopwords")
    k: int = field_of(SearchParams, "k")


class DenseStage(_DenseStage):
    """One fine-tuning stage of a bi-encoder (``irflow train bi-encoder``); defaults are the command's."""


class Clustering(_Strict):
    """TAS query clustering: faiss spherical k-means over an encoder's query vectors.

    ``model``: the system's own model (default) or any model id; ``stage: N``: the model of this
    system's training stage N (a trained stage, as TAS-B clusters with its trained BERT_DOT).
    """

    model: str | None = None
    stage: int | None = Field(None, ge=1)
    k: int = field_of(ClusterParams, "k")
    niter: int = field_of(ClusterParams, "niter")
    seed: int = field_of(ClusterParams, "seed")

    @model_validator(mode="after")
    def _one(self):
        if self.model is not None and self.stage is not None:
            raise ValueError("give clusters.model or clusters.stage, not both")
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
    depth: int = field_of(PreprocessParams, "depth")
    min_grade: int = field_of(PreprocessParams, "min_grade")
    negatives: Negatives = field_of(PreprocessParams, "negatives")
    #: a separate training set (e.g. irds:msmarco-passage/train/judged); default: the experiment's split
    queries: str | None = None
    qrels: str | None = None
    valid: int | float = field_of(PreprocessParams, "valid_size")  # validation queries of a separate set
    #: margins: a rerank system of this experiment (its fine-tuned model) or cross-encoder ids (a mean ensemble)
    teacher: str | list[str]
    teacher_max_length: int = field_of(ScoreParams, "max_length")
    clusters: Clustering = Clustering()
    colbert: ColbertTeacher | None = None
    query_max_length: int = field_of(BiEncoderTrainParams, "query_max_length")
    passage_max_length: int = field_of(BiEncoderTrainParams, "passage_max_length")
    scale: float | None = field_of(BiEncoderTrainParams, "scale")
    validation_depth: int = field_of(BiEncoderTrainParams, "validation_depth")
    stages: list[DenseStage] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self):
        for i, st in enumerate(self.stages):
            if st.objective in ("inbatch", "dual") and self.colbert is None:
                raise ValueError(f"stages[{i}]: objective {st.objective} needs a colbert: teacher")
        c = self.clusters.stage
        if c is not None and c >= len(self.stages):
            raise ValueError(f"clusters.stage {c} must name an earlier stage than the last ({len(self.stages)})")
        if c is not None and any(st.sampler != "random" for st in self.stages[:c]):
            raise ValueError(f"clusters.stage {c}: stages up to it cannot sample by clusters")
        return self


class DenseSystem(_Strict):
    """A single-vector bi-encoder, a faiss index over its shards, and search; trained if ``training``."""

    type: Literal["dense"]
    model: str = "all-MiniLM-L6-v2"
    pooling: Literal["mean", "cls"] = field_of(EncodeParams, "pooling")
    similarity: Literal["cos", "dot"] = "cos"  # --normalize / --no-normalize
    doc_max_length: int = field_of(PrepareParams, "max_length")
    query_max_length: int = field_of(SearchParams, "query_max_length")
    precision: Precision | None = None  # default: the config's top-level precision
    shards: int = field_of(EncodeParams, "num_shards")
    index: str = field_of(FaissParams, "factory")
    #: one faiss index per shard, searched in turn with a top-k merge: no process holds the whole index
    index_per_shard: bool = False
    train_size: int = field_of(FaissParams, "train_size")
    nprobe: int | None = field_of(SearchParams, "nprobe")
    k: int = field_of(SearchParams, "k")
    training: DenseTraining | None = None


class FusionSystem(_Strict):
    """Reciprocal rank fusion (or normalised CombSUM) of other systems of the same experiment."""

    type: Literal["fusion"]
    runs: list[Name] = Field(min_length=2)
    method: Literal["rrf", "combsum"] = field_of(FuseParams, "method")
    rrf_k: int = field_of(FuseParams, "rrf_k")
    norm: Literal["minmax", "zscore", "none"] = field_of(FuseParams, "norm")
    k: int = field_of(FuseParams, "k")


class Stage(CrossEncoderStage):
    """One fine-tuning stage of a cross-encoder (``irflow train cross-encoder``)."""

    #: for teacher objectives: "previous" (the previous stage's model) or model ids/dirs (a mean ensemble)
    teacher: Literal["previous"] | list[str] | None = None

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
    depth: int = field_of(PreprocessParams, "depth")
    min_grade: int = field_of(PreprocessParams, "min_grade")
    negatives: Negatives = field_of(PreprocessParams, "negatives")


class RerankSystem(_Strict):
    """A cross-encoder re-ranking another system's top ``depth``; fine-tuned in ``stages`` if given."""

    type: Literal["rerank"]
    first_stage: str
    depth: int = field_of(RerankParams, "depth")
    model: str = "all-MiniLM-L6-v2"
    head: Literal["cosine", "mean", "seqcls"] | None = field_of(CrossEncoderTrainParams, "head")
    separate_layers: int | None = field_of(CrossEncoderTrainParams, "separate_layers")
    document_cls: bool | None = field_of(CrossEncoderTrainParams, "document_cls")
    max_length: int = field_of(RerankParams, "max_length")
    precision: Precision | None = None  # default: the config's top-level precision
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

    seed: int = field_of(PrepareParams, "split_seed")
    test: int | float = field_of(PrepareParams, "test_size")
    valid: int | float = field_of(PrepareParams, "valid_size")


class Experiment(_Strict):
    corpus: str
    queries: str
    qrels: str | None = None  # default: the queries' dataset
    measures: list[str] = field_of(EvaluateParams, "measure")
    baseline: str | None = None  # default: the first system
    split: Split | None = None  # required when a system trains on this experiment's queries
    systems: dict[Name, System] = Field(min_length=1)

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
    #: the precision of every model step that does not set its own: part of each key, so one key never
    #: holds bf16 numbers on one machine and fp32 on another
    precision: Precision = field_of(WithPrecision, "precision")
    experiments: dict[Name, Experiment] = Field(min_length=1)


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
