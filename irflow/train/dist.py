"""Data-parallel training across the processes of a ``torchrun`` launch (torch.distributed).

A stage with ``devices: N`` runs as N processes (``torchrun --nproc-per-node N -m irflow.cli train
...``), one device each: gloo on the CPU, nccl on CUDA. Why not DistributedDataParallel: the tasks
call the model's ``encode`` / scorers rather than its ``forward``, and GradCache re-encodes inside
the backward pass, neither of which DDP's forward hooks see. Instead every process

* draws the *global* batch from ``(seed, step)`` exactly as one process would, and keeps its own
  contiguous slice of it (:func:`rank_rows`): TAS and TAS-Balanced batches still come from the
  sampled clusters, and exact resume still needs no sampler state;
* for in-batch objectives gathers the representations of all processes (:func:`gather_rows`: the
  local slice keeps its graph, the others are constants — Tevatron's trick) and computes the
  *global* loss, identical in every process; each process's backward then yields the global loss's
  gradient through its own rows only, so the gradients are **summed** across processes
  (:func:`reduce_gradients`); a loss that is a mean over a process's own rows (pairwise
  objectives, cross-encoder groups) is **averaged** instead. Either way the update equals one
  process training on the whole batch (tested to 1e-5 in fp32 with dropout off);
* starts from rank 0's weights (:func:`broadcast_module`) and stays identical, since all apply the
  same reduced gradients.

Rank 0 alone writes checkpoints, logs and the artifact; the others wait at collectives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import IrflowError

if TYPE_CHECKING:
    import torch

#: seconds a collective may wait (rank 0 may wait for the key's lock while the others wait for it)
ENV_TIMEOUT = "IRFLOW_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class Dist:
    """This process's place in the launch: ``world == 1`` is a plain single-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Dist()


def from_env(environ=None) -> Dist:
    """The launch torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (``SINGLE`` outside torchrun)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise IrflowError(f"RANK/WORLD_SIZE/LOCAL_RANK are not integers: {env.get('RANK')!r}/"
                          f"{env.get('WORLD_SIZE')!r}/{env.get('LOCAL_RANK')!r}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise IrflowError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}")
    return Dist(rank, world, local) if world > 1 else SINGLE


def check_devices(devices: int, d: Dist, *, rows: int, what: str) -> None:
    """The stage's ``devices`` must be the launch's size, and divide the global batch."""
    if devices != d.world:
        if d.world == 1:
            raise IrflowError(f"devices is {devices} but this is a single process: launch the stage with "
                              f"torchrun --standalone --nproc-per-node {devices} -m irflow.cli train ...")
        raise IrflowError(f"devices is {devices} but torchrun started {d.world} processes (WORLD_SIZE)")
    if rows % d.world:
        raise IrflowError(f"{what} {rows} cannot be split over {d.world} devices: it must be a multiple of devices")


def local_device(device: str, d: Dist) -> str:
    """The device of this rank, given what leasing chose.

    Leasing narrows ``CUDA_VISIBLE_DEVICES`` to one GPU per process (``cuda:0``), so each rank of a
    local launch gets its own; under a scheduler that gave the job several GPUs, the variable names
    them all and rank r takes the r-th (``cuda:<LOCAL_RANK>``). An explicit ``cuda:N`` names one
    device for all the processes, which cannot be right.
    """
    if not d.active or not device.startswith("cuda"):
        return device
    from ..devices import visible_entries

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    n = len(visible_entries(visible)) if visible is not None else None
    if n == 1:
        return "cuda:0"
    import torch

    n = n if n is not None else torch.cuda.device_count()
    if d.local_rank >= n:
        raise IrflowError(f"process {d.local_rank} of this node has no GPU: {n} visible for "
                          f"{d.world} processes (CUDA_VISIBLE_DEVICES={visible})")
    return f"cuda:{d.local_rank}"


def init(d: Dist, device: str) -> None:
    """Join the process group (gloo on the CPU, nccl on CUDA); a no-op for a single process."""
    if not d.active:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    timeout = timedelta(seconds=float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S)))
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend, timeout=timeout)


def shutdown(d: Dist) -> None:
    if not d.active:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _device() -> torch.device:
    """The device collectives use: CUDA for nccl, the CPU for gloo."""
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_rows(n: int, d: Dist) -> slice:
    """This rank's contiguous rows of a global batch of ``n``: rank order is batch order."""
    if n % d.world:
        raise IrflowError(f"a batch of {n} cannot be split over {d.world} devices")
    k = n // d.world
    return slice(d.rank * k, (d.rank + 1) * k)


def gather_rows(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """All ranks' ``x`` concatenated in rank order; only this rank's part carries a gradient.

    Every rank's ``x`` must have the same shape (the task pads a batch to the global batch's
    width). The other ranks' parts are constants here: their gradients are computed by their own
    processes, and :func:`reduce_gradients` sums them.
    """
    if not d.active:
        return x
    import torch
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(d.world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[d.rank] = x
    return torch.cat(parts)


def reduce_gradients(params, d: Dist, *, mean: bool, bucket_bytes: int = 64 << 20) -> None:
    """Sum (``mean=False``) or average the gradients of ``params`` across ranks, in flat buckets.

    A parameter that has a gradient on some rank only gets zeros elsewhere; one that has none
    anywhere stays without (so the optimizer skips it as a single process would).
    """
    if not d.active:
        return
    import torch
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    dev = _device()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=dev)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(params, has.tolist()) if h]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list = []
    size = 0

    def flush():
        nonlocal bucket, size
        if not bucket:
            return
        flat = torch.cat([p.grad.reshape(-1).to(dev) for p in bucket])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        if mean:
            flat /= d.world
        i = 0
        for p in bucket:
            n = p.grad.numel()
            p.grad.copy_(flat[i:i + n].view_as(p.grad))
            i += n
        bucket, size = [], 0

    for p in live:
        if bucket and (p.grad.dtype != bucket[0].grad.dtype or size + p.grad.numel() * p.grad.element_size()
                       > bucket_bytes):
            flush()
        bucket.append(p)
        size += p.grad.numel() * p.grad.element_size()
    flush()


def reduce_mean(value: float, d: Dist) -> float:
    """The mean of a scalar over ranks (the logged loss of a per-rank mean)."""
    if not d.active:
        return value
    import torch
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / d.world


def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    """Every rank starts from rank 0's parameters and buffers (as DDP does at construction)."""
    if not d.active:
        return
    import torch
    import torch.distributed as dist

    dev = _device()
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            buf = t.detach().to(dev).contiguous()
            dist.broadcast(buf, src=0)
            if buf is not t:
                t.copy_(buf.to(t.device))


def broadcast_object(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (a decision, a checkpoint name, a validation score)."""
    if not d.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_device())
    return box[0]


def gather_objects(obj: Any, d: Dist) -> list:
    """Every rank's ``obj`` on every rank, in rank order."""
    if not d.active:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def barrier(d: Dist) -> None:
    if not d.active:
        return
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[_device().index])
    else:
        dist.barrier()
