"""In-batch losses of TAS-Balanced training: pairwise and dual-teacher Margin-MSE, in-batch InfoNCE.

A batch holds ``B`` triples ``(q_i, p_i+, p_i-)``. The student scores every query against every
document of the batch, ``S+ = Q·P+ᵀ`` and ``S- = Q·P-ᵀ`` (``[B, B]``); entry ``[i, j]`` is
``s(q_i, p_j)``, so the diagonals are the student's scores of the batch's own pairs.

* :func:`pairwise_margin_mse` — Hofstätter's Margin-MSE on the own pairs against the static
  BERT_CAT teacher scores (MM ``losses/msmarcomargin.py``).
* :class:`InBatchMarginMSE` — Margin-MSE on the off-diagonal in-batch pairs against a ColBERT
  teacher's score matrices ``C+``/``C-`` (MM ``train.py``, ``in_batch_negatives`` block).
* :class:`DualTeacherLoss` — ``pair_weight · L_pair + alpha · L_inb`` (TAS-B: 1 and 0.75), with
  both parts returned so that the training log can show them.
* :class:`InBatchInfoNCE` — in-batch contrastive (softmax over all ``2B`` documents of the batch)
  for a first stage without teacher scores; :func:`duplicate_mask` excludes false negatives.

As in :mod:`irflow.train.losses`: excluded entries are replaced by constants with ``masked_fill``
*before* any arithmetic, so their values (even inf/NaN) never reach the result and their gradient
is exactly zero; half-precision scores are computed in float32 (float64 stays float64); a batch
without any usable pair gives a zero that is still connected to the graph. Teacher tensors are
used as given (pass them detached). Shape and dtype problems raise ``ValueError`` (a bug in the
caller); bad parameters raise :class:`~irflow.errors.IrflowError` (a bad config value).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import IrflowError
from .losses import _check_temperature, _no_signal

__all__ = [
    "DualLoss",
    "DualTeacherLoss",
    "InBatchInfoNCE",
    "InBatchMarginMSE",
    "duplicate_mask",
    "pairwise_margin_mse",
]

FORMS = ("mean", "sum")


def _check_form(name: str, form: str) -> str:
    if form not in FORMS:
        raise IrflowError(f"{name}: form must be 'mean' or 'sum', got {form!r}")
    return form


def _check_weight(name: str, what: str, value: float) -> float:
    if isinstance(value, bool):
        raise IrflowError(f"{name}: {what} must be a finite number >= 0, got {value!r}")
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise IrflowError(f"{name}: {what} {value!r} is not a number") from None
    if not (math.isfinite(w) and w >= 0):
        raise IrflowError(f"{name}: {what} must be a finite number >= 0, got {value!r}")
    return w


def _compute_dtype(t: Tensor, who: str, what: str) -> torch.dtype:
    if not t.is_floating_point():
        raise ValueError(f"{who}: {what} must be floating point, got {t.dtype}")
    return torch.promote_types(t.dtype, torch.float32)


def _zero(*tensors: Tensor) -> Tensor:
    """Zero in the compute dtype of the first tensor, connected to all of them."""
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    return sum((_no_signal(t.to(dtype)) for t in tensors[1:]), _no_signal(tensors[0].to(dtype)))


def _check_matrix(who: str, name: str, t: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(t.shape) != shape:
        raise ValueError(f"{who}: {name} must have shape {list(shape)}, got {list(t.shape)}")


def _check_square(who: str, t: Tensor) -> int:
    if t.dim() != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"{who}: s_pos_mat must be a square [B, B] matrix, got shape {list(t.shape)}")
    return t.shape[0]


def _check_mask(who: str, mask: Tensor | None, rows: int, cols: int, device) -> Tensor:
    """The bool mask ``[rows, cols]`` (all True if None); its diagonal (own positives) must be True."""
    if mask is None:
        return torch.ones(rows, cols, dtype=torch.bool, device=device)
    if mask.dtype != torch.bool:
        raise ValueError(f"{who}: mask must be a bool tensor, got {mask.dtype}")
    _check_matrix(who, "mask", mask, (rows, cols))
    mask = mask.to(device)
    if not bool(mask.diagonal().all()):
        raise ValueError(f"{who}: mask excludes a query's own positive (mask[i, i] must be True)")
    return mask


# ------------------------------------------------------------------------------------ pairwise


def pairwise_margin_mse(s_pos: Tensor, s_neg: Tensor, t_pos: Tensor, t_neg: Tensor) -> Tensor:
    """Margin-MSE of the own pairs: ``mean_i [(s_pos_i - s_neg_i) - (t_pos_i - t_neg_i)]²``.

    All four are ``[B]``: the student's scores of ``(q_i, p_i+)`` and ``(q_i, p_i-)`` and the
    teacher's (TAS-B: the static BERT_CAT ensemble scores from the pair file). Equal to
    :class:`irflow.train.losses.MarginMSE` on ``[B, 2]`` groups. ``B = 0`` gives a connected zero.
    """
    who = "pairwise margin-mse"
    if s_pos.dim() != 1:
        raise ValueError(f"{who}: scores must be [B], got shape {list(s_pos.shape)}")
    for name, t in (("s_neg", s_neg), ("t_pos", t_pos), ("t_neg", t_neg)):
        _check_matrix(who, name, t, tuple(s_pos.shape))
    dtype = _compute_dtype(s_pos, who, "s_pos")
    _compute_dtype(s_neg, who, "s_neg")
    if s_pos.numel() == 0:
        return _zero(s_pos, s_neg)
    device = s_pos.device
    student = s_pos.to(dtype) - s_neg.to(dtype)
    teacher = t_pos.to(device, dtype) - t_neg.to(device, dtype)
    return (student - teacher).square().mean()


# ------------------------------------------------------------------------------------ in-batch MSE


class InBatchMarginMSE:
    """In-batch Margin-MSE against a ColBERT teacher (TAS-B's second teacher).

    ``loss(s_pos_mat, s_neg_mat, c_pos_mat, c_neg_mat, mask=None)`` with ``[B, B]`` student
    matrices ``S+``, ``S-`` and teacher matrices ``C+``, ``C-``. The anchor of row ``i`` is q_i's
    own positive: the student's ``S+[i, i]`` and the ColBERT teacher's ``C+[i, i]`` (not the
    BERT_CAT score). With ``d = (S+[i,i] - S[i,j]) - (C+[i,i] - C[i,j])``::

        form="mean":  0.5 * (mean_{i, j≠i} d+² + mean_{i, j≠i} d-²)   # MM train.py; α=0.75 goes with it
        form="sum":   1/(2B) * (Σ_i Σ_{j≠i} d+² + Σ_i Σ_{j≠i} d-²)    # the paper's 1/(2|Q|) form

    so ``sum = mean × (B-1)``. The diagonal of ``S-``/``C-`` (q_i's own negative) is excluded: the
    pairwise loss covers it. Nothing is detached: the gradient flows into both ``S+[i,i]`` and
    ``S±[i,j]`` of every margin, as in the reference. ``B = 1`` has no in-batch pair: a zero that is
    still connected to the graph.

    ``mask`` (optional, bool ``[B, 2B]``: columns ``0..B-1`` the positives, ``B..2B-1`` the
    negatives, ``False`` = excluded, e.g. from :func:`duplicate_mask`) drops further entries;
    ``form="mean"`` then averages each half over its remaining entries (a half with none adds 0),
    ``form="sum"`` still divides by ``2B``. Without a mask the formulas above hold exactly.
    """

    name = "inbatch-margin-mse"

    def __init__(self, form: str = "mean"):
        self.form = _check_form(self.name, form)

    def __call__(self, s_pos_mat: Tensor, s_neg_mat: Tensor, c_pos_mat: Tensor, c_neg_mat: Tensor,
                 mask: Tensor | None = None) -> Tensor:
        who = self.name
        b = _check_square(who, s_pos_mat)
        for name, t in (("s_neg_mat", s_neg_mat), ("c_pos_mat", c_pos_mat), ("c_neg_mat", c_neg_mat)):
            _check_matrix(who, name, t, (b, b))
        dtype = _compute_dtype(s_pos_mat, who, "s_pos_mat")
        _compute_dtype(s_neg_mat, who, "s_neg_mat")
        device = s_pos_mat.device
        mask = _check_mask(who, mask, b, 2 * b, device)
        eye = torch.eye(b, dtype=torch.bool, device=device)
        valid = mask & ~torch.cat([eye, eye], dim=1)
        valid_pos, valid_neg = valid[:, :b], valid[:, b:]
        n_pos, n_neg = int(valid_pos.sum()), int(valid_neg.sum())
        if n_pos + n_neg == 0:
            return _zero(s_pos_mat, s_neg_mat)

        s_pos = s_pos_mat.to(dtype)
        c_pos = c_pos_mat.to(device, dtype)
        s_anchor = s_pos.diagonal()[:, None]
        c_anchor = c_pos.diagonal()[:, None]
        s = torch.cat([s_pos, s_neg_mat.to(dtype)], dim=1).masked_fill(~valid, 0.0)
        c = torch.cat([c_pos, c_neg_mat.to(device, dtype)], dim=1).masked_fill(~valid, 0.0)
        # Excluded entries are (anchor - 0) - (anchor - 0) here: finite, and zeroed (with a zero
        # gradient, also towards the anchors) before the sum.
        sq = ((s_anchor - s) - (c_anchor - c)).square().masked_fill(~valid, 0.0)
        if self.form == "sum":
            return 0.5 * sq.sum() / b
        total = sq[:, :b].sum() / n_pos if n_pos else None
        if n_neg:
            neg = sq[:, b:].sum() / n_neg
            total = neg if total is None else total + neg
        return 0.5 * total

    def __repr__(self) -> str:
        return f"{type(self).__name__}(form={self.form!r})"


# ------------------------------------------------------------------------------------ dual teacher


class DualLoss(NamedTuple):
    """The total and its two (unweighted) parts; ``pair`` and ``inbatch`` are for the log."""

    total: Tensor
    pair: Tensor
    inbatch: Tensor


class DualTeacherLoss:
    """TAS-B's dual-supervision loss: ``L = pair_weight · L_pair + alpha · L_inb``.

    ``loss(s_pos_mat, s_neg_mat, t_pos, t_neg, c_pos_mat, c_neg_mat, mask=None) -> DualLoss``.
    ``L_pair`` is :func:`pairwise_margin_mse` of the diagonals of ``S+``/``S-`` against the static
    teacher scores ``t_pos``/``t_neg`` (``[B]``); ``L_inb`` is :class:`InBatchMarginMSE` (``form``)
    against the ColBERT matrices. Defaults are ``tas_balanced.yaml``'s ``in_batch_main_pair_lambda:
    1`` and ``in_batch_neg_lambda: 0.75``. With ``alpha = 0`` the ColBERT matrices may be ``None``
    (``L_inb`` is then a connected zero); ``mask`` only applies to ``L_inb``.
    """

    name = "dual-teacher"

    def __init__(self, alpha: float = 0.75, pair_weight: float = 1.0, form: str = "mean"):
        self.alpha = _check_weight(self.name, "alpha", alpha)
        self.pair_weight = _check_weight(self.name, "pair_weight", pair_weight)
        self.inbatch = InBatchMarginMSE(form)
        self.form = self.inbatch.form

    def __call__(self, s_pos_mat: Tensor, s_neg_mat: Tensor, t_pos: Tensor, t_neg: Tensor,
                 c_pos_mat: Tensor | None = None, c_neg_mat: Tensor | None = None,
                 mask: Tensor | None = None) -> DualLoss:
        _check_square(self.name, s_pos_mat)
        _check_matrix(self.name, "s_neg_mat", s_neg_mat, tuple(s_pos_mat.shape))
        pair = pairwise_margin_mse(s_pos_mat.diagonal(), s_neg_mat.diagonal(), t_pos, t_neg)
        if c_pos_mat is None or c_neg_mat is None:
            if self.alpha != 0:
                raise ValueError(f"{self.name}: the ColBERT teacher matrices are required when alpha > 0")
            inbatch = _zero(s_pos_mat, s_neg_mat)
        else:
            inbatch = self.inbatch(s_pos_mat, s_neg_mat, c_pos_mat, c_neg_mat, mask)
        return DualLoss(self.pair_weight * pair + self.alpha * inbatch, pair, inbatch)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(alpha={self.alpha!r}, pair_weight={self.pair_weight!r}, "
                f"form={self.form!r})")


# ------------------------------------------------------------------------------------ InfoNCE


def duplicate_mask(pos_ids: Sequence[Hashable], neg_ids: Sequence[Hashable] | None = None,
                   query_ids: Sequence[Hashable] | None = None, device=None) -> Tensor:
    """Bool ``[B, B+M]`` mask (``False`` = exclude) of in-batch false negatives.

    Columns are the batch's positives ``pos_ids`` then its negatives ``neg_ids`` (``M`` of them,
    default none), as in :class:`InBatchInfoNCE`. For query ``i`` a column ``c ≠ i`` is excluded
    when it is the same document as q_i's positive (a document can be the positive of two triples,
    or the negative of another query), and, given ``query_ids``, when it is the positive of another
    triple of the same query (the balanced sampler can draw a query twice). The own positive
    ``[i, i]`` is always kept.
    """
    b = len(pos_ids)
    docs = list(pos_ids) + list(neg_ids or [])
    codes: dict[Hashable, int] = {}
    doc_codes = torch.tensor([codes.setdefault(d, len(codes)) for d in docs], dtype=torch.long)
    same_doc = doc_codes[None, :] == doc_codes[:b, None]
    if query_ids is not None:
        if len(query_ids) != b:
            raise ValueError(f"duplicate_mask: {len(query_ids)} query ids for {b} positives")
        qcodes: dict[Hashable, int] = {}
        q = torch.tensor([qcodes.setdefault(x, len(qcodes)) for x in query_ids], dtype=torch.long)
        same_doc[:, :b] |= q[None, :] == q[:, None]
    keep = ~same_doc
    keep[:, :b] |= torch.eye(b, dtype=torch.bool)
    return keep.to(device) if device is not None else keep


class InBatchInfoNCE:
    """In-batch contrastive loss: for q_i, softmax cross-entropy to p_i+ over the whole batch.

    ``loss(s_pos_mat, s_neg_mat=None, mask=None)``: the candidates of q_i are the ``B`` positives
    (``S+ = Q·P+ᵀ``, ``[B, B]``) and the batch's negatives (``S- = Q·P-ᵀ``, ``[B, M]``, usually
    ``M = B``), ``2B`` columns; the target is column ``i``. Loss ``= mean_i -log softmax(row /
    T)[i]`` (Tevatron's in-batch training; ``T = 1`` by default). ``mask`` (bool ``[B, B+M]``,
    ``False`` = excluded, see :func:`duplicate_mask`) removes false negatives such as a second copy
    of q_i's own positive: an excluded column gets probability exactly 0 and a zero gradient.
    """

    name = "inbatch-infonce"

    def __init__(self, temperature: float = 1.0):
        self.temperature = _check_temperature(self.name, temperature)

    def __call__(self, s_pos_mat: Tensor, s_neg_mat: Tensor | None = None,
                 mask: Tensor | None = None) -> Tensor:
        who = self.name
        b = _check_square(who, s_pos_mat)
        dtype = _compute_dtype(s_pos_mat, who, "s_pos_mat")
        parts = [s_pos_mat.to(dtype)]
        if s_neg_mat is not None:
            if s_neg_mat.dim() != 2 or s_neg_mat.shape[0] != b:
                raise ValueError(f"{who}: s_neg_mat must be [B, M] with B = {b}, "
                                 f"got shape {list(s_neg_mat.shape)}")
            _compute_dtype(s_neg_mat, who, "s_neg_mat")
            parts.append(s_neg_mat.to(s_pos_mat.device, dtype))
        scores = torch.cat(parts, dim=1)
        mask = _check_mask(who, mask, b, scores.shape[1], scores.device)
        if b == 0:
            return _zero(*parts)
        logits = (scores.masked_fill(~mask, 0.0) / self.temperature).masked_fill(~mask, -math.inf)
        log_p = torch.log_softmax(logits, dim=1)
        return -log_p.diagonal().mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(temperature={self.temperature!r})"
