"""Checkpoints of the training loop: exact resume, corrupt checkpoints, kills mid-write, two processes.

A tiny in-process task (an MLP with dropout whose loss also draws from Python's and numpy's global
generators) runs through the real :func:`irflow.train.loop.train`, so every piece of state the
checkpoint must carry — weights, AdamW moments, scheduler, all RNGs, best weights, patience, the
log — shows up in the final weights or the log if it is lost.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from irflow.train import loop
from irflow.train.loop import OptimConfig, train

CFG = dict(lr=1e-2, warmup_steps=3, max_steps=10, grad_accum=2, checkpoint_every=3, validate_every=4,
           patience=5, log_every=1, seed=7)


class TinyTask:
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        vg = np.random.default_rng(99)
        self.vx = torch.tensor(vg.standard_normal((16, 8)), dtype=torch.float32)
        self.vy = self.vx.sum(1)

    def micro_batches(self, step, rng, accum):
        out = []
        for _ in range(accum):
            x = torch.tensor(rng.standard_normal((4, 8)), dtype=torch.float32)
            out.append((x, x.sum(1)))
        return out

    def loss(self, batch):
        x, y = batch
        # noise from the global generators: lost Python/numpy RNG state would change the result
        noise = 0.01 * (random.random() + float(np.random.rand()))
        return ((self.model(x).squeeze(-1) - y - noise) ** 2).mean(), len(x)

    def validate(self):
        self.model.eval()
        with torch.no_grad():
            return -float(((self.model(self.vx).squeeze(-1) - self.vy) ** 2).mean())

    def head_parameters(self):
        return list(self.model[3].parameters())


def _run(root: Path, stop_after=None, **over) -> tuple[dict, list[dict]]:
    task = TinyTask()
    ckpt, log_path = root / "ckpt", root / "train_log.jsonl"
    if stop_after is not None:
        with pytest.raises(SystemExit):
            train(task, OptimConfig(**{**CFG, **over}), ckpt=ckpt, log_path=log_path, device="cpu",
                  stop_after=stop_after, progress=False)
        return {}, []
    train(task, OptimConfig(**{**CFG, **over}), ckpt=ckpt, log_path=log_path, device="cpu", progress=False)
    rows = [json.loads(ln) for ln in log_path.read_text().splitlines()]
    return ({k: v.clone() for k, v in task.model.state_dict().items()},
            [{k: v for k, v in r.items() if k != "pairs_per_s"} for r in rows])


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    return _run(tmp_path_factory.mktemp("whole"))


def _steps(ckpt: Path) -> list[int]:
    return sorted(int(d.name.split("-")[1]) for d in ckpt.glob("step-*"))


def test_killed_and_resumed_equals_uninterrupted(tmp_path, reference, caplog):
    _run(tmp_path, stop_after=6)
    ckpt = tmp_path / "ckpt"
    assert _steps(ckpt) == [4, 6]  # the last two: 4 (a new best) and 6
    files = {f.name for f in (ckpt / "step-000000006").iterdir()}
    assert files == {"model.safetensors", "optim.safetensors", "optim.json", "rng.safetensors", "rng.json",
                     "train_log.jsonl", "state.json", "best.safetensors"}  # tensors and JSON only
    assert not (tmp_path / "train_log.jsonl").exists()  # published only by a finished run
    with caplog.at_level(logging.INFO, logger="irflow"):
        w, rows = _run(tmp_path)
    assert "resuming from step 6" in caplog.text
    assert _max_diff(w, reference[0]) <= 1e-6
    assert rows == reference[1]  # the resumed log continues the checkpoint's log
    assert [r["step"] for r in rows] == list(range(0, 11))  # step 0: the starting model's validation
    assert not list(ckpt.glob(".tmp-*"))


def test_min_delta_keeps_the_start_unless_a_validation_beats_the_best_by_more(tmp_path, reference):
    """min_delta: an improvement must beat the best by more than it. Validation rises at every check
    of the reference run; a margin above the whole rise keeps the start's weights exactly (and
    patience counts every later validation as bad), a margin below the smallest rise changes nothing."""
    val = [r["validation"] for r in reference[1] if "validation" in r]
    rises = np.diff(val)
    assert (rises > 0).all()
    start = {k: v.clone() for k, v in TinyTask().model.state_dict().items()}
    w, rows = _run(tmp_path / "above", min_delta=float(val[-1] - val[0]) * 1.01, patience=2)
    assert _max_diff(w, start) == 0.0
    assert [r["step"] for r in rows if "validation" in r] == [0, 4, 8]  # two bad validations: stopped
    w, rows = _run(tmp_path / "below", min_delta=float(rises.min()) * 0.99)
    assert _max_diff(w, reference[0]) <= 1e-6 and rows == reference[1]


def test_lines_of_a_dead_run_after_its_checkpoint_are_dropped(tmp_path):
    """Killed after step 8, last checkpoint at 6: the resumed log has steps 7 and 8 once, from the new run."""
    ref = _run(tmp_path / "whole", validate_every=0)
    _run(tmp_path, stop_after=8, validate_every=0)
    assert _steps(tmp_path / "ckpt") == [3, 6]
    live = list((tmp_path / "ckpt").glob(".tmp-*-log.jsonl"))
    assert [json.loads(ln)["step"] for ln in live[0].read_text().splitlines()] == list(range(1, 9))
    w, rows = _run(tmp_path, validate_every=0)
    assert rows == ref[1]
    assert [r["step"] for r in rows] == list(range(1, 11))  # no validation: no step-0 line
    assert _max_diff(w, ref[0]) <= 1e-6


CORRUPTIONS = {
    "truncated-model": lambda d: _truncate(d / "model.safetensors"),
    "truncated-optim": lambda d: _truncate(d / "optim.safetensors"),
    "bad-json-state": lambda d: (d / "state.json").write_text('{"step": 6, '),
    "bad-json-optim": lambda d: (d / "optim.json").write_text("{]"),
    "missing-rng": lambda d: (d / "rng.safetensors").unlink(),
    "missing-state": lambda d: (d / "state.json").unlink(),
    "flipped-byte": lambda d: _flip(d / "optim.safetensors"),
    "altered-log": lambda d: (d / "train_log.jsonl").write_text('{"step": 1, "loss": 0}\n'),
}


def _truncate(f: Path) -> None:
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])


def _flip(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[-3] ^= 0xFF
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path, reference, caplog, corruption):
    _run(tmp_path, stop_after=6)
    ckpt = tmp_path / "ckpt"
    CORRUPTIONS[corruption](ckpt / "step-000000006")
    with caplog.at_level(logging.INFO, logger="irflow"):
        w, rows = _run(tmp_path)
    assert "discarding corrupt checkpoint" in caplog.text and "step-000000006" in caplog.text
    assert "resuming from step 4" in caplog.text
    assert _max_diff(w, reference[0]) <= 1e-6
    assert rows == reference[1]


def test_all_checkpoints_corrupt_restarts_from_scratch(tmp_path, reference, caplog):
    _run(tmp_path, stop_after=6)
    ckpt = tmp_path / "ckpt"
    _truncate(ckpt / "step-000000006" / "model.safetensors")
    (ckpt / "step-000000004" / "state.json").write_text("not json")
    with caplog.at_level(logging.INFO, logger="irflow"):
        w, rows = _run(tmp_path)
    assert caplog.text.count("discarding corrupt checkpoint") == 2
    assert "resuming" not in caplog.text
    assert _max_diff(w, reference[0]) <= 1e-6
    assert rows == reference[1]


def test_kill_mid_write_keeps_the_previous_checkpoint(tmp_path, reference, monkeypatch, caplog):
    """A kill while step 6 is being written (after its weights, before its state) leaves step 4 intact."""
    real_save = loop._save_checkpoint

    def dying_save(root, task, opt, sched, scaler, state, *a):
        if state["step"] == 6:
            real_fsync = loop._fsync

            def fsync(path):
                if Path(path).name == "state.json":
                    raise KeyboardInterrupt  # as a SIGINT/SIGKILL at this point would
                real_fsync(path)

            monkeypatch.setattr(loop, "_fsync", fsync)
        return real_save(root, task, opt, sched, scaler, state, *a)

    monkeypatch.setattr(loop, "_save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    monkeypatch.undo()
    ckpt = tmp_path / "ckpt"
    assert _steps(ckpt) == [3, 4]
    leftovers = list(ckpt.glob(".tmp-*-6"))
    assert len(leftovers) == 1  # the half-written temp of this (still living) process
    # make it look like the temp of a dead process of this host, as after a real kill
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = leftovers[0].with_name(f".tmp-{loop._host()}-{dead}-6")
    leftovers[0].rename(stale)
    with caplog.at_level(logging.INFO, logger="irflow"):
        w, rows = _run(tmp_path)
    assert "resuming from step 4" in caplog.text
    assert not stale.exists()  # cleaned up
    assert _max_diff(w, reference[0]) <= 1e-6
    assert rows == reference[1]


def _worker(root: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    task = TinyTask()
    cfg = OptimConfig(**{**CFG, "max_steps": 40, "checkpoint_every": 1})
    train(task, cfg, ckpt=Path(root) / "ckpt", log_path=Path(root) / "train_log.jsonl", device="cpu",
          progress=False)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in task.model.state_dict().items()},
              str(Path(root) / f"final-{multiprocessing.current_process().name}.safetensors"))


def test_two_processes_of_one_key_at_once(tmp_path):
    """Same checkpoint directory and log path: both finish, with the weights and log of one run."""
    from safetensors.torch import load_file

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path),), name=f"p{i}") for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    single = tmp_path / "single"
    single.mkdir()
    _worker(str(single))
    ref = load_file(str(single / "final-MainProcess.safetensors"))
    for i in range(2):
        w = load_file(str(tmp_path / f"final-p{i}.safetensors"))
        assert _max_diff(w, ref) <= 1e-6
    rows = [json.loads(ln) for ln in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    # one run's lines, not two interleaved (step 0: the starting model's validation)
    assert [r["step"] for r in rows] == list(range(0, 41))
    assert not list((tmp_path / "ckpt").glob(".tmp-*"))
    assert len(list((tmp_path / "ckpt").glob("step-*"))) == 2


def test_no_unsafe_deserialisation_in_irflow():
    root = Path(__file__).resolve().parents[1] / "irflow"
    bad = [f"{f}:{i}" for f in root.rglob("*.py") for i, ln in enumerate(f.read_text().splitlines(), 1)
           if "weights_only=False" in ln or "pickle" in ln]
    assert not bad, bad


def test_failed_write_leaves_no_temp_and_the_previous_checkpoint(tmp_path, reference, monkeypatch):
    """An error while writing (a full disk) propagates, removes its temp and keeps what was there."""
    real = loop._write_checkpoint

    def full_disk(tmp, task, opt, sched, scaler, state, *a):
        if state["step"] == 6:
            (tmp / "model.safetensors").write_bytes(b"partial")
            raise OSError(28, "No space left on device")
        return real(tmp, task, opt, sched, scaler, state, *a)

    monkeypatch.setattr(loop, "_write_checkpoint", full_disk)
    with pytest.raises(OSError, match="No space"):
        _run(tmp_path)
    monkeypatch.undo()
    ckpt = tmp_path / "ckpt"
    assert _steps(ckpt) == [3, 4]
    assert not [d for d in ckpt.glob(".tmp-*") if d.is_dir()]
    w, rows = _run(tmp_path)
    assert _max_diff(w, reference[0]) <= 1e-6
    assert rows == reference[1]
