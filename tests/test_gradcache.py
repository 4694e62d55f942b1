"""GradCache: the cached step gives the gradients of the step that holds the whole batch's graph.

Through :class:`irflow.train.biencoder.BiEncoderTask` (its ``loss``, as the training loop calls it)
with a tiny BERT bi-encoder, for every objective; with dropout off against the plain one-pass step,
in float64 (where the method must be exact: 1e-10 of the largest gradient) and in float32 (where
sums over the batch's tokens run in another order: 1e-4 of the largest gradient); with dropout on
against the same chunks encoded with their graphs kept (the dropout masks are drawn per chunk, and
the cached step must replay exactly those).
"""

from __future__ import annotations

import pytest
import torch

from irflow.errors import IrflowError
from irflow.train.biencoder import BiEncoderTask, DenseConfig
from irflow.train.gradcache import cached_encode, chunked_encode

B, CHUNK = 8, 3


@pytest.fixture(scope="module")
def models(tiny_bert):
    from irflow.data.synthetic import generate
    from irflow.models.colbert import ColBERT
    from irflow.models.dense import DenseModel

    torch.manual_seed(0)
    student = DenseModel(str(tiny_bert), "mean", True, None)
    colbert = ColBERT.from_pretrained(str(tiny_bert))
    coll = generate("tiny")
    texts = [t for _, t in coll.docs[: 3 * B]]
    queries = [t for _, t in coll.queries[:B]]
    return student, colbert, queries, texts


def _batch(student, colbert, queries, texts, dup: bool = False):
    pos, neg = texts[:B], texts[B:2 * B]
    pos_ids = [f"p{i}" for i in range(B)]
    if dup:  # a passage twice in the batch: exercises the duplicate mask
        pos_ids[1] = pos_ids[0]
        pos[1] = pos[0]
    q = student.tokenize(queries, 16)
    d = student.tokenize(pos + neg, 48)
    t = torch.linspace(0, 1, 2 * B).reshape(B, 2)
    col = (colbert.tokenize(queries, 16), colbert.tokenize(pos + neg, 48))
    ids = (pos_ids + [f"n{i}" for i in range(B)], [f"q{i}" for i in range(B)])
    return q, d, t, col, ids


def _grads(student, colbert, batch, objective, chunk, *, dropout: bool, reference_chunks: bool = False,
           seed: int = 3, dtype=torch.float32):
    """Loss and parameter gradients of one step of ``BiEncoderTask.loss`` on a copy of the student."""
    import copy

    model = copy.deepcopy(student).to(dtype)
    colbert = copy.deepcopy(colbert).to(dtype)
    model.train(dropout)
    if reference_chunks:  # the uncached step with the same chunks (and so the same dropout draws)
        encode = model.encode
        model.encode = lambda ids, mask: chunked_encode(encode, (ids, mask), CHUNK)
    cfg = DenseConfig(objective=objective, batch_size=B, cache_chunk=chunk)
    task = BiEncoderTask(model, None, None, {}, {}, cfg, seed=0, device="cpu", colbert=colbert)
    torch.manual_seed(seed)
    loss, n = task.loss(batch)
    loss.backward()
    rng_after = torch.get_rng_state()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads, rng_after


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _close(a: dict, b: dict, tol: float = 1e-5) -> bool:
    """Within ``tol`` of the largest gradient (or absolutely, where no gradient exceeds 1).

    With the untrained ColBERT teacher's large margins the embedding gradients reach ~8, where the
    reordering of float32 sums alone moves them by a few 1e-5 (more or less with the thread count).
    """
    scale = max(1.0, max(float(g.abs().max()) for g in a.values()))
    return _max_diff(a, b) <= tol * scale


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("objective", ["infonce", "inbatch", "dual", "margin-mse"])
def test_cached_gradients_equal_the_uncached_step_without_dropout(models, objective, dtype, tol):
    student, colbert, queries, texts = models
    batch = _batch(student, colbert, queries, texts, dup=True)
    plain_loss, plain, _ = _grads(student, colbert, batch, objective, None, dropout=False, dtype=dtype)
    cached_loss, cached, _ = _grads(student, colbert, batch, objective, CHUNK, dropout=False, dtype=dtype)
    assert abs(plain_loss - cached_loss) <= max(tol, 1e-12) * max(1.0, abs(plain_loss))
    assert _close(plain, cached, tol), _max_diff(plain, cached)
    assert all(g.dtype == dtype for g in plain.values())
    assert max(float(g.abs().max()) for g in plain.values()) > 1e-4  # gradients that say something


@pytest.mark.parametrize("objective", ["infonce", "dual"])
def test_cached_gradients_with_dropout_replay_each_chunks_masks(models, objective):
    student, colbert, queries, texts = models
    batch = _batch(student, colbert, queries, texts)
    ref_loss, ref, ref_rng = _grads(student, colbert, batch, objective, None, dropout=True,
                                    reference_chunks=True)
    loss, cached, rng = _grads(student, colbert, batch, objective, CHUNK, dropout=True)
    assert abs(ref_loss - loss) <= 1e-5
    assert _close(ref, cached, 1e-4), _max_diff(ref, cached)
    assert torch.equal(ref_rng, rng)  # the global generator ends where the uncached step leaves it
    # dropout is really on: another seed draws other masks and other gradients
    _, other, _ = _grads(student, colbert, batch, objective, CHUNK, dropout=True, seed=4)
    assert _max_diff(other, cached) > 1e-4


def test_only_one_chunk_is_ever_encoded_with_a_graph(models):
    student, colbert, queries, texts = models
    import copy

    model = copy.deepcopy(student).train()
    seen = []
    encode = model.encode

    def spy(ids, mask):
        seen.append((ids.shape[0], torch.is_grad_enabled()))
        return encode(ids, mask)

    model.encode = spy
    cfg = DenseConfig(objective="infonce", batch_size=B, cache_chunk=CHUNK)
    task = BiEncoderTask(model, None, None, {}, {}, cfg, seed=0, device="cpu")
    loss, _ = task.loss(_batch(student, colbert, queries, texts))
    assert all(not grad for _, grad in seen)  # the first pass keeps no graph
    loss.backward()
    with_graph = [n for n, grad in seen if grad]
    assert max(with_graph) <= CHUNK and sum(with_graph) == 3 * B  # every query and passage re-encoded once


def test_autocast_is_reentered_for_the_second_pass():
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3)
    dtypes = []

    def encode(x):
        y = lin(x)
        dtypes.append((y.dtype, torch.is_grad_enabled()))
        return y.float()

    x = torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = cached_encode(encode, (x,), 2)
        loss = out.square().sum()
    loss.backward()
    assert {d for d, _ in dtypes} == {torch.bfloat16}
    assert sum(g for _, g in dtypes) == 3 and lin.weight.grad is not None


def test_cache_chunk_is_validated_and_keyed():
    with pytest.raises(IrflowError, match="cache_chunk"):
        DenseConfig(objective="infonce", cache_chunk=0).check()
    assert "cache_chunk" not in DenseConfig(objective="infonce").key_params()
    assert DenseConfig(objective="infonce", cache_chunk=16).key_params()["cache_chunk"] == 16
    with pytest.raises(ValueError, match="chunk"):
        cached_encode(lambda x: x, (torch.zeros(2, 1),), 0)
