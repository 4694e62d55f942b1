"""Ranking losses against hand-computed values, masking of padding, and gradients."""

from __future__ import annotations

import math

import pytest

import torch

from irflow.errors import IrflowError  # noqa: E402
from irflow.train.losses import (  # noqa: E402
    LOSSES,
    KLDivergence,
    LocalizedContrastive,
    MarginMSE,
    RankNet,
    make_loss,
)

T = True
F = False


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def m(rows):
    return torch.tensor(rows, dtype=torch.bool)


def lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def softplus_neg(d):
    """-log sigmoid(d) = log(1 + e^{-d}), the RankNet term of one pair with score difference d."""
    return math.log(1.0 + math.exp(-d))


def softmax(xs):
    z = sum(math.exp(x) for x in xs)
    return [math.exp(x) / z for x in xs]


def kl(teacher, student):
    p, q = softmax(teacher), softmax(student)
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def close(loss, expected):
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------------------- LCE


def test_lce_single_row():
    loss = LocalizedContrastive()(t([[1.0, 2.0, 0.5]]), t([[1, 0, 0]]), m([[T, T, T]]))
    close(loss, -(1.0 - lse(1.0, 2.0, 0.5)))


def test_lce_mean_over_rows_and_positive_is_argmax_of_target():
    scores = t([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    target = t([[1, 0, 0], [2, 3, 1]])  # row 2: teacher ranks as labels, best is index 1
    loss = LocalizedContrastive()(scores, target, m([[T, T, T], [T, T, T]]))
    row1 = lse(1.0, 2.0, 0.5) - 1.0
    row2 = lse(0.0, -1.0, 3.0) - (-1.0)
    close(loss, (row1 + row2) / 2)


def test_lce_ties_pick_first_maximum():
    loss = LocalizedContrastive()(t([[1.0, 2.0, 0.5]]), t([[0, 1, 1]]), None)
    close(loss, lse(1.0, 2.0, 0.5) - 2.0)


def test_lce_temperature():
    loss = LocalizedContrastive(temperature=0.5)(t([[1.0, 2.0, 0.5]]), t([[1, 0, 0]]), m([[T, T, T]]))
    close(loss, lse(2.0, 4.0, 1.0) - 2.0)


@pytest.mark.parametrize("pad", [1e9, -1e9, math.inf, -math.inf, math.nan])
def test_lce_padding_is_excluded(pad):
    expected = lse(1.0, 2.0) - 1.0
    # a padded entry with a huge score, and a huge target (it must not become the positive)
    loss = LocalizedContrastive()(t([[1.0, 2.0, pad]]), t([[1, 0, 99]]), m([[T, T, F]]))
    close(loss, expected)


def test_lce_rows_without_positive_contribute_nothing():
    scores = t([[1.0, 2.0, 0.5], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [1.0, 1.0, 1.0]])
    target = t([[1, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
    mask = m([[T, T, T], [T, T, T], [F, F, F], [T, F, F]])
    # row 2: all tied (no relevant doc); row 3: all padding; row 4: one valid entry only
    loss = LocalizedContrastive()(scores, target, mask)
    close(loss, lse(1.0, 2.0, 0.5) - 1.0)


def test_lce_integer_labels():
    loss = LocalizedContrastive()(t([[1.0, 2.0, 0.5]]), torch.tensor([[0, 0, 1]]), m([[T, T, T]]))
    close(loss, lse(1.0, 2.0, 0.5) - 0.5)


# --------------------------------------------------------------------------------------- RankNet


def test_ranknet_all_pairs_of_a_row():
    # target order 0 > 2 > 1: pairs (0,1): 3-1=2, (0,2): 3-2=1, (2,1): 2-1=1
    loss = RankNet()(t([[3.0, 1.0, 2.0]]), t([[2, 0, 1]]), m([[T, T, T]]))
    close(loss, (softplus_neg(2.0) + softplus_neg(1.0) + softplus_neg(1.0)) / 3)


def test_ranknet_mean_over_all_pairs_of_the_batch_not_per_row():
    scores = t([[0.5, 1.5, 0.0], [3.0, 1.0, 2.0]])
    target = t([[1, 0, 0], [2, 0, 1]])  # row 1: ties 1-2 make no pair -> pairs (0,1),(0,2)
    loss = RankNet()(scores, target, m([[T, T, T], [T, T, T]]))
    terms = [softplus_neg(0.5 - 1.5), softplus_neg(0.5 - 0.0),
             softplus_neg(2.0), softplus_neg(1.0), softplus_neg(1.0)]
    close(loss, sum(terms) / 5)


def test_ranknet_temperature_divides_the_difference():
    loss = RankNet(temperature=2.0)(t([[3.0, 1.0]]), t([[1, 0]]), m([[T, T]]))
    close(loss, softplus_neg(1.0))


@pytest.mark.parametrize("pad", [1e9, -1e9, math.inf, math.nan])
def test_ranknet_padding_is_excluded(pad):
    scores = t([[3.0, 1.0, pad]])
    target = t([[2, 0, 5]])
    loss = RankNet()(scores, target, m([[T, T, F]]))
    close(loss, softplus_neg(2.0))


def test_ranknet_rows_without_pairs():
    scores = t([[3.0, 1.0], [1.0, 2.0], [5.0, 6.0]])
    target = t([[1, 0], [1, 1], [1, 0]])  # row 2 tied, row 3 half padding
    loss = RankNet()(scores, target, m([[T, T], [T, T], [T, F]]))
    close(loss, softplus_neg(2.0))


def test_ranknet_large_difference_is_exact():
    # softplus' linear threshold (x > 20) would be off by ~e^-25; -logsigmoid is not
    loss = RankNet()(t([[0.0, 25.0]]), t([[1, 0]]), m([[T, T]]))
    close(loss, 25.0 + math.log1p(math.exp(-25.0)))


# --------------------------------------------------------------------------------------- MarginMSE


def test_margin_mse_pairs_is_the_paper_formula():
    scores = t([[5.0, 3.0], [1.0, 2.0]])
    target = t([[10.0, 7.0], [4.0, 4.0]])
    loss = MarginMSE()(scores, target, m([[T, T], [T, T]]))
    close(loss, (((5 - 3) - (10 - 7)) ** 2 + ((1 - 2) - (4 - 4)) ** 2) / 2)


def test_margin_mse_several_negatives_and_padding():
    scores = t([[5.0, 3.0, 1e9, 4.0], [1.0, 2.0, 0.0, math.nan], [1e9, 2.0, 3.0, 4.0]])
    target = t([[10.0, 7.0, -1e9, 8.5], [4.0, 4.0, 1.0, math.nan], [1.0, 2.0, 3.0, 4.0]])
    mask = m([[T, T, F, T], [T, T, T, F], [F, T, T, T]])  # row 3: the positive is padding
    loss = MarginMSE()(scores, target, mask)
    terms = [((5 - 3) - (10 - 7)) ** 2, ((5 - 4) - (10 - 8.5)) ** 2,
             ((1 - 2) - (4 - 4)) ** 2, ((1 - 0) - (4 - 1)) ** 2]
    close(loss, sum(terms) / 4)


def test_margin_mse_without_pairs():
    loss = MarginMSE()(t([[1.0, 2.0]]), t([[1.0, 0.0]]), m([[T, F]]))
    assert loss.item() == 0.0


# --------------------------------------------------------------------------------------- KL


def test_kl_single_row():
    loss = KLDivergence()(t([[1.0, 2.0, 3.0]]), t([[3.0, 1.0, 0.0]]), m([[T, T, T]]))
    close(loss, kl([3.0, 1.0, 0.0], [1.0, 2.0, 3.0]))


def test_kl_batchmean_and_temperature():
    scores = t([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])
    target = t([[3.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    loss = KLDivergence(temperature=0.5)(scores, target, m([[T, T, T], [T, T, T]]))
    r1 = kl([6.0, 2.0, 0.0], [2.0, 4.0, 6.0])
    r2 = kl([2.0, 2.0, 4.0], [0.0, 1.0, -2.0])
    close(loss, (r1 + r2) / 2)


def test_kl_equal_distributions_is_zero():
    loss = KLDivergence()(t([[1.0, 2.0]]), t([[11.0, 12.0]]), None)  # shift-invariant
    assert abs(loss.item()) < 1e-15


@pytest.mark.parametrize("pad", [1e9, -1e9, math.inf, math.nan])
def test_kl_padding_and_empty_rows(pad):
    scores = t([[1.0, 2.0, pad], [pad, pad, pad], [0.5, pad, 1.5]])
    target = t([[3.0, 1.0, pad], [1.0, 2.0, 3.0], [2.0, 7.0, 0.0]])
    mask = m([[T, T, F], [F, F, F], [T, F, T]])
    loss = KLDivergence()(scores, target, mask)
    # the all-padding row is not counted: two rows remain
    close(loss, (kl([3.0, 1.0], [1.0, 2.0]) + kl([2.0, 0.0], [0.5, 1.5])) / 2)


# --------------------------------------------------------------------------------------- common

ALL = [LocalizedContrastive(), LocalizedContrastive(temperature=0.3), RankNet(), RankNet(temperature=2.0),
       MarginMSE(), KLDivergence(), KLDivergence(temperature=0.5)]


def _batch(seed=0, b=3, g=5):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, g, generator=gen, dtype=torch.float64)
    target = torch.randn(b, g, generator=gen, dtype=torch.float64)  # distinct: no ties
    mask = torch.ones(b, g, dtype=torch.bool)
    mask[0, 3:] = False
    mask[1, 4] = False
    mask[2, 1] = False
    return scores, target, mask


@pytest.mark.parametrize("loss", ALL, ids=repr)
def test_gradcheck(loss):
    scores, target, mask = _batch()
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: loss(s, target, mask), (scores,))
    if isinstance(loss, (MarginMSE, KLDivergence)):  # differentiable in the teacher side too
        target.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda s, tt: loss(s, tt, mask), (scores, target))


@pytest.mark.parametrize("loss", ALL, ids=repr)
@pytest.mark.parametrize("pad", [1e6, -1e6, math.inf, -math.inf, math.nan])
def test_padded_entries_get_exactly_zero_gradient(loss, pad):
    scores, target, mask = _batch(seed=1)
    ref = loss(scores, target, mask)
    scores = scores.masked_fill(~mask, pad).requires_grad_(True)
    target = target.masked_fill(~mask, pad)
    out = loss(scores, target, mask)
    assert torch.isfinite(out)
    assert out.item() == ref.item()  # padding values change nothing, bit for bit
    out.backward()
    assert torch.all(scores.grad[~mask] == 0)
    assert torch.all(torch.isfinite(scores.grad))
    assert torch.any(scores.grad[mask] != 0)


@pytest.mark.parametrize("loss", ALL, ids=repr)
def test_batch_without_signal_is_connected_zero(loss):
    scores = t([[1.0, math.inf, 2.0], [3.0, 4.0, 5.0]]).requires_grad_(True)
    target = t([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    mask = m([[T, F, F], [F, F, F]])
    out = loss(scores, target, mask)
    assert out.item() == 0.0
    assert out.grad_fn is not None
    out.backward()
    assert torch.all(scores.grad == 0)


@pytest.mark.parametrize("loss", ALL, ids=repr)
def test_half_precision_scores_computed_in_float32(loss):
    scores, target, mask = _batch(seed=2)
    ref = loss(scores, target, mask)
    out = loss(scores.to(torch.bfloat16), target.float(), mask)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), rel=0.05, abs=1e-2)


def test_shape_checks():
    with pytest.raises(ValueError, match="target shape"):
        RankNet()(t([[1.0, 2.0]]), t([[1.0]]), None)
    with pytest.raises(ValueError, match="bool"):
        RankNet()(t([[1.0, 2.0]]), t([[1.0, 0.0]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        RankNet()(t([1.0, 2.0]), t([1.0, 0.0]), None)


def test_make_loss():
    assert set(LOSSES) == {"lce", "ranknet", "margin-mse", "kl"}
    assert isinstance(make_loss("lce"), LocalizedContrastive)
    assert isinstance(make_loss("Margin_MSE"), MarginMSE)
    assert make_loss("kl", temperature=0.02).temperature == 0.02
    known = r"unknown loss 'listnet'; known losses: kl, lce, margin-mse, ranknet"
    with pytest.raises(IrflowError, match=known):
        make_loss("listnet")
    with pytest.raises(IrflowError, match="margin-mse"):
        make_loss("margin-mse", temperature=2.0)
    with pytest.raises(IrflowError, match="temperature must be"):
        make_loss("ranknet", temperature=0)
    with pytest.raises(IrflowError, match="temperature must be"):
        make_loss("kl", temperature=math.nan)
