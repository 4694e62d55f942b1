"""The training loop shared by every model family: optimisation, precision, checkpoints, resume,
validation with early stopping, and the training log.

A *task* supplies the model and, for an optimizer step ``s``, its micro-batches; it draws them
from a generator seeded with ``(seed, s)``, so batch composition is a pure function of the step
and resuming needs no sampler state beyond the step counter. Everything else that evolves —
weights, AdamW moments, the scheduler, the RNGs (dropout), the best validation score, the
patience counter and the training log so far — is checkpointed every ``checkpoint_every`` steps
into ``<ckpt>/step-<n>`` (safetensors and JSON only; the last two kept), a directory that outlives
a killed job, and a re-run resumes from the newest readable one: a run killed after step k and
resumed ends with the same weights as an uninterrupted run (tested to 1e-6 on CPU). An unreadable
checkpoint is discarded with a warning, never fatal; temp files carry host and pid, so two
processes of one key do not trip over each other.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import IrflowError
from ..progress import progress as progress_bar

if TYPE_CHECKING:
    import torch

log = logging.getLogger("irflow")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 2e-5
    head_lr: float | None = None  # default: lr; a fresh head learns faster with more
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_steps: int = 1000
    grad_accum: int = 1
    clip_norm: float | None = 10.0
    precision: str = "auto"  # fp32 | bf16 | fp16 | auto
    seed: int = 42
    checkpoint_every: int = 100
    validate_every: int = 0  # 0: no validation
    patience: int = 5  # validations without improvement before stopping
    min_steps: int = 0
    log_every: int = 10
    min_delta: float = 0.0  # a validation counts as an improvement only above the best + min_delta


class Task(Protocol):
    model: torch.nn.Module

    def micro_batches(self, step: int, rng: np.random.Generator, accum: int) -> list[Any]: ...

    def loss(self, batch: Any) -> tuple[torch.Tensor, int]:
        """Loss of one micro-batch and its number of scored pairs (for throughput)."""
        ...

    def validate(self) -> float: ...

    def head_parameters(self) -> list[torch.nn.Parameter]: ...


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of one step's batch: a step's data depend on (seed, step) only, so resume is exact."""
    return np.random.default_rng([seed, step])


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _optimizer(task: Task, cfg: OptimConfig):
    import torch

    head = {id(p) for p in task.head_parameters()}
    params = [p for p in task.model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) not in head], "lr": cfg.lr},
        {"params": [p for p in params if id(p) in head], "lr": cfg.head_lr or cfg.lr},
    ]
    # fused: one kernel per parameter group instead of a dozen per tensor (what sentence-transformers
    # and transformers' Trainer use by default; the same AdamW update)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=cfg.weight_decay, fused=fused)
    warm = max(cfg.warmup_steps, 0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    return opt, sched


# ------------------------------------------------------------------------------------ checkpoints
#
# A checkpoint directory ``<ckpt>/step-<n>`` holds only data formats that cannot run code when
# read: tensors in safetensors, structure and scalars in JSON. ``state.json`` is written last and
# records each file's size and SHA-256, so a truncated or altered file is detected before anything
# is applied. A checkpoint is assembled in a temp directory named after the host and process and
# renamed into place, so a kill mid-write leaves the previous checkpoint intact and two processes
# never write into one directory; the last two are kept, so a corrupt newest one falls back to the
# one before it. The training log up to a checkpoint's step is part of the checkpoint: a resumed
# run continues exactly that log, and what a dead run logged after its last checkpoint is gone.

KEEP_CHECKPOINTS = 2
_RANK_RNG = "rng-rank"  # rng-rank<r>.json / .safetensors: the random state of rank r >= 1
_STEP_DIR = "step-"
_TMP_PREFIX = ".tmp-"


class CorruptCheckpoint(Exception):
    """A checkpoint that cannot be read back completely: it is discarded, never fatal."""


def _host() -> str:
    import socket

    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def _sha256(path: Path) -> str:
    from ..store import file_digest

    return file_digest(path)


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk: a checkpoint must survive a crash of the node."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some file systems cannot fsync a directory; files must be flushed
            raise
    finally:
        os.close(fd)


def _encode_tree(obj, tensors: dict, prefix: str):
    """JSON-able form of a state dict; tensors go to ``tensors`` and are referenced by name.

    Only plain values are accepted (tensors, numbers, strings, None, lists, tuples, dicts): an
    object of any other type is a bug here, not something to serialise opaquely.
    """
    import torch

    if isinstance(obj, torch.Tensor):
        name = f"{prefix}{len(tensors)}"
        tensors[name] = obj.detach().contiguous()
        return {"__tensor__": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode_tree(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [_encode_tree(v, tensors, prefix) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode_tree(v, tensors, prefix) for k, v in obj.items()}
        return {"__items__": [[_encode_tree(k, tensors, prefix), _encode_tree(v, tensors, prefix)]
                              for k, v in obj.items()]}
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__} in a state dict")


def _decode_tree(obj, tensors: dict):
    if isinstance(obj, list):
        return [_decode_tree(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode_tree(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode_tree(k, tensors): _decode_tree(v, tensors) for k, v in obj["__items__"]}
        return {k: _decode_tree(v, tensors) for k, v in obj.items()}
    return obj


def _rng_states() -> tuple[dict, dict]:
    """(JSON, tensors) of every generator a training step draws from: python, numpy, torch CPU/CUDA."""
    import torch

    version, internal, gauss = random.getstate()
    npst = np.random.get_state(legacy=False)
    js = {"python": {"version": version, "state": list(internal), "gauss_next": gauss},
          "numpy": {"bit_generator": npst["bit_generator"],
                    "state": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                              for k, v in npst["state"].items()},
                    "has_gauss": int(npst["has_gauss"]), "gauss": float(npst["gauss"])}}
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda.{i}"] = st
    js["cuda_devices"] = sum(k.startswith("torch_cuda.") for k in tensors)
    return js, tensors


def _set_rng_states(js: dict, tensors: dict) -> None:
    import torch

    py = js["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npst = js["numpy"]
    state = {k: (np.asarray(v, dtype=np.uint32) if k == "key" else v) for k, v in npst["state"].items()}
    np.random.set_state({"bit_generator": npst["bit_generator"], "state": state,
                         "has_gauss": npst["has_gauss"], "gauss": npst["gauss"]})
    torch.set_rng_state(tensors["torch_cpu"])
    n = js.get("cuda_devices", 0)
    if n and torch.cuda.is_available() and torch.cuda.device_count() == n:
        torch.cuda.set_rng_state_all([tensors[f"torch_cuda.{i}"] for i in range(n)])


def _step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Published checkpoints, newest first."""
    out = []
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith(_STEP_DIR) and d.name[len(_STEP_DIR):].isdigit() and d.is_dir():
                out.append((int(d.name[len(_STEP_DIR):]), d))
    return sorted(out, reverse=True)


def _clean_stale_temps(root: Path) -> None:
    """Remove temp directories of dead processes on this host (a kill mid-write leaves one)."""
    host = _host()
    for d in root.glob(_TMP_PREFIX + "*") if root.is_dir() else []:
        parts = d.name[len(_TMP_PREFIX):].rsplit("-", 2)  # <host>-<pid>-<step> or <host>-<pid>-log.jsonl
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            if d.is_dir():
                shutil.rmtree(d, ignore_errors=True)
            else:
                d.unlink(missing_ok=True)
        except PermissionError:
            pass


def _save_checkpoint(root: Path, task: Task, opt, sched, scaler, state: dict, log_lines: list[str],
                     best: dict | None, rank_rngs: list | None = None) -> None:
    """Write checkpoint ``step-<n>`` atomically (``best``: the best weights so far, kept in memory).

    The best weights are held in (CPU) memory rather than linked from the previous checkpoint, so a
    checkpoint never depends on another directory that a concurrent process may be pruning.
    """
    step = state["step"]
    final = root / f"{_STEP_DIR}{step:09d}"
    tmp = root / f"{_TMP_PREFIX}{_host()}-{os.getpid()}-{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_checkpoint(tmp, task, opt, sched, scaler, state, log_lines, best, rank_rngs)
    except Exception:  # e.g. a full disk: no half-written temp stays (a kill's is cleaned up later)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(final)
    except OSError:
        if not final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        # another process of the same key (same inputs, same seed, so the same state) published this
        # step first, or is already pruning it: either way this step is covered
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning("checkpoint %s was written by another process; keeping it", final)
    _fsync(root)
    for _, old in _step_dirs(root)[KEEP_CHECKPOINTS:]:
        shutil.rmtree(old, ignore_errors=True)


def _write_checkpoint(tmp: Path, task: Task, opt, sched, scaler, state: dict, log_lines: list[str],
                      best: dict | None, rank_rngs: list | None = None) -> None:
    """``rank_rngs``: the random states of every rank of a data-parallel run (rank 0's is ``rng.*``,
    rank r's ``rng-rank<r>.*``), so that each rank resumes with its own dropout stream."""
    from safetensors.torch import save_file

    weights = {k: v.detach().contiguous() for k, v in task.model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    tensors: dict = {}
    tree = {"optimizer": _encode_tree(opt.state_dict(), tensors, "opt."),
            "scheduler": _encode_tree(sched.state_dict(), tensors, "sched."),
            "scaler": _encode_tree(scaler.state_dict(), tensors, "scaler.") if scaler is not None else None}
    save_file(tensors, str(tmp / "optim.safetensors"))
    (tmp / "optim.json").write_text(json.dumps(tree))
    rng_json, rng_tensors = rank_rngs[0] if rank_rngs else _rng_states()
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "rng.json").write_text(json.dumps(rng_json))
    for r, (js, ts) in enumerate(rank_rngs or []):
        if r:
            save_file(ts, str(tmp / f"{_RANK_RNG}{r}.safetensors"))
            (tmp / f"{_RANK_RNG}{r}.json").write_text(json.dumps(js))
    (tmp / "train_log.jsonl").write_text("".join(ln + "\n" for ln in log_lines))
    if best is not None:
        save_file(best, str(tmp / "best.safetensors"))
    files = {}
    for f in sorted(tmp.iterdir()):
        files[f.name] = [f.stat().st_size, _sha256(f)]
        _fsync(f)
    body = {k: v for k, v in state.items() if k != "best_is_new"}
    (tmp / "state.json").write_text(json.dumps({**body, "files": files}))
    _fsync(tmp / "state.json")
    _fsync(tmp)


def _read_checkpoint(d: Path) -> dict:
    """Everything a checkpoint holds, checked against its recorded sizes and hashes; applies nothing."""
    from safetensors.torch import load_file

    try:
        state = json.loads((d / "state.json").read_text())
        files = state.pop("files")
        for name in ("model.safetensors", "optim.safetensors", "optim.json", "rng.safetensors", "rng.json",
                     "train_log.jsonl"):
            if name not in files:
                raise CorruptCheckpoint(f"{name} is not recorded")
        for name, (size, digest) in files.items():
            f = d / name
            if f.stat().st_size != size or _sha256(f) != digest:
                raise CorruptCheckpoint(f"{name} does not match its recorded size and hash")
        tensors = load_file(str(d / "optim.safetensors"))
        if state.get("best") is not None and "best.safetensors" not in files:
            raise CorruptCheckpoint("best.safetensors is not recorded")
        best = load_file(str(d / "best.safetensors")) if "best.safetensors" in files else None
        ranks = {}
        for name in files:
            r = name[len(_RANK_RNG):-len(".json")]
            if name.startswith(_RANK_RNG) and name.endswith(".json") and r.isdigit():
                ranks[int(r)] = (json.loads((d / name).read_text()),
                                 load_file(str(d / f"{_RANK_RNG}{r}.safetensors")))
        return {"rank_rng": ranks,"state": state, "model": load_file(str(d / "model.safetensors")), "best": best,
                "optim": _decode_tree(json.loads((d / "optim.json").read_text()), tensors),
                "rng": (json.loads((d / "rng.json").read_text()), load_file(str(d / "rng.safetensors"))),
                "log": (d / "train_log.jsonl").read_text().splitlines(), "dir": d}
    except CorruptCheckpoint:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # truncated, missing, bad JSON
        raise CorruptCheckpoint(f"{type(e).__name__}: {e}") from e
    except Exception as e:  # safetensors reports a bad header with its own error type
        raise CorruptCheckpoint(f"{type(e).__name__}: {e}") from e


def _check_fits(ck: dict, task: Task, opt) -> None:
    """Refuse (as corrupt) a checkpoint whose tensors do not fit this model before touching it."""
    model = task.model.state_dict()
    if set(model) != set(ck["model"]):
        raise CorruptCheckpoint("its weights do not match the model's parameter names")
    for w in (ck["model"], ck["best"]):
        for k, v in model.items():
            if w is not None and (k not in w or tuple(v.shape) != tuple(w[k].shape)):
                raise CorruptCheckpoint(f"weight {k} is missing or has the wrong shape")
    groups = ck["optim"]["optimizer"]["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in opt.param_groups]:
        raise CorruptCheckpoint("its optimizer groups do not match the model")


def _pick_latest(root: Path, task: Task, opt) -> dict | None:
    """The newest readable checkpoint, discarding unreadable ones with a warning; applies nothing."""
    for _, d in _step_dirs(root):
        try:
            ck = _read_checkpoint(d)
            _check_fits(ck, task, opt)
        except CorruptCheckpoint as e:
            log.warning("discarding corrupt checkpoint %s: %s", d, e)
            shutil.rmtree(d, ignore_errors=True)
            continue
        return ck
    return None


def _apply(ck: dict, task: Task, opt, sched, scaler, rank: int = 0
           ) -> tuple[dict, list[str], dict | None, Path]:
    import torch

    with torch.no_grad():
        task.model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optim"]["optimizer"])
    sched.load_state_dict(ck["optim"]["scheduler"])
    if scaler is not None and ck["optim"]["scaler"] is not None:
        scaler.load_state_dict(ck["optim"]["scaler"])
    if rank == 0:
        _set_rng_states(*ck["rng"])
    elif rank in ck.get("rank_rng", {}):
        _set_rng_states(*ck["rank_rng"][rank])
    else:  # written by a run with fewer processes: this rank's dropout stream starts afresh
        log.warning("checkpoint %s has no random state for rank %d; continuing with a fresh one", ck["dir"], rank)
    return ck["state"], ck["log"], ck["best"], ck["dir"]


def _load_latest(root: Path, task: Task, opt, sched, scaler
                 ) -> tuple[dict, list[str], dict | None, Path] | None:
    """Resume from the newest readable checkpoint, discarding unreadable ones with a warning."""
    ck = _pick_latest(root, task, opt)
    return _apply(ck, task, opt, sched, scaler) if ck is not None else None


def _load_distributed(root: Path, task: Task, opt, sched, scaler, d
                      ) -> tuple[dict, list[str], dict | None, Path] | None:
    """Rank 0 picks the checkpoint (and discards corrupt ones); every rank then loads that one."""
    from .dist import barrier, broadcast_object

    ck = None
    if d.main:
        ck = _pick_latest(root, task, opt)
    name = broadcast_object(ck["dir"].name if ck is not None else None, d)
    if name is None:
        return None
    if not d.main:
        try:
            ck = _read_checkpoint(root / name)
            _check_fits(ck, task, opt)
        except CorruptCheckpoint as e:  # rank 0 read it a moment ago: the file system is at fault
            raise IrflowError(f"rank {d.rank} cannot read checkpoint {root / name} that rank 0 read: {e}") from e
    out = _apply(ck, task, opt, sched, scaler, d.rank)
    barrier(d)  # nobody prunes the checkpoint before every rank has read it
    return out


def _write_log(path: Path, lines: list[str]) -> None:
    """Publish the log of this process's run in one rename: never mixed with another process's lines."""
    tmp = path.with_name(f"{path.name}.{_host()}-{os.getpid()}.tmp")
    tmp.write_text("".join(ln + "\n" for ln in lines))
    os.replace(tmp, path)


def train(task: Task, cfg: OptimConfig, *, ckpt: Path, log_path: Path, device: str, autocast_dtype=None,
          stop_after: int | None = None, progress: bool = True, dist=None) -> dict:
    """Run (or resume) training; returns summary stats. The best (or last) weights stay in ``task.model``.

    ``stop_after`` ends the process right after the checkpoint of that step, as a kill would
    (for resume tests and for splitting long runs into scheduler-sized jobs).

    ``dist`` (:class:`irflow.train.dist.Dist`): this process's rank in a data-parallel launch. The
    task then gives each rank its slice of the global batch; gradients are summed across ranks
    when the task's loss is the global one (``task.global_loss``: in-batch objectives over gathered
    representations), else averaged; rank 0 alone validates (and broadcasts the score, so every
    rank stops early alike), writes checkpoints (with every rank's random state) and the log.
    """
    import torch

    from ..devices import amp
    from .dist import (
        SINGLE,
        barrier,
        broadcast_module,
        broadcast_object,
        gather_objects,
        reduce_gradients,
        reduce_mean,
    )

    d = dist or SINGLE
    if cfg.max_steps < 1 or cfg.grad_accum < 1:
        raise IrflowError("max_steps and grad_accum must be positive")
    seed_everything(cfg.seed if d.main else cfg.seed + 1_000_003 * d.rank)  # each rank its own dropout
    opt, sched = _optimizer(task, cfg)
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 and dev_type == "cuda" else None
    state = {"step": 0, "best": None, "best_step": None, "bad_validations": 0, "stopped_early": False}
    log_lines: list[str] = []
    if d.main:
        ckpt.mkdir(parents=True, exist_ok=True)
        _clean_stale_temps(ckpt)
    if d.active:
        last = _load_distributed(ckpt, task, opt, sched, scaler, d)
        broadcast_module(task.model, d)
    else:
        last = _load_latest(ckpt, task, opt, sched, scaler)
    best_weights = None  # CPU copy of the best validated weights (rank 0)
    if last is not None:
        state, log_lines, best_weights, last_dir = last
        log.info("resuming from step %d (%s)", state["step"], last_dir)
    if cfg.validate_every and state["step"] == 0 and state["best"] is None:
        # The starting model is a candidate too: with a few dozen training queries a stage can make
        # the model worse on held-out queries from its first steps (a strong zero-shot encoder, a weak
        # teacher), and early stopping should then keep what it started from.
        metric = broadcast_object(task.validate() if d.main else None, d)
        task.model.train()
        state.update(best=metric, best_step=0, bad_validations=0)
        if d.main:
            best_weights = {k: v.detach().to("cpu", copy=True).contiguous()
                            for k, v in task.model.state_dict().items()}
            log_lines.append(json.dumps({"step": 0, "validation": metric}))
    # a live copy of this process's log for watching a long run; the published log is log_path
    live = ckpt / f"{_TMP_PREFIX}{_host()}-{os.getpid()}-log.jsonl"
    if d.main:
        live.write_text("".join(ln + "\n" for ln in log_lines))
    mean_grads = not getattr(task, "global_loss", False)
    task.model.train()
    t_start, pairs_total = time.perf_counter(), 0
    bar = progress_bar(cfg.max_steps, "train", "step", initial=state["step"], disable=not progress or not d.main)
    while state["step"] < cfg.max_steps and not state["stopped_early"]:
        step = state["step"]
        rng = step_rng(cfg.seed, step)
        t0, pairs, loss_sum = time.perf_counter(), 0, 0.0
        for batch in task.micro_batches(step, rng, cfg.grad_accum):
            with amp(dev_type, autocast_dtype):
                loss, n = task.loss(batch)
            loss = loss / cfg.grad_accum
            (scaler.scale(loss) if scaler is not None else loss).backward()
            loss_sum += float(loss.detach())
            pairs += n
        if d.active:
            reduce_gradients(task.model.parameters(), d, mean=mean_grads)
            loss_sum, pairs = reduce_mean(loss_sum, d), pairs * d.world
        if not math.isfinite(loss_sum):
            raise IrflowError(f"training diverged: loss is {loss_sum} at step {step + 1}")
        if scaler is not None:
            scaler.unscale_(opt)
        if cfg.clip_norm:
            torch.nn.utils.clip_grad_norm_(task.model.parameters(), cfg.clip_norm)
        (scaler.step(opt) if scaler is not None else opt.step())
        if scaler is not None:
            scaler.update()
        opt.zero_grad(set_to_none=True)
        sched.step()
        state["step"] = step = step + 1
        pairs_total += pairs
        bar.update(1)
        entry = {"step": step, "loss": round(loss_sum, 6), "lr": sched.get_last_lr()[0],
                 "pairs_per_s": round(pairs / max(time.perf_counter() - t0, 1e-9), 2)}
        state["best_is_new"] = False
        if cfg.validate_every and (step % cfg.validate_every == 0 or step == cfg.max_steps):
            metric = broadcast_object(task.validate() if d.main else None, d)
            task.model.train()
            entry["validation"] = metric
            if state["best"] is None or metric > state["best"] + cfg.min_delta:
                state.update(best=metric, best_step=step, bad_validations=0, best_is_new=True)
                if d.main:
                    best_weights = {k: v.detach().to("cpu", copy=True).contiguous()
                                    for k, v in task.model.state_dict().items()}
            else:
                state["bad_validations"] += 1
                if state["bad_validations"] >= cfg.patience and step >= cfg.min_steps:
                    state["stopped_early"] = True
                    log.info("early stop at step %d (best %.4f at step %d)", step, state["best"],
                             state["best_step"])
        if d.main and (step % cfg.log_every == 0 or "validation" in entry or step == cfg.max_steps):
            log_lines.append(json.dumps(entry))
            try:  # best effort: a peer that published this key may have removed the directory
                with open(live, "a") as f:
                    f.write(log_lines[-1] + "\n")
            except OSError:
                pass
        if step % cfg.checkpoint_every == 0 or state["best_is_new"] or state["stopped_early"] \
                or step == cfg.max_steps:
            rngs = gather_objects(_rng_states(), d) if d.active else None
            if d.main:
                _save_checkpoint(ckpt, task, opt, sched, scaler, state, log_lines, best_weights, rngs)
            barrier(d)
        if stop_after is not None and step >= stop_after:
            bar.close()
            barrier(d)  # no rank exits (and has torchrun stop the others) before rank 0 is done
            sys.exit(3)
    bar.close()
    if state["best"] is not None and best_weights is not None:
        task.model.load_state_dict(best_weights)
    if d.main:
        _write_log(log_path, log_lines)
        live.unlink(missing_ok=True)
    elapsed = time.perf_counter() - t_start
    return {"steps": state["step"], "best_validation": state["best"], "best_step": state["best_step"],
            "stopped_early": state["stopped_early"], "pairs_per_s": round(pairs_total / max(elapsed, 1e-9), 2),
            "config": asdict(cfg)}
