"""Dense indexes: encoded shards merged into a faiss index built from an ``index_factory`` string.

Vectors are stored as float16 and converted to float32 chunk by chunk on the way into faiss (queries
are float32 too, so both sides meet at the same precision). Indexes that need training (IVF, PQ)
train on a seeded random sample of the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from ..errors import IrflowError
from ..params import Input, StepParams, KeyContext
from . import faisslib, read_info, write_info


class FaissParams(StepParams):
    """``irflow index faiss``: encoded shards merged into one faiss index (inner product)."""

    step: ClassVar[str] = "index"
    inputs: ClassVar[tuple[Input, ...]] = (
        Input("shard", "--shard", "encode", "Encode artifacts to merge (repeat, in shard order).", multiple=True),
    )

    factory: str = Field("Flat", description="faiss index_factory string (inner product).")
    train_size: int = Field(100_000, ge=1, description="Vectors sampled to train IVF/PQ indexes.")
    seed: int = Field(0, description="Seed of the training sample.")

    def key_params(self, ctx: KeyContext | None = None) -> dict:
        return {"type": "faiss", **super().key_params(ctx)}


def _shards(shard_dirs: list[Path]):
    for d in shard_dirs:
        emb = np.load(d / "emb.npy", mmap_mode="r")
        yield d, emb


def build(p: FaissParams, shard_dirs: list[Path], out: Path, chunk: int = 65536) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not shard_dirs:
        raise IrflowError("no encoded shards given")
    encoders = {(d / "encoder.json").read_text() for d in shard_dirs}
    if len(encoders) != 1:
        raise IrflowError("shards were encoded with different models or pooling; cannot merge them")
    dims = {np.load(d / "emb.npy", mmap_mode="r").shape[1] for d in shard_dirs}
    if len(dims) != 1:
        raise IrflowError(f"shards have different dimensions {sorted(dims)}")
    dim = dims.pop()
    faiss = faisslib.load()
    try:
        index = faiss.index_factory(dim, p.factory, faiss.METRIC_INNER_PRODUCT)
    except Exception as e:
        raise IrflowError(f"faiss cannot build index_factory string {p.factory!r}: {e}") from e
    total = sum(np.load(d / "emb.npy", mmap_mode="r").shape[0] for d in shard_dirs)
    if not index.is_trained:
        rng = np.random.default_rng(p.seed)
        take = np.sort(rng.choice(total, size=min(p.train_size, total), replace=False))
        sample, base = [], 0
        for _, emb in _shards(shard_dirs):
            sel = take[(take >= base) & (take < base + len(emb))] - base
            sample.append(np.asarray(emb[sel], dtype=np.float32))
            base += len(emb)
        try:
            index = faisslib.train(index, np.ascontiguousarray(np.concatenate(sample)), faiss)
        except Exception as e:
            raise IrflowError(f"training the faiss index {p.factory!r} on {len(take)} vectors failed: {e}") from e
    ids = []
    for d, emb in _shards(shard_dirs):
        for s in range(0, len(emb), chunk):
            index.add(np.ascontiguousarray(emb[s : s + chunk], dtype=np.float32))
        ids.append(pq.read_table(d / "ids.parquet").column("id"))
    faiss.write_index(index, str(out / "index.faiss"))
    pq.write_table(pa.table({"id": pa.chunked_array([c for col in ids for c in col.chunks])}), out / "ids.parquet")
    (out / "encoder.json").write_text(encoders.pop())
    write_info(out, {"type": "faiss", "factory": p.factory, "dim": int(dim), "size": int(index.ntotal)})
    return {"vectors": int(index.ntotal), "dim": int(dim)}


def search(index_dir: Path, queries: np.ndarray, k: int, nprobe: int | None = None, device: str | None = None):
    """Top ``k`` (scores, row indices) per query; -1 marks an empty slot.

    On the GPU when ``device`` is a cuda device and faiss has GPUs (:mod:`.faisslib`), else the CPU.
    """
    faiss = faisslib.load()

    info = read_info(index_dir)
    if info["type"] != "faiss":
        raise IrflowError(f"expected a faiss index, found {info['type']!r}", where=index_dir)
    index = faiss.read_index(str(Path(index_dir) / "index.faiss"))
    if nprobe is not None:
        try:
            faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        except Exception:
            pass  # not an IVF index: nprobe has no meaning
    return faisslib.search(index, np.ascontiguousarray(queries, dtype=np.float32), min(k, index.ntotal), device)


def encoder_of(index_dir: Path) -> dict:
    return json.loads((Path(index_dir) / "encoder.json").read_text())
