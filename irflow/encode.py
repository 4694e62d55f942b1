"""``irflow encode``: one contiguous shard of a prepared corpus into float16 vectors.

A corpus is encoded as N independent shard jobs (one device each, restartable one by one) that
``irflow index`` merges. Token ids are read straight from the memory-mapped Arrow offsets and
vectors are written to ``emb.npy`` chunk by chunk, so memory does not grow with the corpus. The
tokens must come from the model's own tokenizer (checked against ``tokens.json``), and
``encoder.json`` records the model at its commit with its identity and tokenizer digest, which
``irflow search`` checks before it encodes queries.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .data import arrow
from .errors import IrflowError
from .progress import progress as progress_bar
from .params import Input, WithPrecision

log = logging.getLogger("irflow")


Pooling = Literal["mean", "cls"]


class EncodeParams(WithPrecision):
    """``irflow encode``: one contiguous shard of a prepared corpus with a bi-encoder."""

    step: ClassVar[str] = "encode"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("prepared", "--prepared", "prepare", "A prepare artifact with token ids (made with the model's "
              "tokenizer)."),
    )

    model: str = Field(description="Bi-encoder: HF id (org/name[@revision]), local directory, train artifact, "
                       "or all-MiniLM-L6-v2 (packaged).", json_schema_extra={"ref": True})
    pooling: Pooling = Field("mean", description="Mean of the token states or the CLS state.")
    normalize: bool = Field(True, description="L2-normalise vectors (cosine similarity); --no-normalize gives "
                            "raw dot product.")
    shard: int = Field(0, ge=0, description="Which shard, 0-based.")
    num_shards: int = Field(1, ge=1, description="Contiguous shards of the corpus.")
    max_tokens: int | None = Field(None, ge=1, json_schema_extra={"key": False},
                                   description="Token budget of one padded batch (speed/memory only; not part of "
                                   "the key). Default: 4096 on CPU, 16384 on GPU.")

    @model_validator(mode="after")
    def _shard(self):
        if self.shard >= self.num_shards:
            raise ValueError(f"--shard must be in [0, {self.num_shards}) (--num-shards {self.num_shards}), "
                             f"got {self.shard}")
        return self


def shard_range(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise IrflowError(f"--shard must be in [0, {num_shards}), got {shard}")
    return n * shard // num_shards, n * (shard + 1) // num_shards


def encode_shard(p: EncodeParams, prepared: Path, out: Path, *, device: str, autocast_dtype,
                 max_tokens: int | None = None, max_batch: int | None = None, progress: bool = True) -> dict:
    """Encode rows ``shard_range(...)`` of ``prepared`` into ``out/emb.npy`` (float16) and ``out/ids.parquet``.

    ``max_tokens``/``max_batch`` bound one padded batch (None: the Encoder's defaults for ``device``); they change
    speed and memory, never the vectors beyond float rounding.
    """
    import pyarrow.parquet as pq
    import pyarrow as pa

    from .models.biencoder import DEFAULT_MAX_BATCH, Encoder, EncoderSpec, default_max_tokens, length_batches

    tokens_path = prepared / arrow.TOKENS
    if not tokens_path.is_file():
        raise IrflowError("prepared input has no tokens.arrow (prepare it with --tokenizer)", where=prepared)
    ids_col = arrow.open_table(prepared / arrow.TEXTS).column("id")
    tok_map = arrow.MappedTable(tokens_path)  # memory-mapped, chunked: nothing copied yet
    tok = tok_map.table.column("input_ids")
    start, stop = shard_range(len(tok), p.shard, p.num_shards)
    n = stop - start
    max_tokens = max_tokens or default_max_tokens(device)
    max_batch = max_batch or DEFAULT_MAX_BATCH

    from .models.resolve import check_tokenizer, identity, load_tokenizer, pretrained, tokenizer_digest
    from .rerank import model_path

    model = model_path(p.model)  # a train artifact stands for the model it holds
    tokenizer = load_tokenizer(model)
    check_tokenizer(prepared, model, tokenizer)  # before any work: ids from another vocabulary mean nothing
    path, kw = pretrained(model)
    pinned = f"{path}@{kw['revision']}" if kw else path  # search loads exactly what was encoded with
    enc = Encoder(EncoderSpec(pinned, p.pooling, p.normalize), device=device, autocast_dtype=autocast_dtype)
    dim = enc.model.config.hidden_size
    bar = progress_bar(n, f"encode shard {p.shard}/{p.num_shards}", "psg", disable=not progress)
    n_batches = n_tokens = 0
    # Ordinary buffered writes, chunk by chunk in row order: a full disk is an OSError (ENOSPC) that the
    # store reports, where a write through a memory map would kill the process with SIGBUS. Only one
    # chunk's token rows are materialised, and the mapped pages are released after each, so memory is
    # a chunk's, whatever the shard's or the corpus's size.
    chunk = max(CHUNK_ROWS, max_batch)
    buf = np.empty((min(chunk, n), dim), dtype=np.float16)
    with open(out / "emb.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)),
                                                 "fortran_order": False, "shape": (n, dim)})
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            part = tok.slice(start + s, e - s).combine_chunks()
            offsets = part.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
            lengths = np.diff(offsets)
            view = buf[: e - s]
            # zero-copy views into the token values, one per row
            seqs = _RowViews(part.values.to_numpy(zero_copy_only=False), offsets)
            n_batches += sum(1 for _ in length_batches(lengths, max_tokens, max_batch))
            n_tokens += int(lengths.sum())
            enc.encode_ids(seqs, max_tokens=max_tokens, max_batch=max_batch, out=view, progress=bar.update,
                           lengths=lengths)
            f.write(memoryview(view).cast("B"))
            del part, seqs
            tok_map.release()
        f.flush()
        _fsync(f)
    bar.close()
    pq.write_table(pa.table({"id": ids_col.slice(start, stop - start)}), out / "ids.parquet")
    encoder = {"model": pinned, "pooling": p.pooling, "normalize": p.normalize,
               "model_identity": identity(pinned), "tokenizer_sha256": tokenizer_digest(tokenizer)}
    (out / "encoder.json").write_text(json.dumps(encoder, sort_keys=True) + "\n")
    return {"rows": int(n), "dim": int(dim), "range": [int(start), int(stop)], "tokens": n_tokens,
            "batches": n_batches, "weights": str(enc.weight_dtype or "torch.float32").removeprefix("torch."),
            "mean_length": n_tokens / n if n else 0.0}


#: Rows encoded (length-sorted within) and written per chunk: bounds memory whatever the corpus size
#: (65536 x 768 float16 is 96 MiB) while sorting enough rows that batches carry little padding.
CHUNK_ROWS = 1 << 16


def _fsync(f) -> None:
    """Make a delayed-allocation ENOSPC surface here (an OSError), not after publishing."""
    try:
        os.fsync(f.fileno())
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EROFS):  # devices and pipes cannot sync: nothing to report
            raise


class _RowViews:
    """Row ``i`` of a ragged (values, offsets) column as a numpy view, without building a list."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))
