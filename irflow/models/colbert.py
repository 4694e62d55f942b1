"""A ColBERT-style multi-vector model: TAS-Balanced's in-batch teacher.

As the reference (MM ``models/colbert.py``): a transformers encoder, then ``Linear(hidden → dim)``
(with bias; ``dim`` defaults to the hidden size, 768 → 768 for DistilBERT), **no** L2
normalisation, and the late-interaction score

    score(q, d) = Σ_{query tokens t} max_{doc tokens u} <q_t, d_u>

over the unpadded tokens: query padding contributes 0, document padding never wins the max.

Two things differ from the reference, on purpose:

* :func:`inbatch_scores` masks entry ``[i, j]`` with document ``j``'s padding
  (``d_mask[None, :, None, :]``). The reference's ``forward_inbatch_aggregation`` expands the mask
  as ``document_mask.unsqueeze(1).unsqueeze(1)``, which indexes it by the *query* row, so every
  off-diagonal entry used document ``i``'s padding: a longer ``j`` lost its tail tokens, a shorter
  ``j`` let its padding vectors win the max.
* Padding is excluded with ``-inf`` instead of the reference's ``-1000``, so a valid token always
  wins, however negative its dot product; a document with no valid token at all scores 0.

Maxima are taken in the input dtype (exact) and summed in float32 (float64 stays float64), so
bf16/fp16 teachers give float32 scores without a bf16 sum over query tokens.

A saved ColBERT is the backbone's ``save_pretrained`` directory plus its tokenizer,
``linear.safetensors`` and ``colbert.json`` (``dim``); ``ColBERT.from_pretrained`` loads either such
a directory or any plain encoder (hub id, local directory, the packaged ``all-MiniLM-L6-v2``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import IrflowError
from .resolve import load_error, pretrained

__all__ = ["COLBERT_CARD", "LINEAR", "ColBERT", "inbatch_scores", "score_pairs"]

COLBERT_CARD = "colbert.json"
LINEAR = "linear.safetensors"
CARD = "irflow_model.json"

#: Default cap on the elements of one query chunk's ``[bq, Bd, Lq, Ld]`` similarity tensor
#: (2**26 = 256 MiB in fp32): B=32, Lq=30, Ld=200 is one chunk of 6.1M; B=256 is split in 7.
DEFAULT_MAX_ELEMENTS = 1 << 26


def _check_vecs(who: str, vecs: Tensor, mask: Tensor, what: str) -> Tensor:
    if vecs.dim() != 3:
        raise ValueError(f"{who}: {what}_vecs must be [N, L, dim], got shape {list(vecs.shape)}")
    if tuple(mask.shape) != tuple(vecs.shape[:2]):
        raise ValueError(f"{who}: {what}_mask shape {list(mask.shape)} "
                         f"!= {what}_vecs' [N, L] {list(vecs.shape[:2])}")
    return mask.to(vecs.device).bool()


def _maxsim(sim: Tensor, d_valid: Tensor, q_valid: Tensor) -> Tensor:
    """Sum over query tokens (dim -2) of the max over doc tokens (dim -1) of ``sim``.

    ``d_valid`` broadcasts against ``sim``, ``q_valid`` against ``sim`` without its last dim.
    """
    best = sim.masked_fill(~d_valid, -math.inf).amax(dim=-1)  # exact in any dtype
    best = best.to(torch.promote_types(best.dtype, torch.float32))
    # -inf only where the document has no valid token (or the query token is padding): both add 0
    best = best.masked_fill(~q_valid | (best == -math.inf), 0.0)
    return best.sum(dim=-1)


def score_pairs(q_vecs: Tensor, q_mask: Tensor, d_vecs: Tensor, d_mask: Tensor) -> Tensor:
    """Scores ``[N]`` of aligned pairs ``(q_n, d_n)``; token vectors ``[N, L, dim]``, masks ``[N, L]``."""
    who = "colbert score_pairs"
    q_valid = _check_vecs(who, q_vecs, q_mask, "q")
    d_valid = _check_vecs(who, d_vecs, d_mask, "d")
    if q_vecs.shape[0] != d_vecs.shape[0] or q_vecs.shape[2] != d_vecs.shape[2]:
        raise ValueError(f"{who}: {list(q_vecs.shape)} queries and {list(d_vecs.shape)} documents "
                         "do not pair up")
    sim = torch.bmm(q_vecs, d_vecs.transpose(1, 2))  # [N, Lq, Ld]
    return _maxsim(sim, d_valid[:, None, :], q_valid)


def inbatch_scores(q_vecs: Tensor, q_mask: Tensor, d_vecs: Tensor, d_mask: Tensor,
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> Tensor:
    """Scores ``[Bq, Bd]`` of every query against every document: entry ``[i, j] = score(q_i, d_j)``.

    Entry ``[i, j]`` is masked with document ``j``'s own padding, ``d_mask[None, :, None, :]`` on
    the ``[Bq, Bd, Lq, Ld]`` similarities (this fixes the reference's
    ``document_mask.unsqueeze(1).unsqueeze(1)``, which used document ``i``'s). The similarity
    tensor is built for chunks of queries of at most ``max_elements`` elements each (at least one
    query per chunk); the diagonal equals :func:`score_pairs` when ``Bq == Bd``.
    """
    who = "colbert inbatch_scores"
    q_valid = _check_vecs(who, q_vecs, q_mask, "q")
    d_valid = _check_vecs(who, d_vecs, d_mask, "d")
    if q_vecs.shape[2] != d_vecs.shape[2]:
        raise ValueError(f"{who}: query dim {q_vecs.shape[2]} != document dim {d_vecs.shape[2]}")
    bq, lq = q_vecs.shape[:2]
    bd, ld = d_vecs.shape[:2]
    per_query = max(1, bd * lq * ld)
    chunk = max(1, int(max_elements) // per_query)
    d_valid4 = d_valid[None, :, None, :]  # [1, Bd, 1, Ld]: doc j's padding for column j
    d_flat = d_vecs.reshape(bd * ld, -1)
    out = []
    for start in range(0, bq, chunk) if bq else [0]:
        q = q_vecs[start:start + chunk]
        sim = (q.reshape(-1, q.shape[-1]) @ d_flat.T).view(q.shape[0], lq, bd, ld).transpose(1, 2)
        out.append(_maxsim(sim, d_valid4, q_valid[start:start + chunk, None, :]))
    return torch.cat(out, dim=0)


class ColBERT(nn.Module):
    """Encoder + ``Linear(hidden → dim)``, MaxSim scoring (see the module docstring)."""

    def __init__(self, backbone: nn.Module, tokenizer=None, dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        hidden = int(backbone.config.hidden_size)
        self.dim = hidden if dim is None else int(dim)
        if self.dim < 1:
            raise IrflowError(f"colbert: dim must be a positive integer, got {dim!r}")
        self.linear = nn.Linear(hidden, self.dim)

    # ----------------------------------------------------------------------------- loading/saving

    @classmethod
    def from_pretrained(cls, model_or_dir: str | Path, dim: int | None = None) -> ColBERT:
        """A saved ColBERT directory (linear included), or a plain encoder with a fresh linear layer.

        ``model_or_dir`` goes through :func:`irflow.models.resolve.pretrained`: a hub id (at its commit), a local
        directory, or ``all-MiniLM-L6-v2`` (the packaged copy, offline). A fresh linear layer has
        PyTorch's default initialisation (seed torch first for reproducibility). ``dim`` must match
        a saved model's, if given. The model comes back in eval mode (a teacher; call ``train()``
        to fine-tune it).
        """
        from transformers import AutoModel, AutoTokenizer

        model = str(model_or_dir)
        path, kw = pretrained(model)
        saved = Path(path) / COLBERT_CARD
        card = json.loads(saved.read_text()) if saved.is_file() else None
        if card is not None:
            if dim is not None and int(dim) != int(card["dim"]):
                raise IrflowError(f"colbert: dim {dim} requested, but the saved model has dim {card['dim']}",
                                  where=saved)
            dim = int(card["dim"])
        try:
            backbone = AutoModel.from_pretrained(path, trust_remote_code=False, attn_implementation="sdpa", **kw)
            tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False, **kw)
        except IrflowError:
            raise
        except Exception as e:
            raise load_error(model, e) from e
        out = cls(backbone, tokenizer, dim)
        if card is not None:
            from safetensors.torch import load_file

            linear = Path(path) / LINEAR
            if not linear.is_file():
                raise IrflowError(f"saved ColBERT has {COLBERT_CARD} but no {LINEAR}", where=path)
            try:
                out.linear.load_state_dict(load_file(str(linear)))
            except RuntimeError as e:
                raise IrflowError(f"{LINEAR} does not fit the backbone: {str(e)[:300]}",
                                  where=linear) from None
        return out.eval()

    def save(self, out: str | Path, card: dict | None = None) -> None:
        """Write the backbone (safetensors), its tokenizer, ``linear.safetensors`` and ``colbert.json``.

        ``card`` (e.g. ``{"artifact_key": ...}``), if given, is written to ``irflow_model.json``
        with ``family: colbert``, as the cross-encoder does, so the directory keys by its artifact.
        """
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out, safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(out)
        state = {k: v.detach().contiguous().cpu() for k, v in self.linear.state_dict().items()}
        save_file(state, str(out / LINEAR))
        meta = {"family": "colbert", "dim": self.dim, "hidden_size": int(self.backbone.config.hidden_size),
                "normalize": False}
        (out / COLBERT_CARD).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if card is not None:
            (out / CARD).write_text(json.dumps({"family": "colbert", "dim": self.dim, **card},
                                               indent=2, sort_keys=True) + "\n")

    # ----------------------------------------------------------------------------- encoding/scoring

    def tokenize(self, texts: list[str], max_length: int) -> dict:
        """Padded ``input_ids``/``attention_mask`` (+ ``token_type_ids``) tensors.

        ``max_length`` counts the special tokens (HF truncation, as the reference's 30/200).
        """
        if self.tokenizer is None:
            raise IrflowError("colbert: this model has no tokenizer")
        return self.tokenizer(list(texts), truncation=True, max_length=int(max_length), padding=True,
                              return_tensors="pt")

    def encode(self, input_ids: Tensor, attention_mask: Tensor,
               token_type_ids: Tensor | None = None) -> Tensor:
        """Token vectors ``[N, L, dim]``: ``linear(last_hidden_state)``, not normalised (reference).

        Padding positions keep whatever the encoder gives them; the scoring functions mask them.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**kwargs).last_hidden_state
        return self.linear(hidden.to(self.linear.weight.dtype))

    def encode_tokens(self, enc: dict) -> tuple[Tensor, Tensor]:
        """``(vectors, mask)`` of a :meth:`tokenize` result (tensors on the model's device)."""
        device = self.linear.weight.device
        ids = enc["input_ids"].to(device)
        mask = enc["attention_mask"].to(device)
        tt = enc.get("token_type_ids")
        return self.encode(ids, mask, None if tt is None else tt.to(device)), mask

    def forward(self, query: dict, document: dict) -> Tensor:
        """Scores ``[N]`` of aligned (query, document) pairs given as :meth:`tokenize` results."""
        q, qm = self.encode_tokens(query)
        d, dm = self.encode_tokens(document)
        return score_pairs(q, qm, d, dm)

    def head_parameters(self) -> list[nn.Parameter]:
        """The projection: fresh when the teacher starts from a plain encoder (the loop's head group)."""
        return list(self.linear.parameters())

    score_pairs = staticmethod(score_pairs)
    inbatch_scores = staticmethod(inbatch_scores)
