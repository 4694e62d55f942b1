"""Cross-encoder heads: the right default per checkpoint, save/load round trip, a sensible start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irflow.models.crossencoder import CrossEncoder, score_pairs


def test_sequence_classification_checkpoints_default_to_their_logit(tmp_path, tiny_bert):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    cfg = BertConfig.from_pretrained(tiny_bert, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "ce")
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(tmp_path / "ce")
    assert CrossEncoder(str(tmp_path / "ce")).head_type == "seqcls"
    assert CrossEncoder(str(tiny_bert)).head_type == "cosine"  # a plain encoder


@pytest.mark.parametrize("head", ["cosine", "mean"])
def test_save_and_load_round_trip(tmp_path, tiny_bert, head):
    m = CrossEncoder(str(tiny_bert), head=head, max_length=32)
    with torch.no_grad():
        for p in m.head.parameters():
            p.add_(0.5)
    m.save(tmp_path / "m", {"artifact_key": "k"})
    again = CrossEncoder(str(tmp_path / "m"))
    assert again.head_type == head
    q, d = ["alpha beta", "gamma"], ["beta delta epsilon", "gamma gamma"]
    a = score_pairs(m, q, d, device="cpu")
    b = score_pairs(again, q, d, device="cpu")
    assert np.allclose(a, b, atol=1e-6)


def test_cosine_head_ranks_relevant_documents_first_before_any_training():
    """The known trap: a fresh head on all-MiniLM-L6-v2's untrained CLS does not rank at all.
    The cosine head over the jointly encoded segments does, from the start."""
    from irflow.data.synthetic import generate

    coll = generate("tiny")
    docs = dict(coll.docs)
    queries = dict(coll.queries)
    best = {}
    for q, d, g in coll.qrels:
        best.setdefault(q, {})[d] = g
    m = CrossEncoder("all-MiniLM-L6-v2", max_length=128)
    wins = total = 0
    rng = np.random.default_rng(0)
    for q, judged in list(best.items())[:30]:
        rel = [d for d, g in judged.items() if g >= 2]
        off = [d for d in docs if d not in judged]
        if not rel:
            continue
        pairs = [(q, rel[0])] + [(q, off[i]) for i in rng.choice(len(off), 5, replace=False)]
        s = score_pairs(m, [queries[a] for a, _ in pairs], [docs[b] for _, b in pairs], device="cpu")
        wins += s[0] > max(s[1:])
        total += 1
    assert wins / total >= 0.8, (wins, total)


def test_separate_lower_layers_see_each_segment_alone(tiny_bert):
    """With every layer segment-separate, the query segment's states are exactly the query encoded
    alone (same tokens, positions, token types): the masks and positions are right."""
    from transformers import AutoModel, AutoTokenizer

    m = CrossEncoder(str(tiny_bert), max_length=64, separate_layers=2).eval()
    assert CrossEncoder(str(tiny_bert)).separate_layers == 0  # a fresh head: all but the top two layers
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    bare = AutoModel.from_pretrained(tiny_bert).eval()
    queries, docs = ["alpha beta gamma", "delta"], ["beta epsilon zeta eta theta", "delta delta"]
    enc = m.tokenize(queries, docs)
    with torch.no_grad():
        joint = m._late_interaction(enc)
        for i, (q, d) in enumerate(zip(queries, docs)):
            alone = bare(**tok([q], return_tensors="pt")).last_hidden_state[0]
            n = alone.shape[0]
            assert torch.allclose(joint[i, :n], alone, atol=1e-5)
            # the document's tokens (without its own [CLS]) depend on the document only
            d_alone = tok([d], return_tensors="pt")
            d_ids = d_alone["input_ids"][:, 1:]
            pos = torch.arange(1, d_ids.shape[1] + 1)[None]
            h = bare(input_ids=d_ids, attention_mask=torch.ones_like(d_ids), position_ids=pos).last_hidden_state[0]
            mask = enc["token_type_ids"][i].bool() & enc["attention_mask"][i].bool()
            assert torch.allclose(joint[i][mask], h, atol=1e-5)
    with pytest.raises(Exception, match="separate_layers"):
        CrossEncoder(str(tiny_bert), separate_layers=3)


def test_document_cls_makes_the_all_separate_reranker_the_bi_encoder(tiny_bert, tmp_path):
    """With ``document_cls`` and every layer segment-separate, the document segment is encoded as
    the bi-encoder encodes it alone ([CLS] d [SEP], positions from 0), so the untrained re-ranker's
    cosine is the mean-pooled bi-encoder's cosine (to 1e-5), for pairs of different lengths in one
    padded batch. The choice is saved with the model, keyed only when given, and refused without
    separate layers."""
    from irflow.models.dense import DenseModel
    from irflow.train.params import CrossEncoderTrainParams

    m = CrossEncoder(str(tiny_bert), max_length=64, separate_layers=2, document_cls=True).eval()
    bi = DenseModel(str(tiny_bert), "mean", True, None).eval()
    queries = ["alpha beta gamma", "delta", "epsilon zeta"]
    docs = ["beta epsilon zeta eta theta", "delta delta", "gamma"]
    with torch.no_grad():
        got = m(**m.tokenize(queries, docs))
        q, d = bi.tokenize(queries, 64), bi.tokenize(docs, 64)
        cos = (bi.encode(q["input_ids"], q["attention_mask"]) * bi.encode(d["input_ids"], d["attention_mask"])).sum(-1)
    w, b = float(m.head.weight.detach()), float(m.head.bias.detach())
    assert torch.allclose(got, w * cos + b, atol=1e-5)
    plain = CrossEncoder(str(tiny_bert), max_length=64, separate_layers=2).eval()
    with torch.no_grad():
        assert not torch.allclose(plain(**plain.tokenize(queries, docs)), got, atol=1e-3)  # without: not the bi-encoder
    m.save(tmp_path / "ce", {})
    again = CrossEncoder(str(tmp_path / "ce")).eval()
    assert again.document_cls and again.separate_layers == 2
    with torch.no_grad():
        assert torch.allclose(again(**again.tokenize(queries, docs)), got, atol=1e-6)
    M = "all-MiniLM-L6-v2"
    assert "document_cls" not in CrossEncoderTrainParams(model=M).key_params()
    assert CrossEncoderTrainParams(model=M, document_cls=True).key_params()["document_cls"] is True
    with pytest.raises(Exception, match="document_cls"):
        CrossEncoder(str(tiny_bert), separate_layers=0, document_cls=True)
