"""``irflow encode``: one contiguous shard of a prepared corpus into float16 vectors.

A corpus is encoded as N independent shard jobs (one device each, restartable one by one) that
``irflow index`` merges. Token ids are read straight from the memory-mapped Arrow offsets and
vectors are written into a memory-mapped ``emb.npy``, so memory does not grow with the corpus.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import arrow
from .errors import IrflowError

log = logging.getLogger("irflow")


@dataclass(frozen=True)
class EncodeParams:
    model: str
    pooling: str = "mean"
    normalize: bool = True
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto
    shard: int = 0
    num_shards: int = 1

    def key_params(self) -> dict:
        from .models.resolve import identity

        return {
            "model": identity(self.model),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "precision": self.precision,
            "shard": self.shard,
            "num_shards": self.num_shards,
        }


def shard_range(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise IrflowError(f"--shard must be in [0, {num_shards}), got {shard}")
    return n * shard // num_shards, n * (shard + 1) // num_shards


def encode_shard(p: EncodeParams, prepared: Path, out: Path, *, device: str, autocast_dtype, max_tokens: int,
                 progress: bool = True) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import pyarrow as pa
    from tqdm import tqdm

    from .models.biencoder import Encoder, EncoderSpec, length_batches

    tokens_path = prepared / arrow.TOKENS
    if not tokens_path.is_file():
        raise IrflowError("prepared input has no tokens.arrow (prepare it with --tokenizer)", where=prepared)
    ids_col = arrow.open_table(prepared / arrow.TEXTS).column("id")
    tok = arrow.open_table(tokens_path).column("input_ids").combine_chunks()
    start, stop = shard_range(len(tok), p.shard, p.num_shards)
    part = tok.slice(start, stop - start)
    offsets = part.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    values = part.values.to_numpy(zero_copy_only=False)
    lengths = np.diff(offsets)

    enc = Encoder(EncoderSpec(p.model, p.pooling, p.normalize), device=device, autocast_dtype=autocast_dtype)
    dim = enc.model.config.hidden_size
    emb = np.lib.format.open_memmap(out / "emb.npy", mode="w+", dtype=np.float16, shape=(len(lengths), dim))
    batches = list(length_batches(lengths, max_tokens, 512))
    bar = tqdm(total=len(lengths), unit="psg", file=sys.stderr, disable=not progress, mininterval=2.0)
    for idx in batches:
        seqs = [values[offsets[i] : offsets[i + 1]] for i in idx]
        emb[idx] = enc.forward(seqs).astype(np.float16)
        bar.update(len(idx))
    bar.close()
    emb.flush()
    del emb
    pq.write_table(pa.table({"id": ids_col.slice(start, stop - start)}), out / "ids.parquet")
    (out / "encoder.json").write_text(
        __import__("json").dumps({"model": p.model, "pooling": p.pooling, "normalize": p.normalize}) + "\n"
    )
    return {"rows": int(len(lengths)), "dim": int(dim), "range": [int(start), int(stop)],
            "tokens": int(lengths.sum()), "batches": len(batches), "mean_length": float(pc.mean(pa.array(lengths)).as_py() or 0)}
