"""GPU readiness: the same numbers on CUDA as on the CPU (up to the precision), fp16 training that scales.

Marked ``gpu``: they run where torch sees a CUDA device (bench/gpu_check.sh runs them) and are
skipped and counted elsewhere (tests/conftest.py). The faiss tests need the ``gpu`` extra
(faiss-gpu-cu12) as well. Beside them, two tests that run everywhere: faiss's GPU path falls back to
the CPU with the same results, and a missing faiss names both extras.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from irflow.errors import IrflowError


def _texts(n=64):
    from irflow.data.synthetic import generate

    return [t for _, t in generate("tiny").docs[:n]]


@pytest.mark.gpu
def test_encode_on_cuda_agrees_with_cpu_within_bf16(tiny_bert):
    """bf16 autocast on CUDA vs exact fp32 on the CPU: cosine of each vector pair close to 1."""
    import torch

    from irflow.models.biencoder import Encoder, EncoderSpec
    from irflow.models.resolve import load_tokenizer

    tok = load_tokenizer(str(tiny_bert))
    spec = EncoderSpec(str(tiny_bert), "mean", True)
    texts = _texts()
    cpu = Encoder(spec, device="cpu").encode_texts(texts, tok, 64).astype(np.float32)
    gpu = Encoder(spec, device="cuda:0", autocast_dtype=torch.bfloat16).encode_texts(texts, tok, 64)
    gpu = np.asarray(gpu, dtype=np.float32)
    assert gpu.shape == cpu.shape
    cos = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    assert cos.min() > 0.99, cos.min()
    # the ranking of passages for a query vector is the same up to near ties
    order_cpu, order_gpu = np.argsort(-(cpu @ cpu[0])), np.argsort(-(gpu @ gpu[0]))
    assert order_cpu[0] == order_gpu[0] == 0


class _Task:
    """A minimal training task: a tiny BERT whose mean-pooled states are pulled towards a target."""

    def __init__(self, model_dir, device):
        import torch
        from transformers import AutoModel

        from irflow.models.resolve import load_tokenizer

        self.model = AutoModel.from_pretrained(str(model_dir)).to(device)
        tok = load_tokenizer(str(model_dir))
        batch = tok(_texts(16), padding=True, truncation=True, max_length=32, return_tensors="pt")
        self.batch = {k: v.to(device) for k, v in batch.items()}
        self.target = torch.ones(self.model.config.hidden_size, device=device)

    def micro_batches(self, step, rng, accum):
        return [self.batch] * accum

    def loss(self, batch):
        out = self.model(**batch).last_hidden_state.mean(1)
        return ((out - self.target) ** 2).mean(), len(out)

    def validate(self):
        return 0.0

    def head_parameters(self):
        return []


@pytest.mark.gpu
def test_fp16_training_step_on_cuda_uses_the_grad_scaler(tiny_bert, tmp_path, monkeypatch):
    import torch

    from irflow.train import loop

    made = []
    real = torch.amp.GradScaler

    class Recording(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(self)

    monkeypatch.setattr(torch.amp, "GradScaler", Recording)
    task = _Task(tiny_bert, "cuda:0")
    before = {k: v.detach().clone() for k, v in task.model.state_dict().items()}
    stats = loop.train(task, loop.OptimConfig(lr=1e-3, max_steps=8, precision="fp16", checkpoint_every=1),
                       ckpt=tmp_path / "ckpt", log_path=tmp_path / "log.jsonl", device="cuda:0",
                       autocast_dtype=torch.float16, progress=False)
    assert stats["steps"] == 8  # 8: the first steps may overflow at the scaler's initial scale and be skipped
    assert len(made) == 1 and made[0].is_enabled()
    assert made[0].get_scale() > 0
    losses = [__import__("json").loads(line)["loss"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(losses))
    changed = any(not torch.equal(before[k], v) for k, v in task.model.state_dict().items())
    assert changed, "no optimizer step was taken (every step skipped by the scaler)"
    ck = loop._read_checkpoint(loop._step_dirs(tmp_path / "ckpt")[-1][1])
    assert ck["optim"]["scaler"] is not None  # the scaler's state is checkpointed, so a resume keeps it


@pytest.mark.gpu
def test_faiss_on_gpu_gives_the_cpu_results():
    from irflow.index import faisslib

    faiss = faisslib.load()
    if faisslib.num_gpus(faiss) == 0:
        pytest.fail("faiss sees no GPU: install the `gpu` extra (faiss-gpu-cu12) instead of faiss-cpu")
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((20_000, 64)).astype(np.float32)
    queries = rng.standard_normal((100, 64)).astype(np.float32)
    index = faiss.IndexFlatIP(64)
    index.add(docs)
    cpu_scores, cpu_rows = index.search(queries, 100)
    gpu_scores, gpu_rows = faisslib.search(index, queries, 100, device="cuda:0")
    assert faisslib.to_gpu(index, "cuda:0") is not None
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=1e-4, atol=1e-4)
    assert (gpu_rows[:, :10] == cpu_rows[:, :10]).mean() > 0.99
    ivf = faiss.index_factory(64, "IVF16,Flat", faiss.METRIC_INNER_PRODUCT)
    trained = faisslib.train(ivf, docs)
    assert trained.is_trained and trained.ntotal == 0


def test_faiss_search_falls_back_to_the_cpu_with_the_same_results(monkeypatch):
    """A cuda device with no GPU faiss (or IRFLOW_FAISS_GPU=0): the CPU search, same rows and scores."""
    from irflow.index import faisslib

    faiss = faisslib.load()
    rng = np.random.default_rng(1)
    index = faiss.IndexFlatIP(16)
    index.add(rng.standard_normal((500, 16)).astype(np.float32))
    q = rng.standard_normal((7, 16)).astype(np.float32)
    want = index.search(q, 10)
    monkeypatch.setenv("IRFLOW_FAISS_GPU", "0")
    assert faisslib.num_gpus() == 0 and faisslib.to_gpu(index, "cuda:0") is None
    got = faisslib.search(index, q, 10, device="cuda:0")
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    assert faisslib.train(faiss.IndexFlatIP(16), q).is_trained


def test_missing_faiss_names_both_extras(monkeypatch):
    from irflow.index import faisslib

    monkeypatch.setitem(sys.modules, "faiss", None)  # what an environment without faiss looks like
    with pytest.raises(IrflowError) as e:
        faisslib.load()
    assert "irflow[cpu]" in str(e.value) and "irflow[gpu]" in str(e.value)


def test_packaging_installs_one_faiss():
    """faiss-cpu and faiss-gpu-cu12 install the same module: never both, and not in the core."""
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert not [d for d in meta["dependencies"] if d.startswith("faiss")]
    extras = meta["optional-dependencies"]
    assert [d.split(">")[0] for d in extras["cpu"]] == ["faiss-cpu"]
    assert [d.split(">")[0] for d in extras["gpu"]] == ["faiss-gpu-cu12"]
    for name, deps in extras.items():
        if name not in ("cpu", "gpu"):
            assert not [d for d in deps if d.startswith("faiss")], name
