"""The trainable single-vector bi-encoder (the dense retriever that ``irflow train`` fine-tunes).

Inference lives in :mod:`irflow.models.biencoder` (pre-tokenised, length-bucketed, bf16 weights);
this is the same encoder as an ``nn.Module`` with gradients: one shared backbone for queries and
passages, mean or CLS pooling, optional L2 normalisation — exactly what ``irflow encode`` computes
with the same ``pooling``/``normalize``, so the retriever that was validated is the one that is
indexed.

A normalised encoder scores with cosines in [-1, 1] while teacher margins are logits of any size;
``scale`` multiplies the student's scores *during training only* (ranking is invariant to it).
``None`` means 1 for unnormalised models (TAS-B's dot product) and 20 for normalised ones
(sentence-transformers' default for cosine in-batch losses).

Saved as an HF ``save_pretrained`` directory plus ``irflow_model.json`` (family, pooling,
normalize, the key of the artifact that made it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .biencoder import pool
from .crossencoder import CARD, read_card
from .resolve import load_error, resolve


class DenseModel(nn.Module):
    family = "bi-encoder"

    def __init__(self, model: str, pooling: str = "mean", normalize: bool = True, scale: float | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = resolve(model)
        try:
            self.backbone = AutoModel.from_pretrained(path, trust_remote_code=False, attn_implementation="sdpa")
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        except Exception as e:
            raise load_error(model, e) from e
        self.pooling, self.normalize = pooling, normalize
        self.scale = float(scale) if scale is not None else (20.0 if normalize else 1.0)
        self.card = read_card(model)

    def tokenize(self, texts: list[str], max_length: int) -> dict:
        return self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")

    def encode(self, input_ids, attention_mask) -> torch.Tensor:
        """Float32 vectors [N, dim] (pooled in float32 whatever the forward pass ran in)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling, self.normalize)

    # the scorer interface shared with ColBERT (irflow.train.biencoder uses only these two)
    def score_pairs(self, q: torch.Tensor, q_mask, d: torch.Tensor, d_mask) -> torch.Tensor:
        return self.scale * (q * d).sum(-1)

    def inbatch_scores(self, q: torch.Tensor, q_mask, d: torch.Tensor, d_mask) -> torch.Tensor:
        return self.scale * q @ d.T

    def head_parameters(self) -> list[nn.Parameter]:
        return []

    def save(self, out: Path, card: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        (out / CARD).write_text(json.dumps({"family": self.family, "pooling": self.pooling,
                                            "normalize": self.normalize, **card}, indent=2, sort_keys=True) + "\n")
