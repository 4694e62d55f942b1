"""The parameters of ``irflow train cross-encoder | bi-encoder | colbert``, each declared once.

A *stage* class holds what a config stage sets (objective, batch, optimisation); the step class
adds what the system sets (model, lengths, head, pooling). The config's stage classes derive from
the same stage classes (:mod:`irflow.config`), so a default lives in exactly one place and
``irflow train ... --help`` shows the config's defaults.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import IrflowError
from ..params import Input, KeyContext, StepParams, WithPrecision

#: optimisation settings that change how a run is carried out, not what it computes
_NOT_IN_KEY = ("checkpoint_every", "log_every")


class Optimisation(BaseModel):
    """What every training stage shares: schedule, seed, validation, early stopping, checkpoints."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(2e-5, gt=0, description="Peak learning rate (linear warm-up and decay).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    max_steps: int = Field(200, ge=1, description="Optimizer steps.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    clip_norm: float = Field(10.0, ge=0, description="Gradient norm clipping (0 disables).")
    seed: int = Field(42, description="Seed of python, numpy and torch; batches are a function of (seed, step).")
    validate_every: int = Field(0, ge=0, description="Validate every N steps (0 disables validation).")
    patience: int = Field(5, ge=1, description="Validations without improvement before stopping early.")
    min_delta: float | None = Field(
        None, ge=0, description="Smallest validation gain that counts as an improvement (default 0): with a "
        "few validation queries, a trained model replaces the stage's start, and early stopping's patience "
        "restarts, only when it beats the best so far by more than this.")
    checkpoint_every: int = Field(100, ge=1, json_schema_extra={"key": False},
                                  description="Checkpoint every N steps (resume after a kill; not part of the key).")
    attention_dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout on the attention probabilities in training (default: the model's "
        "own, 0.1 for BERT-family models). 0 lets PyTorch run its fused attention kernel, which takes no dropout: "
        "~40% faster steps on the CPU, with the hidden-state dropout kept. A training choice, so part of the key.")
    devices: int = Field(1, ge=1, json_schema_extra={"key": False},
                         description="Data-parallel processes (one device each) sharing the global batch: the "
                         "stage runs under torchrun --nproc-per-node N (not part of the key: the same global "
                         "batch gives the same model within float tolerance).")


class CrossEncoderStage(Optimisation):
    """One cross-encoder stage: its objective and groups (config: ``systems.<rerank>.stages[i]``)."""

    objective: Literal["lce", "ranknet", "margin-mse", "kl"] = Field(
        "lce", description="lce: 1 positive + n negatives, softmax CE; ranknet, margin-mse, kl: from teacher scores.")
    batch_queries: int = Field(4, ge=1, description="Queries per micro-batch.")
    group_size: int = Field(8, ge=2, description="Documents per query (1 positive + negatives for lce).")
    negatives_depth: int = Field(100, ge=1, description="Negatives drawn from the first stage's top N.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature (lce, kl).")
    head_lr: float | None = Field(None, gt=0, description="Learning rate of the head (default: --lr).")

    @model_validator(mode="after")
    def _split(self):
        if self.batch_queries % self.devices:
            raise ValueError(f"batch_queries {self.batch_queries} must be a multiple of devices {self.devices} "
                             "(each device trains on an equal share of the global batch)")
        return self


class DenseStage(Optimisation):
    """One bi-encoder stage. Defaults are TAS-B's (tas_balanced.yaml): b = 32, one cluster per batch,
    h = 10 bins, alpha = 0.75, pairwise weight 1, the mean form of the in-batch loss, lr 7e-6,
    Adam without weight decay."""

    objective: Literal["margin-mse", "inbatch", "dual", "infonce"] = Field(
        "margin-mse", description="margin-mse (pairwise, teacher margins), inbatch (ColBERT teacher), dual "
        "(both), infonce (in-batch contrastive, no teacher).")
    sampler: Literal["random", "tas", "tas-balanced"] = Field("random", description="Batch composition.")
    batch_size: int = Field(32, ge=1, description="Triples per micro-batch.")
    clusters_per_batch: int = Field(1, ge=1, description="TAS: query clusters per batch.")
    bins: int = Field(10, ge=1, description="TAS-Balanced: margin bins per query.")
    alpha: float = Field(0.75, ge=0, description="dual: weight of the in-batch loss.")
    pair_weight: float = Field(1.0, ge=0, description="dual: weight of the pairwise loss.")
    inbatch_form: Literal["mean", "sum"] = Field("mean", description="In-batch Margin-MSE: mean, or the paper's "
                                                 "sum (= mean x (B-1)).")
    temperature: float = Field(1.0, gt=0, description="infonce temperature.")
    negatives_depth: int = Field(100, ge=1, description="Negatives from the first stage's top N.")
    lr: float = Field(7e-6, gt=0, description="Peak learning rate (linear warm-up and decay).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    cache_chunk: int | None = Field(None, ge=1, description="Gradient caching (GradCache): encode the batch in "
                                    "chunks of this many texts, so a large batch trains in a small batch's memory.")

    @model_validator(mode="after")
    def _batch(self):
        if self.clusters_per_batch > self.batch_size:
            raise ValueError("clusters_per_batch cannot exceed batch_size")
        if self.objective != "margin-mse" and self.batch_size < 2:
            raise ValueError(f"objective {self.objective} needs in-batch negatives: batch_size >= 2")
        if self.batch_size % self.devices:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of devices {self.devices} "
                             "(each device encodes an equal share of the global batch)")
        return self


_TRAIN_INPUTS = (
    Input("examples", "--examples", "preprocess", "The preprocess artifact (train/valid examples)."),
    Input("queries", "--queries", "prepare", "The prepare artifact of all the queries.", kind="queries"),
    Input("docs", "--docs", "prepare", "The prepare artifact with the corpus texts.", kind="docs"),
    Input("init", "--init", "train", "Start from the model of a previous train artifact (stage k-1) instead of "
          "--model.", required=False),
    Input("teacher", "--teacher", "score", "Score artifact with teacher scores.", required=False),
)


class _Train(WithPrecision):
    step: ClassVar[str] = "train"
    family: ClassVar[str]

    model: str | None = Field(None, description="Initial model: HF id (org/name[@revision]), directory, or "
                              "all-MiniLM-L6-v2 (packaged) — or --init.")
    stop_after: int | None = Field(None, ge=1, json_schema_extra={"key": False, "hidden": True},
                                   description="Exit after this step's checkpoint, as a kill would (resume tests).")

    def check_inputs(self, given: set[str]) -> None:
        if bool(self.model) == ("init" in given):
            raise IrflowError("give exactly one of --model or --init")

    @property
    def optim(self):
        from .loop import OptimConfig

        return OptimConfig(self.lr, getattr(self, "head_lr", None), self.weight_decay, self.warmup_steps,
                           self.max_steps, self.grad_accum, self.clip_norm or None, self.precision, self.seed,
                           self.checkpoint_every, self.validate_every, self.patience,
                           min_delta=self.min_delta or 0.0)

    def _optim_key(self) -> dict:
        from dataclasses import asdict

        k = {k: v for k, v in asdict(self.optim).items() if k not in _NOT_IN_KEY}
        if not k["min_delta"]:  # only when given, so the default's keys stay as they were
            del k["min_delta"]
        return k

    def _model_key(self):
        from ..models.resolve import identity

        return identity(self.model) if self.model else None


class CrossEncoderTrainParams(CrossEncoderStage, _Train):
    """``irflow train cross-encoder``: one stage of a re-ranker."""

    family: ClassVar[str] = "cross-encoder"
    inputs: ClassVar[tuple[Input, ...]] = _TRAIN_INPUTS

    head: Literal["cosine", "mean", "seqcls"] | None = Field(
        None, description="Scoring head: scaled cosine of the query and document segments (default for sentence "
        "encoders), a linear head on mean-pooled states, or the sequence-classification logit (hub cross-encoders).")
    separate_layers: int | None = Field(None, ge=0, description="Cosine head: lower layers attending within each "
                                        "segment only (default: all but the top two).")
    document_cls: bool | None = Field(None, description="Cosine head: give the document segment its own [CLS] "
                                      "in the segment-separate layers, so that with all layers separate the "
                                      "untrained re-ranker scores as the bi-encoder it is built from (default: no).")
    max_length: int = Field(256, ge=8, description="Tokens of a (query, document) pair.")
    validation_depth: int = Field(30, ge=1, description="Candidates re-ranked per validation query.")

    def check_inputs(self, given: set[str]) -> None:
        super().check_inputs(given)
        if self.objective != "lce" and "teacher" not in given:
            raise IrflowError(f"objective {self.objective} needs teacher scores (--teacher: a score artifact)")

    @property
    def group(self):
        from .crossencoder import GroupConfig

        return GroupConfig(self.objective, self.batch_queries, self.group_size, self.negatives_depth,
                           self.temperature)

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        from dataclasses import asdict

        k = {"family": self.family, "model": self._model_key(), "head": self.head, "max_length": self.max_length,
             "group": asdict(self.group), "optim": self._optim_key(),
             "validation_depth": self.validation_depth if self.validate_every else None}
        if self.separate_layers is not None:  # only when given, so the default's keys stay as they were
            k["separate_layers"] = self.separate_layers
        if self.attention_dropout is not None:  # likewise
            k["attention_dropout"] = self.attention_dropout
        if self.document_cls is not None:  # likewise
            k["document_cls"] = self.document_cls
        return k


class _DenseTrain(DenseStage, _Train):
    inputs: ClassVar[tuple[Input, ...]] = _TRAIN_INPUTS + (
        Input("clusters", "--clusters", "cluster", "Cluster artifact (samplers tas, tas-balanced).", required=False),
    )

    query_max_length: int = Field(30, ge=2, description="Query tokens in training.")
    passage_max_length: int = Field(200, ge=2, description="Passage tokens in training.")
    validation_depth: int = Field(100, ge=1, description="First-stage candidates re-ranked per validation query.")

    def check_inputs(self, given: set[str]) -> None:
        super().check_inputs(given)
        if self.objective in ("inbatch", "dual") and not getattr(self, "colbert", None):
            raise IrflowError(f"objective {self.objective} needs a ColBERT teacher (--colbert)")
        if self.sampler != "random" and "clusters" not in given:
            raise IrflowError(f"sampler {self.sampler} needs query clusters (--clusters: an irflow cluster artifact)")
        if (self.sampler == "tas-balanced" or self.objective in ("margin-mse", "dual")) and "teacher" not in given:
            what = "sampler tas-balanced" if self.sampler == "tas-balanced" else f"objective {self.objective}"
            raise IrflowError(f"{what} needs teacher scores (--teacher: an irflow score artifact)")

    @property
    def dense(self):
        from .biencoder import DenseConfig

        return DenseConfig(self.objective, self.sampler, self.batch_size, self.clusters_per_batch, self.bins,
                           self.alpha, self.pair_weight, self.inbatch_form, self.temperature, self.negatives_depth,
                           self.query_max_length, self.passage_max_length, self.cache_chunk)

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        k = {"family": self.family, "model": self._model_key(), "dense": self.dense.key_params(),
             "optim": self._optim_key(), "validation_depth": self.validation_depth if self.validate_every else None}
        if self.attention_dropout is not None:  # only when given, so the default's keys stay as they were
            k["attention_dropout"] = self.attention_dropout
        return k


class BiEncoderTrainParams(_DenseTrain):
    """``irflow train bi-encoder``: one stage of a dense retriever (TAS-Balanced, dual supervision)."""

    family: ClassVar[str] = "bi-encoder"

    pooling: Literal["mean", "cls"] = Field("mean", description="Mean of the token states or the CLS state.")
    normalize: bool = Field(True, description="L2-normalise vectors (cosine); --no-normalize: dot product.")
    scale: float | None = Field(None, gt=0, description="Score scale in training (default 20 if normalised, "
                                "else 1).")
    colbert: str | None = Field(None, json_schema_extra={"ref": True},
                                description="In-batch teacher (objectives inbatch, dual): a ColBERT train artifact "
                                "or model directory/id.")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        k = super().key_params(ctx)
        k.update(pooling=self.pooling, normalize=self.normalize, scale=self.scale)
        if self.objective in ("inbatch", "dual"):
            k["colbert"] = StepParams.key_params(self, ctx)["colbert"]
        return k


class ColbertTrainParams(_DenseTrain):
    """``irflow train colbert``: the bi-encoder's in-batch teacher, trained with pairwise Margin-MSE."""

    family: ClassVar[str] = "colbert"

    objective: Literal["margin-mse"] = Field("margin-mse", description="A ColBERT teacher trains with pairwise "
                                             "Margin-MSE on the cross-encoder's margins.")


TRAIN_FAMILIES: dict[str, type[_Train]] = {c.family: c for c in (CrossEncoderTrainParams, BiEncoderTrainParams,
                                                                  ColbertTrainParams)}
