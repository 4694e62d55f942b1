"""Which device a step runs on, and leasing one GPU per job on a multi-GPU node.

``--device auto`` uses CUDA when present, else the CPU. Where each job's GPUs come from:

* **Inside a SLURM job that was given GPUs** (``SLURM_JOB_ID`` together with one of SLURM's GPU
  variables ``SLURM_STEP_GPUS``, ``SLURM_JOB_GPUS``, ``GPU_DEVICE_ORDINAL``, ``SLURM_GPUS_ON_NODE``)
  the scheduler has already set ``CUDA_VISIBLE_DEVICES`` for this job: irflow uses it as given,
  takes no lock and logs the assignment. A SLURM job that was given no GPU runs on the CPU (the
  node's other GPUs belong to other jobs), unless the job itself set ``CUDA_VISIBLE_DEVICES`` or
  ``IRFLOW_GPU_COUNT``; then it leases as below.
* **Anywhere else** (a workstation, an interactive shell, a node allocated whole) GPUs are a pool
  that concurrent jobs lease from: Snakemake never assigns GPU ids to jobs, so each GPU step takes
  a non-blocking ``flock`` on one lock file per device and narrows ``CUDA_VISIBLE_DEVICES`` to that
  one device, so torch sees exactly one device, ``cuda:0``. The pool is ``CUDA_VISIBLE_DEVICES``
  when the shell set it (``0,1,2,3`` is four devices to share, not one assignment), else every
  device on the node. The lock is held for the life of the process; the kernel frees a ``flock``
  when the process ends, even on SIGKILL, so a crashed job never leaks a GPU.

``--device cuda:N`` uses that device as given, without a lock. Snakemake's ``--resources gpu=N``
bounds how many GPU jobs run at once; no step drives several GPUs.

The lock files live in a private directory (``/tmp/irflow-gpu-locks-<uid>``, or
``$IRFLOW_GPU_LOCK_DIR``), created with mode 0700 and refused unless it is a real directory owned
by this user that no one else can write: ``/tmp`` is shared, so another user could otherwise create
it first and plant lock files or symbolic links in it. Lock files are opened relative to the
checked directory with ``O_NOFOLLOW``, never through a link.

Nothing here initialises CUDA before ``CUDA_VISIBLE_DEVICES`` is narrowed (that would expose every
device of the pool to the process, and CUDA reads the variable only once): :func:`gpu_count` asks
NVML (``pynvml``, which does not create a CUDA context) or, without it, torch in a child process;
it never depends on ``nvidia-smi``. This module imports only the standard library; torch is
imported inside functions.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import stat
import subprocess
import sys
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
#: SLURM sets these in a job (step) that was allocated GPUs; any one of them with SLURM_JOB_ID
#: means CUDA_VISIBLE_DEVICES is the scheduler's assignment. Snakemake's jobstep plugin strips most
#: SLURM_* variables before its srun, but srun sets the step's own again.
SLURM_GPU_VARS = ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL", "SLURM_GPUS_ON_NODE")

PRECISIONS = ("fp32", "bf16", "fp16", "fp64", "auto")

_CUDA_INDEX = re.compile(r"cuda:(\d+)")
# One CUDA_VISIBLE_DEVICES entry: an index, or a GPU-/MIG- UUID (or a unique prefix of one).
_VISIBLE_ENTRY = re.compile(r"[0-9]+|(?:GPU|MIG)-[A-Za-z0-9/-]+")

# Lock fds held by this process, keyed by the device entry leased: a module-level reference keeps
# the lock for the life of the process even when the caller drops its Lease.
_HELD_FDS: dict[str, int] = {}


@dataclass
class Lease:
    """The device a step should hand to torch, and how it was chosen."""

    device: str  # "cpu" or "cuda:0" etc.: what torch should use
    gpu_index: int | None  # physical index leased (None for cpu, explicit, scheduler or a UUID)
    source: str  # "cpu" | "lease" | "scheduler" | "explicit"
    fd: int | None = field(default=None, repr=False, compare=False)  # the held lock file, if leased
    lock_path: Path | None = field(default=None, repr=False, compare=False)
    visible: str | None = field(default=None, compare=False)  # CUDA_VISIBLE_DEVICES as leased/given
    previous: str | None = field(default=None, repr=False, compare=False)  # its value before leasing

    def release(self) -> None:
        """Give the GPU back before the process ends (normally unnecessary: exit releases it).

        Closes the lock file and, if ``CUDA_VISIBLE_DEVICES`` still holds the value the lease set,
        puts back the value it had before (the pool), or unsets it. A process that has already
        initialised CUDA keeps using the device it has, so release only once the GPU work is done.
        Releasing twice, or a lease that holds no lock, does nothing.
        """
        global _CURRENT
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        for key, held in list(_HELD_FDS.items()):
            if held == fd:
                del _HELD_FDS[key]
        try:
            os.close(fd)  # closing the last fd of the open file description drops the flock
        except OSError:
            pass
        if self.visible is not None and os.environ.get(ENV_VISIBLE) == self.visible:
            if self.previous is None:
                del os.environ[ENV_VISIBLE]
            else:
                os.environ[ENV_VISIBLE] = self.previous
        if _CURRENT is self:
            _CURRENT = None


# The lease this process holds (if any), returned again by a repeated lease_device() call.
_CURRENT: Lease | None = None


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (a SLURM step or ``taskset`` narrows it,
    which ``os.cpu_count()`` ignores), else the machine's count where there is no mask (macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _count_override() -> int | None:
    raw = os.environ.get(ENV_GPU_COUNT)
    if raw is None or raw.strip() == "":
        return None
    try:
        n = int(raw.strip())
    except ValueError:
        n = -1
    if n < 0:
        raise IrflowError(f"{ENV_GPU_COUNT}={raw!r} is not a non-negative integer", where=ENV_GPU_COUNT)
    return n


def _nvml_count() -> int | None:
    """GPUs on the node according to NVML, 0 without a driver, None when pynvml is not installed.

    NVML talks to the driver, not to CUDA: it creates no CUDA context and ignores
    ``CUDA_VISIBLE_DEVICES``, so it counts the node's devices without exposing any to this process.
    """
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound/DriverNotLoaded: no GPU
        log.debug("NVML unavailable: %s", exc)
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception as exc:  # noqa: BLE001
        log.debug("nvmlDeviceGetCount failed: %s", exc)
        return 0
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


_TORCH_COUNT = (
    "import torch\n"
    "print(torch.cuda.device_count() if (torch.version.cuda or torch.version.hip) else 0)\n"
)


def _torch_count() -> int:
    """GPUs torch sees, asked in a child process so this one never initialises CUDA."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VISIBLE}
    try:
        out = subprocess.run(
            [sys.executable, "-c", _TORCH_COUNT], capture_output=True, text=True, timeout=120,
            check=False, env=env,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("counting GPUs through torch failed: %s", exc)
        return 0
    if out.returncode != 0:
        log.debug("counting GPUs through torch exited %d: %s", out.returncode, out.stderr.strip())
        return 0
    try:
        return int(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def gpu_count() -> int:
    """The number of GPUs on this node, found without initialising CUDA in this process.

    ``IRFLOW_GPU_COUNT`` overrides detection (tests use it to simulate GPUs); otherwise NVML's
    device count when ``pynvml`` (``nvidia-ml-py``) is importable; otherwise
    ``torch.cuda.device_count()`` run in a child process without ``CUDA_VISIBLE_DEVICES`` (0 for
    a CPU-only torch). 0 when there is no driver. ``nvidia-smi`` is not needed.
    """
    n = _count_override()
    if n is not None:
        return n
    n = _nvml_count()
    if n is not None:
        return n
    return _torch_count()


def visible_entries(visible: str) -> list[str]:
    """The devices a CUDA_VISIBLE_DEVICES value exposes, as CUDA reads it.

    CUDA reads the comma-separated list up to the first invalid entry: an empty value, or one
    that starts with a negative index ("-1") or anything that is neither an index nor a
    ``GPU-``/``MIG-`` UUID, hides the rest. A repeated entry also ends the list.
    """
    out: list[str] = []
    for raw in visible.split(","):
        entry = raw.strip()
        if not _VISIBLE_ENTRY.fullmatch(entry) or entry in out:
            break
        out.append(entry)
    return out


def _names_a_device(visible: str) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES value exposes at least one device to CUDA."""
    return bool(visible_entries(visible))


def _in_slurm_gpu_job() -> bool:
    """Whether SLURM allocated GPUs to this job (so CUDA_VISIBLE_DEVICES is its assignment)."""
    if not os.environ.get("SLURM_JOB_ID"):
        return False
    for var in SLURM_GPU_VARS:
        value = os.environ.get(var, "").strip()
        if value and not (var == "SLURM_GPUS_ON_NODE" and value == "0"):
            return True
    return False


def _default_lock_dir() -> Path:
    return Path(f"/tmp/irflow-gpu-locks-{os.getuid()}")


def _open_lock_dir(ldir: Path) -> int:
    """Create (mode 0700) or check the lock directory; an fd of it, opened without following links.

    Refused with one :class:`IrflowError` unless it is a real directory (not a symbolic link),
    owned by the effective user, and writable by no one else: the default name under ``/tmp`` is
    predictable, so another user could create it first, then take or redirect every lock file.
    The checks run on the opened directory (``fstat``), so it cannot be swapped in between.
    """
    try:
        ldir.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(ldir, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise IrflowError(f"cannot create GPU lock directory: {exc.strerror}", where=ldir) from exc
    try:
        dfd = os.open(ldir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise IrflowError(
                "unsafe GPU lock directory: it is a symbolic link or not a directory; remove it "
                f"or set {ENV_LOCK_DIR} to a private directory",
                where=ldir,
            ) from exc
        raise IrflowError(f"cannot open GPU lock directory: {exc.strerror}", where=ldir) from exc
    st = os.fstat(dfd)
    uid = os.geteuid()
    problem = None
    if st.st_uid != uid:
        problem = f"it is owned by uid {st.st_uid}, not by you (uid {uid})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"it is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if problem is not None:
        os.close(dfd)
        raise IrflowError(
            f"unsafe GPU lock directory: {problem}; another user could take or redirect its lock "
            f"files. Remove it (or chmod 700 it if it is yours), or set {ENV_LOCK_DIR} to a "
            "private directory",
            where=ldir,
        )
    return dfd


def _lock_name(entry: str) -> str:
    """``gpu<i>.lock`` for an index (the names every irflow version used), else ``gpu-<uuid>.lock``."""
    return f"gpu{entry}.lock" if entry.isdigit() else "gpu-" + entry.replace("/", "_") + ".lock"


def _try_lock(dfd: int, name: str, path: Path) -> int | None:
    """Open ``name`` in the lock directory and take a non-blocking exclusive flock on it.

    The fd, or None if another process holds it. ``O_NOFOLLOW``: a symbolic link planted as a lock
    file is refused, never followed; anything but a regular file of ours is refused too.
    """
    import fcntl

    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, 0o600, dir_fd=dfd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IrflowError(
                "GPU lock file is a symbolic link: refusing to follow it; remove it", where=path
            ) from exc
        raise IrflowError(f"cannot open GPU lock file: {exc.strerror}", where=path) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise IrflowError("GPU lock file is not a regular file of yours: remove it", where=path)
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


def _cuda_usable() -> bool:
    """Whether torch in this process can use the device(s) ``CUDA_VISIBLE_DEVICES`` now names.

    Asked only once the variable is final (scheduler-given, or narrowed to the lease), so
    initialising CUDA here cannot expose other devices. ``IRFLOW_GPU_COUNT`` declares the devices
    (tests simulate GPUs with it): then nothing is probed.
    """
    if _count_override() is not None:
        return True
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver is no usable GPU
        return False


def _warn_if_cuda_initialised() -> None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            log.warning(
                "CUDA was initialised before the GPU lease: this process may use a device "
                "other than the one it leased"
            )
    except Exception:  # noqa: BLE001 - a partially imported torch
        pass


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
    * ``"auto"`` / ``"cuda"``:

      - in a SLURM job allocated GPUs: ``CUDA_VISIBLE_DEVICES`` as the scheduler set it, no lock
        (``cuda:0``; the CPU if it names no device);
      - else if ``CUDA_VISIBLE_DEVICES`` is set, it is the pool: the CPU if it names no device,
        otherwise lease one of its entries and narrow the variable to it;
      - else, in a SLURM job allocated no GPU (and no ``IRFLOW_GPU_COUNT``): the CPU;
      - else lease one of the node's :func:`gpu_count` devices (the CPU when there are none).

      Leasing locks the first free ``gpu<i>.lock`` in ``lock_dir`` (default
      ``$IRFLOW_GPU_LOCK_DIR``, else ``/tmp/irflow-gpu-locks-<uid>``), sets
      ``CUDA_VISIBLE_DEVICES`` to that one device and returns ``cuda:0``; while all are held it
      retries every ``poll`` seconds for up to ``timeout`` seconds, then raises. Once
      ``CUDA_VISIBLE_DEVICES`` is final, torch is asked whether it can use CUDA at all (a CPU-only
      build on a GPU node, fake scheduler GPUs): if not, the CPU, with a warning. ``"cuda"``
      raises where ``"auto"`` would fall back to the CPU.

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
        and os.environ.get(ENV_VISIBLE) == _CURRENT.visible
    ):
        return _CURRENT

    def no_gpu(why: str, source: str) -> Lease:
        if req == "cuda":
            raise IrflowError(f"--device cuda requested but no GPU is visible ({why})")
        log.debug("running on the CPU: %s", why)  # the manifest records the device; errors stay one line
        return Lease("cpu", None, source)

    def unusable(cpu: Lease) -> Lease:
        why = (f"{ENV_VISIBLE}={os.environ.get(ENV_VISIBLE)} but torch cannot use CUDA here "
               "(a CPU-only torch build, or no driver)")
        if req == "cuda":
            raise IrflowError(f"--device cuda requested but no GPU is usable: {why}")
        log.warning("running on the CPU: %s", why)
        return cpu

    visible = os.environ.get(ENV_VISIBLE)
    if _in_slurm_gpu_job():
        if visible is None:
            # SLURM without gres device files: the job's devices are whatever the node exposes
            log.info("using the scheduler's assignment: SLURM job %s, %s unset",
                     os.environ.get("SLURM_JOB_ID"), ENV_VISIBLE)
            if not _cuda_usable():
                return unusable(Lease("cpu", None, "scheduler"))
            return Lease("cuda:0", None, "scheduler")
        if not _names_a_device(visible):
            return no_gpu(f"{ENV_VISIBLE}={visible!r} set by the scheduler", "scheduler")
        log.info("using the scheduler's assignment: %s=%s (SLURM job %s)",
                 ENV_VISIBLE, visible, os.environ.get("SLURM_JOB_ID"))
        if not _cuda_usable():
            return unusable(Lease("cpu", None, "scheduler", visible=visible))
        return Lease("cuda:0", None, "scheduler", visible=visible)

    if visible is not None:
        pool = visible_entries(visible)
        if not pool:
            return no_gpu(f"{ENV_VISIBLE}={visible!r}", "cpu")
        n = _count_override()
        if n is not None:  # simulated or stated node size: indices past it do not exist
            cut = next((i for i, e in enumerate(pool) if e.isdigit() and int(e) >= n), len(pool))
            pool = pool[:cut]
            if not pool:
                return no_gpu(f"{ENV_VISIBLE}={visible!r} but the node has {n} GPU(s)", "cpu")
    elif os.environ.get("SLURM_JOB_ID") and _count_override() is None:
        return no_gpu(f"SLURM job {os.environ['SLURM_JOB_ID']} was allocated no GPU", "cpu")
    else:
        n = gpu_count()
        if n == 0:
            return no_gpu("no GPU on this node", "cpu")
        pool = [str(i) for i in range(n)]

    if lock_dir is not None:
        ldir = Path(lock_dir)
    elif os.environ.get(ENV_LOCK_DIR):
        ldir = Path(os.environ[ENV_LOCK_DIR])
    else:
        ldir = _default_lock_dir()
    _warn_if_cuda_initialised()
    dfd = _open_lock_dir(ldir)
    try:
        deadline = time.monotonic() + max(0.0, float(timeout))
        waited = False
        while True:
            for entry in pool:
                name = _lock_name(entry)
                path = ldir / name
                fd = _try_lock(dfd, name, path)
                if fd is None:
                    continue
                _HELD_FDS[entry] = fd
                os.environ[ENV_VISIBLE] = entry
                lease = Lease(
                    "cuda:0", int(entry) if entry.isdigit() else None, "lease", fd=fd,
                    lock_path=path, visible=entry, previous=visible,
                )
                _CURRENT = lease
                log.info("leased GPU %s of %d (%s=%s, lock %s)", entry, len(pool), ENV_VISIBLE,
                         entry, path)
                if not _cuda_usable():
                    lease.release()
                    return unusable(Lease("cpu", None, "cpu"))
                return lease
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise IrflowError(
                    f"no free GPU: all {len(pool)} GPU lock(s) {_lock_name(pool[0])}.."
                    f"{_lock_name(pool[-1])} are held by other jobs (waited {float(timeout):g}s); "
                    f"run fewer GPU jobs at once (--resources gpu=...) or check {ENV_VISIBLE} / "
                    f"{ENV_GPU_COUNT}",
                    where=ldir,
                )
            if not waited:
                log.info("all %d GPUs in %s are leased; waiting up to %gs", len(pool), ldir,
                         float(timeout))
                waited = True
            time.sleep(min(max(poll, 0.01), remaining))
    finally:
        os.close(dfd)


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
    """The compute dtype for ``precision`` on ``device``; None means plain fp32 (no autocast).

    ``precision`` is ``fp32``, ``bf16``, ``fp16``, ``fp64`` or ``auto``. bf16 and fp16 run under
    autocast (:func:`amp`); fp64 is not an autocast dtype but float64 weights (:func:`weights_dtype`)
    with autocast off: exact enough that two ways of computing the same training (one process or
    several) agree to 1e-10 where float32 rounding noise, amplified by AdamW on parameters whose
    true gradient is zero, makes them differ by up to the learning rate. ``auto`` picks bf16 on a GPU that
    supports it natively and on a CPU with AVX512-BF16 or AMX, else fp32. fp16 on the CPU is an
    error: CPU fp16 autocast is slower than fp32.
    """
    prec = str(precision).strip().lower()
    if prec not in PRECISIONS:
        raise IrflowError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if prec == "fp32":
        return None
    import torch

    if prec == "fp64":
        return torch.float64

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


def amp(device_type: str, dtype):
    """``torch.autocast`` for a half-precision ``dtype`` (bf16, fp16); a disabled one for None
    (fp32) and float64 (the weights themselves are float64 then)."""
    import torch

    half = dtype in (torch.bfloat16, torch.float16)
    return torch.autocast(device_type, dtype=dtype if half else torch.float32, enabled=half)


def weights_dtype(dtype):
    """The dtype a model's weights must be cast to for compute dtype ``dtype``: float64 for fp64,
    else None (weights stay as loaded; autocast handles bf16/fp16)."""
    import torch

    return torch.float64 if dtype == torch.float64 else None


def at_least_fp32(t):
    """``t`` in float32 if it is half precision, else unchanged (float64 stays float64): scores,
    pooling and losses are computed in at least float32 whatever the model ran in."""
    import torch

    return t.to(torch.promote_types(t.dtype, torch.float32))
