"""Single-vector bi-encoder inference: pooling, normalisation, and the fast batched forward pass.

Speed comes from four things sentence-transformers' default ``encode`` does not combine: batches
are formed by a token budget over length-sorted inputs (little padding, large batches of short
texts), inputs are pre-tokenised (memory-mapped Arrow), the forward pass runs under
``torch.inference_mode`` with bf16 autocast where the hardware has fast bf16, and results stream
into a preallocated float16 array.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import IrflowError
from .resolve import load_error, resolve


@dataclass(frozen=True)
class EncoderSpec:
    model: str
    pooling: str = "mean"  # "mean" | "cls"
    normalize: bool = True  # cosine similarity == inner product of unit vectors

    def __post_init__(self):
        if self.pooling not in ("mean", "cls"):
            raise IrflowError(f"pooling must be 'mean' or 'cls', not {self.pooling!r}")


def load_model(model: str, device: str):
    import torch
    from transformers import AutoModel

    try:
        m = AutoModel.from_pretrained(resolve(model), trust_remote_code=False, attn_implementation="sdpa")
    except IrflowError:
        raise
    except Exception as e:
        raise load_error(model, e) from e
    m.eval().to(torch.device(device))
    return m


def length_batches(lengths: np.ndarray, max_tokens: int, max_batch: int) -> Iterator[np.ndarray]:
    """Row indices grouped into batches of similar length whose padded size fits ``max_tokens``.

    Longest first, so an out-of-memory error shows up in the first batch, not after an hour.
    """
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        size = max(1, min(max_batch, max_tokens // max(longest, 1)))
        yield order[start : start + size]
        start += size


def pool(hidden, mask, pooling: str, normalize: bool):
    import torch

    if pooling == "cls":
        out = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    out = out.float()
    if normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=-1)
    return out


class Encoder:
    """Encodes pre-tokenised sequences into float32 vectors, batch by batch."""

    def __init__(self, spec: EncoderSpec, device: str = "cpu", autocast_dtype=None, pad_id: int = 0):
        self.spec = spec
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.pad_id = pad_id
        self.model = load_model(spec.model, device)

    def forward(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        import torch

        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        ids_t = torch.from_numpy(ids).to(self.device)
        mask_t = torch.from_numpy(mask).to(self.device)
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(
            dev_type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            hidden = self.model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            return pool(hidden, mask_t, self.spec.pooling, self.spec.normalize).cpu().numpy()

    def encode_texts(self, texts: Sequence[str], tokenizer, max_length: int, max_tokens: int = 8192) -> np.ndarray:
        """Convenience path for small inputs (queries): tokenise, bucket, encode, in input order."""
        enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        return self.encode_ids(enc, max_tokens=max_tokens)

    def encode_ids(self, seqs: Sequence[Sequence[int]], max_tokens: int = 8192, max_batch: int = 512, out=None):
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        dim = self.model.config.hidden_size
        result = out if out is not None else np.zeros((len(seqs), dim), dtype=np.float32)
        for idx in length_batches(lengths, max_tokens, max_batch):
            result[idx] = self.forward([seqs[i] for i in idx])
        return result
