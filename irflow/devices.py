"""Which device a step runs on, and leasing one GPU per job on a multi-GPU node.

``--device auto`` uses CUDA when present, else the CPU. Snakemake never assigns GPU ids to jobs, so
on a node with several GPUs each GPU step leases one itself: it takes a non-blocking ``flock`` on one
of N lock files (``gpu0.lock`` .. ``gpu<N-1>.lock``) and sets ``CUDA_VISIBLE_DEVICES`` to that index,
so torch sees exactly one device, ``cuda:0``. The lock is held for the life of the process; the
kernel frees a ``flock`` when the process ends, even on SIGKILL, so a crashed job never leaks a GPU.
Where a scheduler (SLURM) or the user already set ``CUDA_VISIBLE_DEVICES``, irflow uses what it was
given and takes no lock. Snakemake's ``--resources gpu=N`` bounds how many GPU jobs run at once;
no step drives several GPUs.

Nothing here initialises CUDA before ``CUDA_VISIBLE_DEVICES`` is set (that would expose every
device to the process): :func:`gpu_count` asks ``nvidia-smi``, not torch. This module imports only
the standard library; torch is imported inside :func:`resolve_dtype`.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from irflow.errors import IrflowError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: Environment variables this module reads.
ENV_GPU_COUNT = "IRFLOW_GPU_COUNT"  # overrides the detected GPU count (tests simulate GPUs with it)
ENV_LOCK_DIR = "IRFLOW_GPU_LOCK_DIR"  # where the gpu<i>.lock files live
ENV_VISIBLE = "CUDA_VISIBLE_DEVICES"

PRECISIONS = ("fp32", "bf16", "fp16", "auto")

_CUDA_INDEX = re.compile(r"cuda:(\d+)")

# Lock fds held by this process, keyed by GPU index: a module-level reference keeps the lock for the
# life of the process even when the caller drops its Lease.
_HELD_FDS: dict[int, int] = {}


@dataclass
class Lease:
    """The device a step should hand to torch, and how it was chosen."""

    device: str  # "cpu" or "cuda:0" etc.: what torch should use
    gpu_index: int | None  # physical index leased (None for cpu, explicit or scheduler-assigned)
    source: str  # "cpu" | "lease" | "scheduler" | "explicit"
    fd: int | None = field(default=None, repr=False, compare=False)  # the held lock file, if leased
    lock_path: Path | None = field(default=None, repr=False, compare=False)

    def release(self) -> None:
        """Give the GPU back before the process ends (normally unnecessary: exit releases it).

        Closes the lock file and, if ``CUDA_VISIBLE_DEVICES`` still holds the value the lease set,
        unsets it again. A process that has already initialised CUDA keeps using the device it
        has, so release only once the GPU work is done. Releasing twice, or a lease that holds no
        lock, does nothing.
        """
        global _CURRENT
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        if self.gpu_index is not None and _HELD_FDS.get(self.gpu_index) == fd:
            del _HELD_FDS[self.gpu_index]
        try:
            os.close(fd)  # closing the last fd of the open file description drops the flock
        except OSError:
            pass
        if self.gpu_index is not None and os.environ.get(ENV_VISIBLE) == str(self.gpu_index):
            del os.environ[ENV_VISIBLE]
        if _CURRENT is self:
            _CURRENT = None


# The lease this process holds (if any), returned again by a repeated lease_device() call.
_CURRENT: Lease | None = None


def gpu_count() -> int:
    """The number of GPUs on this node, found without initialising CUDA in this process.

    ``IRFLOW_GPU_COUNT`` overrides detection (tests use it to simulate GPUs); otherwise the number
    of ``GPU n:`` lines ``nvidia-smi -L`` prints; 0 when there is no ``nvidia-smi`` or it fails
    (no driver).
    """
    raw = os.environ.get(ENV_GPU_COUNT)
    if raw is not None and raw.strip() != "":
        try:
            n = int(raw.strip())
        except ValueError:
            n = -1
        if n < 0:
            raise IrflowError(f"{ENV_GPU_COUNT}={raw!r} is not a non-negative integer", where=ENV_GPU_COUNT)
        return n
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi -L failed: %s", exc)
        return 0
    if out.returncode != 0:
        log.debug("nvidia-smi -L exited %d: %s", out.returncode, out.stderr.strip())
        return 0
    # One "GPU i: <name> (UUID: ...)" line per GPU; MIG instances are indented "  MIG ..." lines.
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def _names_a_device(visible: str) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES value exposes at least one device to CUDA.

    CUDA reads the comma-separated list up to the first invalid entry, so an empty value or one
    that starts with a negative index ("-1") hides every device.
    """
    first = visible.strip().split(",")[0].strip()
    return first != "" and not first.startswith("-")


def _default_lock_dir() -> Path:
    return Path(f"/tmp/irflow-gpu-locks-{os.getuid()}")


def _try_lock(path: Path) -> int | None:
    """Open ``path`` and take a non-blocking exclusive flock on it: the fd, or None if it is held."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise IrflowError(f"cannot open GPU lock file: {exc.strerror}", where=path) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise IrflowError(f"cannot lock GPU lock file: {exc.strerror}", where=path) from exc
    try:  # informational only: who holds it
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError:
        pass
    return fd


def lease_device(
    requested: str = "auto",
    *,
    lock_dir: str | Path | None = None,
    timeout: float = 3600,
    poll: float = 0.5,
) -> Lease:
    """Choose the device for this process; on a GPU node, lease one GPU for the process lifetime.

    ``requested`` is ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``:

    * ``"cpu"``: the CPU.
    * ``"cuda:N"``: that device as given; no lock is taken and the environment is left alone.
    * ``"auto"`` / ``"cuda"``: if ``CUDA_VISIBLE_DEVICES`` is already set (by SLURM or the user),
      use it unchanged and take no lock (``cuda:0`` if it names a device, else the CPU). Otherwise,
      with no GPU on the node, the CPU (``"cuda"`` raises instead). Otherwise lock the first free
      ``gpu<i>.lock`` in ``lock_dir`` (default ``$IRFLOW_GPU_LOCK_DIR``, else
      ``/tmp/irflow-gpu-locks-<uid>``), set ``CUDA_VISIBLE_DEVICES=i`` and return ``cuda:0``;
      while all N are held, retry every ``poll`` seconds for up to ``timeout`` seconds, then raise.

    Call this before anything initialises CUDA. A second call in a process that already holds a
    lease returns that lease.
    """
    global _CURRENT
    req = str(requested).strip().lower()
    if req == "cpu":
        return Lease("cpu", None, "cpu")
    if _CUDA_INDEX.fullmatch(req):
        return Lease(req, None, "explicit")
    if req not in ("auto", "cuda"):
        raise IrflowError(f"unknown device {requested!r}: expected auto, cpu, cuda or cuda:N")

    if (
        _CURRENT is not None
        and _CURRENT.fd is not None
        and os.environ.get(ENV_VISIBLE) == str(_CURRENT.gpu_index)
    ):
        return _CURRENT

    visible = os.environ.get(ENV_VISIBLE)
    if visible is not None:
        if _names_a_device(visible):
            return Lease("cuda:0", None, "scheduler")
        if req == "cuda":
            raise IrflowError(
                f"--device cuda requested but no GPU is visible ({ENV_VISIBLE}={visible!r})"
            )
        return Lease("cpu", None, "scheduler")

    n = gpu_count()
    if n == 0:
        if req == "cuda":
            raise IrflowError("--device cuda requested but no GPU is visible")
        return Lease("cpu", None, "cpu")

    if lock_dir is not None:
        ldir = Path(lock_dir)
    elif os.environ.get(ENV_LOCK_DIR):
        ldir = Path(os.environ[ENV_LOCK_DIR])
    else:
        ldir = _default_lock_dir()
    try:
        ldir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IrflowError(f"cannot create GPU lock directory: {exc.strerror}", where=ldir) from exc

    deadline = time.monotonic() + max(0.0, float(timeout))
    waited = False
    while True:
        for i in range(n):
            path = ldir / f"gpu{i}.lock"
            fd = _try_lock(path)
            if fd is None:
                continue
            _HELD_FDS[i] = fd
            os.environ[ENV_VISIBLE] = str(i)
            lease = Lease("cuda:0", i, "lease", fd=fd, lock_path=path)
            _CURRENT = lease
            log.info("leased GPU %d (%s)", i, path)
            return lease
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IrflowError(
                f"no free GPU: all {n} GPU lock(s) gpu0.lock..gpu{n - 1}.lock are held by other "
                f"jobs (waited {float(timeout):g}s); run fewer GPU jobs at once "
                f"(--resources gpu=...) or check {ENV_GPU_COUNT}",
                where=ldir,
            )
        if not waited:
            log.info("all %d GPUs in %s are leased; waiting up to %gs", n, ldir, float(timeout))
            waited = True
        time.sleep(min(max(poll, 0.01), remaining))


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags") or line.startswith("Features"):
                    flags = set(line.split(":", 1)[-1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    try:
        import torch

        cap = str(torch.backends.cpu.get_cpu_capability()).upper()
    except Exception:  # noqa: BLE001 - detection is best effort
        return False
    return "AMX" in cap or "BF16" in cap


def _cuda_has_bf16() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # older torch without the keyword
        return bool(torch.cuda.is_bf16_supported())


def resolve_dtype(device: str, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32 (no autocast).

    ``precision`` is ``fp32``, ``bf16``, ``fp16`` or ``auto``. ``auto`` picks bf16 on a GPU that
    supports it natively and on a CPU with AVX512-BF16 or AMX, else fp32. fp16 on the CPU is an
    error: CPU fp16 autocast is slower than fp32.
    """
    prec = str(precision).strip().lower()
    if prec not in PRECISIONS:
        raise IrflowError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if prec == "fp32":
        return None
    import torch

    kind = str(device).split(":", 1)[0].strip().lower()
    if prec == "bf16":
        return torch.bfloat16
    if prec == "fp16":
        if kind == "cpu":
            raise IrflowError("precision fp16 is not supported on the CPU: use bf16 or fp32")
        return torch.float16
    # auto
    if kind == "cuda":
        return torch.bfloat16 if _cuda_has_bf16() else None
    if kind == "cpu":
        return torch.bfloat16 if _cpu_has_bf16() else None
    return None
