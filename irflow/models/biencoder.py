"""Single-vector bi-encoder inference: pooling, normalisation, and the fast batched forward pass.

Speed comes from four things sentence-transformers' default ``encode`` does not combine: batches
are formed by a token budget over length-sorted inputs (little padding, large batches of short
texts, small enough to stay in cache on a CPU), inputs are pre-tokenised (memory-mapped Arrow), the
forward pass runs under ``torch.inference_mode`` in bf16 where the hardware has fast bf16 (bf16
weights on the CPU, autocast on a GPU; see :class:`Encoder`), and results stream into a
preallocated float16 array. ``bench/bench_encode.py`` measures it against sentence-transformers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..devices import at_least_fp32
from ..errors import IrflowError
from .resolve import load_error, pretrained


@dataclass(frozen=True)
class EncoderSpec:
    model: str
    pooling: str = "mean"  # "mean" | "cls"
    normalize: bool = True  # cosine similarity == inner product of unit vectors

    def __post_init__(self):
        if self.pooling not in ("mean", "cls"):
            raise IrflowError(f"pooling must be 'mean' or 'cls', not {self.pooling!r}")


def load_model(model: str, device: str, dtype=None):
    """The HF encoder in eval mode on ``device``; ``dtype`` (e.g. ``torch.bfloat16``) casts its weights."""
    import torch
    from transformers import AutoModel

    try:
        path, kw = pretrained(model)
        m = AutoModel.from_pretrained(path, trust_remote_code=False, attn_implementation="sdpa", **kw)
    except IrflowError:
        raise
    except Exception as e:
        raise load_error(model, e) from e
    m.eval().to(torch.device(device))
    if dtype is not None:
        m.to(dtype)
    return m


#: Default token budget of one padded batch on the CPU, and cap on a batch's rows. On the CPU a few
#: thousand tokens per batch keep a small model's activations in cache: all-MiniLM-L6-v2 in bf16 on
#: 2 idle cores encodes vaswani ~1.3x faster with 4096 than with 16384 (1.7x on one core); 2048 and
#: 8192 are within a few percent of 4096 when the cores are idle, 4096 holds up best when they are not.
DEFAULT_MAX_TOKENS = 4096
#: On a GPU larger batches keep the device busy.
DEFAULT_MAX_TOKENS_CUDA = 16384
DEFAULT_MAX_BATCH = 512


def default_max_tokens(device: str) -> int:
    return DEFAULT_MAX_TOKENS_CUDA if str(device).startswith("cuda") else DEFAULT_MAX_TOKENS


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

    hidden = at_least_fp32(hidden)  # pool in fp32 whatever the model computed in (a bf16 sum of 256 rows loses digits)
    if pooling == "cls":
        out = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        out = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=-1)
    return out


def _cast_weights_by_default(device: str, autocast_dtype) -> bool:
    """Whether bf16 inference should also hold the weights in bf16 (see :class:`Encoder`)."""
    import torch

    return (autocast_dtype == torch.bfloat16 and not str(device).startswith("cuda")) or autocast_dtype == torch.float64


class Encoder:
    """Encodes pre-tokenised sequences into float32 vectors, batch by batch.

    ``autocast_dtype`` None is exact fp32 (the weights stay fp32, no autocast). With bf16 on the
    CPU the weights are cast to bf16 as well (``cast_weights=None`` decides so; True/False force
    it): under autocast alone the residual stream and the layer norms stay fp32 and every linear
    layer casts its input and its weights to bf16 again on every batch, while with bf16 weights the
    whole forward pass runs in bf16 (half the memory traffic, no casts) and only pooling and
    normalisation run in fp32. On the CPU that is ~5% faster than autocast, and vaswani nDCG@10
    stays within 0.002 of fp32 (``bench/bench_encode.py``). On CUDA plain autocast is kept.
    """

    def __init__(self, spec: EncoderSpec, device: str = "cpu", autocast_dtype=None, pad_id: int = 0,
                 *, cast_weights: bool | None = None):
        self.spec = spec
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.pad_id = pad_id
        if cast_weights is None:
            cast_weights = _cast_weights_by_default(device, autocast_dtype)
        self.weight_dtype = autocast_dtype if (cast_weights and autocast_dtype is not None) else None
        self.model = load_model(spec.model, device, self.weight_dtype)
        self._dev_type = "cuda" if str(device).startswith("cuda") else "cpu"

    def forward(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Float32 vectors of one batch, in the order of ``seqs``."""
        import torch

        n = len(seqs)
        width = max(len(s) for s in seqs)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        ids_np, mask_np = ids.numpy(), mask.numpy()
        for i, s in enumerate(seqs):
            ids_np[i, : len(s)] = s
            mask_np[i, : len(s)] = 1
        if self._dev_type == "cuda":
            ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        use_autocast = self.autocast_dtype is not None and self.weight_dtype is None
        with torch.inference_mode(), torch.autocast(
            self._dev_type, dtype=self.autocast_dtype or torch.float32, enabled=use_autocast
        ):
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            return pool(hidden, mask, self.spec.pooling, self.spec.normalize).cpu().numpy()

    def encode_texts(self, texts: Sequence[str], tokenizer, max_length: int, max_tokens: int | None = None) -> np.ndarray:
        """Convenience path for small inputs (queries): tokenise, bucket, encode, in input order."""
        enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        return self.encode_ids(enc, max_tokens=max_tokens)

    def encode_ids(self, seqs: Sequence[Sequence[int]], max_tokens: int | None = None, max_batch: int | None = None,
                   out=None, progress=None, lengths: np.ndarray | None = None):
        """Vectors of ``seqs`` in input order, into ``out`` (any float array of shape (n, dim)) if given.

        ``progress``, if given, is called with the number of rows after each batch; ``lengths``
        (the sequence lengths) saves a pass over ``seqs`` when the caller has them.
        """
        if lengths is None:
            lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        dim = self.model.config.hidden_size
        result = out if out is not None else np.zeros((len(seqs), dim), dtype=np.float32)
        max_tokens = max_tokens or default_max_tokens(self.device)
        for idx in length_batches(lengths, max_tokens, max_batch or DEFAULT_MAX_BATCH):
            result[idx] = self.forward([seqs[i] for i in idx])
            if progress is not None:
                progress(len(idx))
        return result
