"""Models usable outside irflow: a saved bi-encoder loads in sentence-transformers and transformers with
irflow's vectors; a seqcls cross-encoder loads with AutoModelForSequenceClassification."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irflow.encode import EncodeParams, encode_shard
from irflow.models.resolve import check_tokenizer
from irflow.prepare import PrepareParams, load_texts, prepare


def _irflow_vectors(tmp_path, model: str, tokenizer: str, max_length: int, pooling: str,
                    normalize: bool) -> tuple[list[str], np.ndarray]:
    prepared, out = tmp_path / "prepared", tmp_path / "encoded"
    prepared.mkdir()
    out.mkdir()
    prepare(PrepareParams(dataset="synthetic:tiny", kind="docs", tokenizer=tokenizer, max_length=max_length), prepared)
    encode_shard(EncodeParams(model=model, pooling=pooling, normalize=normalize, precision="fp32"), prepared, out, device="cpu", autocast_dtype=None,
                 progress=False)
    return load_texts(prepared)[1], np.load(out / "emb.npy").astype(np.float32)


@pytest.mark.parametrize("source,pooling,normalize", [("all-MiniLM-L6-v2", "mean", True), ("tiny", "cls", False)])
def test_saved_bi_encoder_loads_in_sentence_transformers_with_irflow_vectors(tmp_path, tiny_bert, source, pooling,
                                                                            normalize):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from irflow.models.dense import DenseModel

    src = str(tiny_bert) if source == "tiny" else source
    torch.manual_seed(0)
    model = DenseModel(src, pooling=pooling, normalize=normalize)
    with torch.no_grad():  # "trained": weights that differ from the source's
        for p in model.backbone.encoder.layer[-1].output.dense.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    saved = tmp_path / "model"
    model.save(saved, {"artifact_key": "k"})
    assert (saved / "README.md").is_file()
    max_length = 64
    texts, ours = _irflow_vectors(tmp_path, str(saved), src, max_length, pooling, normalize)  # prepared with the source's tokenizer
    assert check_tokenizer(tmp_path / "prepared", str(saved))["tokenizer"] == src  # same tokenizer as its source

    st = SentenceTransformer(str(saved), device="cpu")
    st.max_seq_length = max_length
    theirs = st.encode(texts, convert_to_numpy=True)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= 0.999
    assert np.abs(ours - theirs).max() < 5e-3  # the same vectors (float16 storage), not only directions
    assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-3) == normalize  # 2_Normalize iff normalised

    backbone = AutoModel.from_pretrained(saved)
    assert sum(p.numel() for p in backbone.parameters()) == sum(p.numel() for p in model.backbone.parameters())


def test_seqcls_cross_encoder_loads_with_auto_sequence_classification(tmp_path, tiny_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from irflow.models.crossencoder import CrossEncoder, score_pairs

    torch.manual_seed(0)
    ce = CrossEncoder(str(tiny_bert), head="seqcls", max_length=32)
    ce.save(tmp_path / "ce", {"artifact_key": "k"})
    q, d = ["alpha beta", "gamma"], ["beta delta epsilon", "gamma gamma"]
    ours = score_pairs(ce, q, d, device="cpu")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ce").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "ce")
    with torch.no_grad():
        theirs = hf(**tok(q, d, truncation=True, max_length=32, padding=True, return_tensors="pt")).logits[:, 0]
    assert np.allclose(ours, theirs.numpy(), atol=1e-5)
    assert "AutoModelForSequenceClassification" in (tmp_path / "ce" / "README.md").read_text()


def test_cosine_head_is_documented_as_irflow_only(tmp_path, tiny_bert):
    from irflow.models.crossencoder import CrossEncoder

    CrossEncoder(str(tiny_bert), head="cosine", max_length=32).save(tmp_path / "ce", {"artifact_key": "k"})
    card = (tmp_path / "ce" / "README.md").read_text()
    assert "irflow-only head (cosine)" in card and "irflow_head.safetensors" in card
