"""Ranking losses over groups of documents per query, with proper masking of padding.

Every loss is a small callable class with one signature::

    loss(scores, target, mask) -> scalar tensor

* ``scores``: float ``[B, G]``, the student's scores of ``G`` documents for each of ``B`` queries;
* ``target``: ``[B, G]``, what the loss learns from: relevance labels, teacher ranks turned into
  labels (higher = better, e.g. ``max_rank - rank + 1``) or teacher scores, depending on the loss;
* ``mask``: bool ``[B, G]``, ``False`` for padding (optional; ``None`` = all valid).

Padding is excluded properly, not by large negative constants: padded scores and targets are
replaced by constants *before* any arithmetic (``masked_fill``), so neither their values (a huge,
infinite or NaN score in a padded slot changes nothing) nor the gradient reaches them: the gradient
of every padded entry is exactly zero.

Rows (or pairs) that carry no training signal contribute nothing and are not counted in the mean.
When the whole batch carries none the loss is ``scores.sum() * 0``: zero, and still connected to the
graph, so ``backward()`` works and gives zero gradients.

Half-precision scores (fp16/bf16) are computed in float32; float64 stays float64.

====================  =============================================================================
``"lce"``             :class:`LocalizedContrastive` (LCE / InfoNCE; Tevatron reranker, MS "CL")
``"ranknet"``         :class:`RankNet` (MS "KD" on RankGPT ranks)
``"margin-mse"``      :class:`MarginMSE` (Hofstätter's pairwise Margin-MSE, TAS-B)
``"kl"``              :class:`KLDivergence` (listwise distillation; Tevatron v1/v2, Lightning IR)
====================  =============================================================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import IrflowError

__all__ = [
    "LOSSES",
    "KLDivergence",
    "LocalizedContrastive",
    "MarginMSE",
    "RankNet",
    "RankingLoss",
    "make_loss",
]


def _check_temperature(name: str, temperature: float) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise IrflowError(f"{name}: temperature {temperature!r} is not a number") from None
    if not (math.isfinite(t) and t > 0):
        raise IrflowError(f"{name}: temperature must be a finite number > 0, got {temperature!r}")
    return t


def _no_signal(scores: Tensor) -> Tensor:
    """A zero loss that is still connected to ``scores`` (NaN/inf-safe)."""
    return torch.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0).sum() * 0.0


def _masked_extreme(target: Tensor, mask: Tensor, largest: bool) -> Tensor:
    """Row-wise max (``largest``) or min of ``target`` over the valid entries (rows need one)."""
    if target.is_floating_point():
        fill = -math.inf if largest else math.inf
    else:
        info = torch.iinfo(target.dtype)
        fill = info.min if largest else info.max
    filled = target.masked_fill(~mask, fill)
    return filled.amax(dim=1) if largest else filled.amin(dim=1)


class RankingLoss:
    """Base class: validates the inputs and hands sanitised tensors to :meth:`compute`."""

    name: str = ""

    def __call__(self, scores: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        if scores.dim() != 2:
            raise ValueError(f"{type(self).__name__}: scores must be [B, G], got shape {tuple(scores.shape)}")
        if target.shape != scores.shape:
            raise ValueError(f"{type(self).__name__}: target shape {tuple(target.shape)} "
                             f"!= scores shape {tuple(scores.shape)}")
        if mask is None:
            mask = torch.ones_like(scores, dtype=torch.bool)
        elif mask.shape != scores.shape:
            raise ValueError(f"{type(self).__name__}: mask shape {tuple(mask.shape)} "
                             f"!= scores shape {tuple(scores.shape)}")
        elif mask.dtype != torch.bool:
            raise ValueError(f"{type(self).__name__}: mask must be a bool tensor, got {mask.dtype}")
        mask = mask.to(scores.device)
        target = target.to(scores.device)
        if not scores.is_floating_point():
            raise ValueError(f"{type(self).__name__}: scores must be floating point, got {scores.dtype}")
        if scores.numel() == 0:
            return scores.sum() * 0.0
        compute_dtype = torch.promote_types(scores.dtype, torch.float32)
        # Padded slots become constants here: their values cannot leak, their gradient is zero.
        s = scores.to(compute_dtype).masked_fill(~mask, 0.0)
        return self.compute(scores, s, target, mask)

    def compute(self, raw: Tensor, s: Tensor, target: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class LocalizedContrastive(RankingLoss):
    """Localized Contrastive Estimation (LCE, InfoNCE): softmax cross-entropy to the positive.

    For each row the positive is the valid entry with the largest ``target`` (the first one on
    ties, as ``argmax`` does); the loss is ``-log softmax(scores / T)[positive]`` over the row's
    valid entries only (padding gets probability exactly 0), averaged over the rows that have a
    positive. A row has a positive when one valid target is strictly larger than another valid
    target; rows with fewer than two valid entries or with all targets tied (e.g. no relevant
    document) contribute nothing and are not counted. ``T = 1`` is the MS "CL" objective.
    """

    name = "lce"

    def __init__(self, temperature: float = 1.0):
        self.temperature = _check_temperature("lce", temperature)

    def compute(self, raw: Tensor, s: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        row_max = _masked_extreme(target, mask, largest=True)
        row_min = _masked_extreme(target, mask, largest=False)
        rows = mask.any(dim=1) & (row_max > row_min)
        if not bool(rows.any()):
            return _no_signal(raw)
        fill = -math.inf if target.is_floating_point() else torch.iinfo(target.dtype).min
        positive = target.masked_fill(~mask, fill).argmax(dim=1)  # first maximum among valid entries
        # Rows without a positive are made all-valid constants so that nothing below is NaN.
        valid = mask | ~rows[:, None]
        logits = (s / self.temperature).masked_fill(~valid, -math.inf)
        log_p = torch.log_softmax(logits, dim=1)
        nll = -log_p.gather(1, positive[:, None]).squeeze(1)
        return nll[rows].mean()


class RankNet(RankingLoss):
    """RankNet: ``mean softplus(-(s_i - s_j) / T)`` over all pairs with ``target_i > target_j``.

    Pairs are taken within each row, both entries valid; the mean runs over all valid pairs of the
    batch (``= BCEWithLogits(s_i - s_j, 1)``; MS "KD", 190 pairs per query of 20). ``T`` divides
    the score difference (default 1 = plain RankNet). Ties in ``target`` form no pair.
    """

    name = "ranknet"

    def __init__(self, temperature: float = 1.0):
        self.temperature = _check_temperature("ranknet", temperature)

    def compute(self, raw: Tensor, s: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        pairs = mask[:, :, None] & mask[:, None, :] & (target[:, :, None] > target[:, None, :])
        if not bool(pairs.any()):
            return _no_signal(raw)
        diff = (s[:, :, None] - s[:, None, :])[pairs] / self.temperature
        return -F.logsigmoid(diff).mean()  # softplus(-x), computed without softplus' threshold


class MarginMSE(RankingLoss):
    """Pairwise Margin-MSE (Hofstätter et al.): column 0 is the positive, columns 1.. negatives.

    ``mean over valid (i, j>=1) of ((s_i0 - s_ij) - (t_i0 - t_ij))^2`` with ``t`` the teacher
    scores; a row whose column 0 is padding contributes nothing. With ``G = 2`` this is exactly the
    paper's ``mean_i [(s+ - s-) - (T+ - T-)]^2``. ``target`` is used as given (pass it detached).
    """

    name = "margin-mse"

    def compute(self, raw: Tensor, s: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        if s.shape[1] < 2:
            return _no_signal(raw)
        pairs = mask[:, :1] & mask[:, 1:]
        if not bool(pairs.any()):
            return _no_signal(raw)
        t = target.to(s.dtype).masked_fill(~mask, 0.0)
        student = s[:, :1] - s[:, 1:]
        teacher = t[:, :1] - t[:, 1:]
        return ((student - teacher)[pairs] ** 2).mean()


class KLDivergence(RankingLoss):
    """Listwise distillation: ``KL(softmax(t / T) || softmax(s / T))`` per row, over valid entries.

    Padding gets probability exactly 0 on both sides and contributes nothing. Reduction is
    ``batchmean``: the sum of the row divergences divided by the number of rows that have at least
    one valid entry (``B`` when no row is all padding, as in ``torch``'s ``batchmean``). Tevatron v1
    uses ``T = 1``, v2 ``T = 0.02``. ``target`` is used as given (pass it detached).
    """

    name = "kl"

    def __init__(self, temperature: float = 1.0):
        self.temperature = _check_temperature("kl", temperature)

    def compute(self, raw: Tensor, s: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        rows = mask.any(dim=1)
        if not bool(rows.any()):
            return _no_signal(raw)
        valid = mask | ~rows[:, None]  # all-padding rows: finite constants, dropped below
        t = target.to(s.dtype).masked_fill(~mask, 0.0)
        log_q = torch.log_softmax((s / self.temperature).masked_fill(~valid, -math.inf), dim=1)
        log_p = torch.log_softmax((t / self.temperature).masked_fill(~valid, -math.inf), dim=1)
        # -inf at padding would give 0 * (-inf - -inf) = NaN (and NaN gradients): zero it first.
        log_q = log_q.masked_fill(~valid, 0.0)
        log_p = log_p.masked_fill(~valid, 0.0)
        kl = (log_p.exp() * (log_p - log_q)).sum(dim=1)
        return kl[rows].sum() / rows.sum()


#: Loss name -> class (names as used in configs).
LOSSES: dict[str, type[RankingLoss]] = {
    "lce": LocalizedContrastive,
    "ranknet": RankNet,
    "margin-mse": MarginMSE,
    "kl": KLDivergence,
}


def make_loss(name: str, **kwargs) -> RankingLoss:
    """Build the loss called ``name`` (``"lce"``, ``"ranknet"``, ``"margin-mse"``, ``"kl"``).

    Case and ``_``/``-`` are not significant (``"Margin_MSE"`` works). An unknown name, an
    argument the loss does not take, or an invalid temperature raises :class:`IrflowError`.
    """
    key = str(name).strip().lower().replace("_", "-")
    cls = LOSSES.get(key)
    if cls is None:
        raise IrflowError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise IrflowError(f"loss {key!r}: bad arguments {sorted(kwargs)}: {e}") from None
