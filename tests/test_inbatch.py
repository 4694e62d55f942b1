"""In-batch losses of TAS-Balanced against hand-computed values (explicit loops), masks and gradients."""

from __future__ import annotations

import math

import pytest

import torch

from irflow.errors import IrflowError  # noqa: E402
from irflow.train.inbatch import (  # noqa: E402
    DualLoss,
    DualTeacherLoss,
    InBatchInfoNCE,
    InBatchMarginMSE,
    duplicate_mask,
    pairwise_margin_mse,
)
from irflow.train.losses import MarginMSE  # noqa: E402


def t(rows, dtype=torch.float64):
    return torch.tensor(rows, dtype=dtype)


def close(loss, expected):
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


# A batch of B=3 by hand: S+ / S- student, C+ / C- ColBERT teacher (entry [i][j] = score(q_i, p_j)).
SP = [[5.0, 2.0, 1.0], [0.5, 4.0, 3.5], [2.0, -1.0, 6.0]]
SN = [[3.0, 0.0, 2.5], [1.0, 2.0, -0.5], [4.0, 1.5, 5.0]]
CP = [[20.0, 14.0, 11.0], [9.0, 18.0, 17.0], [12.0, 10.0, 25.0]]
CN = [[15.0, 8.0, 13.0], [10.0, 12.0, 7.0], [19.0, 16.0, 21.0]]


def inbatch_by_hand(sp, sn, cp, cn, keep=None):
    """The two halves' squared differences by explicit loops over i and j != i (keep[i][c]: keep column c)."""
    b = len(sp)
    pos, neg = [], []
    for i in range(b):
        for j in range(b):
            if j == i:
                continue
            if keep is None or keep[i][j]:
                pos.append(((sp[i][i] - sp[i][j]) - (cp[i][i] - cp[i][j])) ** 2)
            if keep is None or keep[i][b + j]:
                neg.append(((sp[i][i] - sn[i][j]) - (cp[i][i] - cn[i][j])) ** 2)
    return pos, neg


def test_hand_values_of_one_entry_each():
    # spot-check the loop itself against two terms written out by hand
    pos, neg = inbatch_by_hand(SP, SN, CP, CN)
    assert pos[0] == ((5.0 - 2.0) - (20.0 - 14.0)) ** 2 == 9.0  # i=0, j=1
    assert neg[0] == ((5.0 - 0.0) - (20.0 - 8.0)) ** 2 == 49.0  # i=0, j=1
    assert len(pos) == len(neg) == 6


# --------------------------------------------------------------------------------------- pairwise


def test_pairwise_margin_mse_hand_values():
    s_pos, s_neg = t([5.0, 1.0, 2.0]), t([3.0, 2.0, 2.0])
    t_pos, t_neg = t([10.0, 4.0, 1.0]), t([7.0, 4.0, 3.0])
    loss = pairwise_margin_mse(s_pos, s_neg, t_pos, t_neg)
    close(loss, (((5 - 3) - (10 - 7)) ** 2 + ((1 - 2) - (4 - 4)) ** 2 + ((2 - 2) - (1 - 3)) ** 2) / 3)


def test_pairwise_equals_the_group_margin_mse():
    gen = torch.Generator().manual_seed(0)
    s, tt = torch.randn(2, 6, generator=gen, dtype=torch.float64)
    ours = pairwise_margin_mse(s[:3], s[3:], tt[:3], tt[3:])
    theirs = MarginMSE()(torch.stack([s[:3], s[3:]], 1), torch.stack([tt[:3], tt[3:]], 1))
    close(ours, theirs.item())


def test_pairwise_empty_batch_is_connected_zero():
    s = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    out = pairwise_margin_mse(s, s, s.detach(), s.detach())
    assert out.item() == 0.0 and out.grad_fn is not None


# --------------------------------------------------------------------------------------- in-batch MSE


def test_inbatch_mean_form_hand_values():
    pos, neg = inbatch_by_hand(SP, SN, CP, CN)
    loss = InBatchMarginMSE()(t(SP), t(SN), t(CP), t(CN))
    close(loss, 0.5 * (sum(pos) / len(pos) + sum(neg) / len(neg)))


def test_inbatch_sum_form_is_the_paper_form_and_mean_times_b_minus_1():
    pos, neg = inbatch_by_hand(SP, SN, CP, CN)
    b = 3
    loss_sum = InBatchMarginMSE(form="sum")(t(SP), t(SN), t(CP), t(CN))
    close(loss_sum, (sum(pos) + sum(neg)) / (2 * b))  # 1/(2|Q|) sum_i sum_{j != i}
    loss_mean = InBatchMarginMSE(form="mean")(t(SP), t(SN), t(CP), t(CN))
    close(loss_sum, loss_mean.item() * (b - 1))


def test_inbatch_ignores_the_diagonal_of_the_negatives():
    ref = InBatchMarginMSE()(t(SP), t(SN), t(CP), t(CN))
    sn, cn = t(SN), t(CN)
    sn.fill_diagonal_(math.nan)
    cn.fill_diagonal_(math.inf)
    sn.requires_grad_(True)
    out = InBatchMarginMSE()(t(SP), sn, t(CP), cn)
    assert out.item() == ref.item()
    out.backward()
    assert torch.all(sn.grad.diagonal() == 0) and torch.all(torch.isfinite(sn.grad))


def test_inbatch_b1_is_connected_zero():
    sp = t([[3.0]]).requires_grad_(True)
    sn = t([[1.0]]).requires_grad_(True)
    for form in ("mean", "sum"):
        out = InBatchMarginMSE(form)(sp, sn, t([[9.0]]), t([[2.0]]))
        assert out.item() == 0.0 and out.grad_fn is not None
        out.backward()
        assert sp.grad.item() == 0.0 and sn.grad.item() == 0.0


def test_inbatch_gradient_reaches_both_sides_of_every_margin():
    sp, sn = t(SP).requires_grad_(True), t(SN).requires_grad_(True)
    InBatchMarginMSE()(sp, sn, t(CP), t(CN)).backward()
    # d/d anchor = -(sum of the row's d/d S+[i,j] and d/d S-[i,j]): nothing was detached
    for i in range(3):
        others = sum(sp.grad[i, j].item() + sn.grad[i, j].item() for j in range(3) if j != i)
        assert sp.grad[i, i].item() != 0.0
        assert sp.grad[i, i].item() == pytest.approx(-others, rel=1e-12, abs=1e-12)
    assert torch.all(sp.grad.masked_select(~torch.eye(3, dtype=torch.bool)) != 0)


def test_inbatch_mask_drops_entries():
    T, F = True, False
    keep = [[T, F, T, T, T, F], [T, T, T, T, T, T], [T, T, T, F, T, T]]
    pos, neg = inbatch_by_hand(SP, SN, CP, CN, keep)
    assert (len(pos), len(neg)) == (5, 4)
    sp = t(SP)
    sp[0, 1] = math.nan  # an excluded entry's value cannot leak
    mask = torch.tensor(keep)
    close(InBatchMarginMSE()(sp, t(SN), t(CP), t(CN), mask), 0.5 * (sum(pos) / 5 + sum(neg) / 4))
    close(InBatchMarginMSE("sum")(sp, t(SN), t(CP), t(CN), mask), (sum(pos) + sum(neg)) / 6)


def test_inbatch_gradcheck_float64():
    gen = torch.Generator().manual_seed(1)
    sp, sn, cp, cn = (torch.randn(4, 4, generator=gen, dtype=torch.float64) for _ in range(4))
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[1, 2] = mask[3, 5] = False
    for form in ("mean", "sum"):
        loss = InBatchMarginMSE(form)
        sp.requires_grad_(), sn.requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: loss(a, b, cp, cn), (sp, sn))
        assert torch.autograd.gradcheck(lambda a, b: loss(a, b, cp, cn, mask), (sp, sn))
        # differentiable in the teacher side too (it is used as given)
        cp.requires_grad_(), cn.requires_grad_()
        assert torch.autograd.gradcheck(lambda a, b: loss(sp, sn, a, b), (cp, cn))
        cp, cn = cp.detach(), cn.detach()


def test_inbatch_bf16_is_computed_in_float32():
    ref = InBatchMarginMSE()(t(SP), t(SN), t(CP), t(CN))
    out = InBatchMarginMSE()(t(SP, torch.bfloat16), t(SN, torch.bfloat16), t(CP, torch.bfloat16),
                             t(CN, torch.bfloat16))
    assert out.dtype == torch.float32
    # these values are exact in bf16, so float32 arithmetic reproduces the float64 result
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)


# --------------------------------------------------------------------------------------- dual


def test_dual_teacher_total_and_parts():
    tp, tn = t([10.0, 6.0, 9.0]), t([7.0, 6.5, 1.0])
    pos, neg = inbatch_by_hand(SP, SN, CP, CN)
    inb = 0.5 * (sum(pos) / 6 + sum(neg) / 6)
    pair = sum(((SP[i][i] - SN[i][i]) - (tp[i].item() - tn[i].item())) ** 2 for i in range(3)) / 3
    out = DualTeacherLoss()(t(SP), t(SN), tp, tn, t(CP), t(CN))
    assert isinstance(out, DualLoss)
    close(out.pair, pair)
    close(out.inbatch, inb)
    close(out.total, pair + 0.75 * inb)
    out = DualTeacherLoss(alpha=2.0, pair_weight=0.5, form="sum")(t(SP), t(SN), tp, tn, t(CP), t(CN))
    close(out.inbatch, inb * 2)
    close(out.total, 0.5 * pair + 2.0 * inb * 2)
    total, p, i = out  # unpacks like a tuple
    assert total is out.total


def test_dual_teacher_without_colbert_when_alpha_is_zero():
    sp = t(SP).requires_grad_(True)
    out = DualTeacherLoss(alpha=0)(sp, t(SN), t([1.0, 2.0, 3.0]), t([0.0, 0.0, 0.0]))
    assert out.inbatch.item() == 0.0
    close(out.total, out.pair.item())
    out.total.backward()
    with pytest.raises(ValueError, match="ColBERT teacher matrices are required"):
        DualTeacherLoss()(t(SP), t(SN), t([1.0, 2.0, 3.0]), t([0.0, 0.0, 0.0]))


def test_dual_teacher_gradcheck():
    gen = torch.Generator().manual_seed(2)
    sp, sn, cp, cn = (torch.randn(3, 3, generator=gen, dtype=torch.float64) for _ in range(4))
    tp, tn = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    loss = DualTeacherLoss(alpha=0.75, pair_weight=1.0)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, tp, tn, cp, cn).total,
                                    (sp.requires_grad_(), sn.requires_grad_()))


# --------------------------------------------------------------------------------------- InfoNCE


def lse(xs):
    return math.log(sum(math.exp(x) for x in xs))


def infonce_by_hand(sp, sn, temperature=1.0, keep=None):
    b = len(sp)
    total = 0.0
    for i in range(b):
        row = [x / temperature for x in list(sp[i]) + list(sn[i])]
        kept = [x for c, x in enumerate(row) if keep is None or keep[i][c]]
        total += lse(kept) - row[i]
    return total / b


def test_infonce_hand_values():
    close(InBatchInfoNCE()(t(SP), t(SN)), infonce_by_hand(SP, SN))
    close(InBatchInfoNCE(temperature=0.5)(t(SP), t(SN)), infonce_by_hand(SP, SN, 0.5))
    # B=1 by hand: q_0 against its positive (5) and its negative (3)
    one = InBatchInfoNCE()(t([[5.0]]), t([[3.0]]))
    close(one, math.log(math.exp(5.0) + math.exp(3.0)) - 5.0)
    # without negatives: B columns
    close(InBatchInfoNCE()(t(SP)), infonce_by_hand(SP, [[], [], []]))


@pytest.mark.parametrize("pad", [1e9, math.inf, math.nan])
def test_infonce_mask_excludes_duplicates(pad):
    T, F = True, False
    keep = [[T, F, T, T, T, F], [T, T, T, T, T, T], [T, T, T, F, T, T]]
    sp = t(SP)
    sp[0, 1] = pad
    sp.requires_grad_(True)
    out = InBatchInfoNCE()(sp, t(SN), torch.tensor(keep))
    close(out, infonce_by_hand(SP, SN, keep=keep))
    out.backward()
    assert sp.grad[0, 1].item() == 0.0 and torch.all(torch.isfinite(sp.grad))


def test_duplicate_mask():
    # p_0+ = "d1" is also the positive of triple 2 and the negative of triple 1; q "a" is drawn twice
    keep = duplicate_mask(["d1", "d2", "d1", "d4"], ["d5", "d1", "d6", "d7"])
    T, F = True, False
    assert keep.tolist() == [
        [T, T, F, T, T, F, T, T],
        [T, T, T, T, T, T, T, T],
        [F, T, T, T, T, F, T, T],
        [T, T, T, T, T, T, T, T],
    ]
    keep = duplicate_mask(["d1", "d2", "d3"], ["d4", "d5", "d6"], query_ids=["a", "b", "a"])
    assert keep.tolist() == [[T, T, F, T, T, T], [T, T, T, T, T, T], [F, T, T, T, T, T]]
    assert duplicate_mask(["d1"]).tolist() == [[T]]


def test_infonce_gradcheck_and_bf16():
    gen = torch.Generator().manual_seed(3)
    sp, sn = torch.randn(2, 4, 4, generator=gen, dtype=torch.float64)
    mask = torch.ones(4, 8, dtype=torch.bool)
    mask[0, 2] = mask[1, 6] = False
    loss = InBatchInfoNCE(temperature=0.3)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, mask), (sp.requires_grad_(), sn.requires_grad_()))
    out = loss(sp.detach().to(torch.bfloat16), sn.detach().to(torch.bfloat16), mask)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(loss(sp.detach(), sn.detach(), mask).item(), rel=0.02)


# --------------------------------------------------------------------------------------- checks


def test_bad_parameters():
    with pytest.raises(IrflowError, match="form must be 'mean' or 'sum', got 'avg'"):
        InBatchMarginMSE("avg")
    with pytest.raises(IrflowError, match="form must be"):
        DualTeacherLoss(form="total")
    for bad in (-0.5, math.nan, math.inf, True):
        with pytest.raises(IrflowError, match="alpha must be a finite number >= 0"):
            DualTeacherLoss(alpha=bad)
        with pytest.raises(IrflowError, match="pair_weight must be a finite number >= 0"):
            DualTeacherLoss(pair_weight=bad)
    with pytest.raises(IrflowError, match="alpha 'x' is not a number"):
        DualTeacherLoss(alpha="x")
    for bad in (0, -1.0, math.nan):
        with pytest.raises(IrflowError, match="temperature must be a finite number > 0"):
            InBatchInfoNCE(temperature=bad)
    assert DualTeacherLoss(alpha=0, pair_weight="2").pair_weight == 2.0


def test_bad_shapes():
    with pytest.raises(ValueError, match="square"):
        InBatchMarginMSE()(t([[1.0, 2.0]]), t([[1.0, 2.0]]), t([[1.0, 2.0]]), t([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="c_neg_mat must have shape"):
        InBatchMarginMSE()(t(SP), t(SN), t(CP), t([[1.0]]))
    with pytest.raises(ValueError, match="mask must have shape"):
        InBatchMarginMSE()(t(SP), t(SN), t(CP), t(CN), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="own positive"):
        InBatchInfoNCE()(t(SP), t(SN), ~torch.eye(3, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        InBatchInfoNCE()(t(SP), t(SN), torch.ones(3, 6))
    with pytest.raises(ValueError, match="floating point"):
        pairwise_margin_mse(torch.tensor([1]), torch.tensor([1]), t([1.0]), t([1.0]))
