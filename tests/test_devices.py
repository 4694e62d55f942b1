"""Device choice and per-job GPU leasing (irflow.devices), with GPUs simulated by IRFLOW_GPU_COUNT.

No GPU is needed: leasing only takes flocks and sets CUDA_VISIBLE_DEVICES, so concurrent jobs are
real processes competing for simulated devices.
"""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from irflow import devices
from irflow.devices import Lease, gpu_count, lease_device, resolve_dtype
from irflow.errors import IrflowError

REPO = Path(__file__).resolve().parents[1]

# A GPU job: lease, report what it got, hold the lease until stdin closes (or it is killed).
HOLDER = textwrap.dedent(
    """
    import os, sys
    from irflow.devices import lease_device
    from irflow.errors import IrflowError
    try:
        lease = lease_device(sys.argv[1], timeout=float(sys.argv[2]), poll=0.05)
    except IrflowError as exc:
        print("ERROR:", exc, file=sys.stderr, flush=True)
        sys.exit(2)
    print(os.environ.get("CUDA_VISIBLE_DEVICES"), lease.device, lease.gpu_index, lease.source,
          flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No real scheduler/GPU settings leak in; any lease taken in-process is dropped afterwards."""
    for var in ("CUDA_VISIBLE_DEVICES", "IRFLOW_GPU_COUNT", "IRFLOW_GPU_LOCK_DIR", "SLURM_JOB_ID",
                *devices.SLURM_GPU_VARS):
        monkeypatch.delenv(var, raising=False)
    yield
    if devices._CURRENT is not None:
        devices._CURRENT.release()


@pytest.fixture
def jobs(tmp_path):
    """Start holder processes sharing one lock dir; all are killed at teardown."""
    procs: list[subprocess.Popen] = []
    lock_dir = tmp_path / "locks"

    def start(n_gpus: int, *, requested: str = "auto", timeout: float = 10.0, env_extra=None):
        env = {k: v for k, v in os.environ.items()
               if k != "CUDA_VISIBLE_DEVICES" and not k.startswith("SLURM_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env["IRFLOW_GPU_COUNT"] = str(n_gpus)
        env["IRFLOW_GPU_LOCK_DIR"] = str(lock_dir)
        env.update(env_extra or {})
        p = subprocess.Popen(
            [sys.executable, "-c", HOLDER, requested, str(timeout)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(p)
        return p

    start.lock_dir = lock_dir
    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for f in (p.stdin, p.stdout, p.stderr):
            if f:
                f.close()


def _report(p: subprocess.Popen, timeout: float = 20.0) -> list[str]:
    """The holder's one-line report: [CUDA_VISIBLE_DEVICES, device, gpu_index, source]."""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    assert ready, "holder did not report in time"
    line = p.stdout.readline()
    assert line, f"holder exited without reporting: rc={p.wait()} stderr={p.stderr.read()}"
    return line.split()


def _reports_within(p: subprocess.Popen, timeout: float) -> bool:
    return bool(select.select([p.stdout], [], [], timeout)[0])


def _stop(p: subprocess.Popen) -> None:
    p.stdin.close()  # the holder's stdin.read() returns and it exits normally
    assert p.wait(timeout=10) == 0


# --- in-process choices -----------------------------------------------------------------------


def test_import_is_light():
    code = "import sys, irflow.devices; assert 'torch' not in sys.modules, 'torch imported'"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_explicit_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    lease = lease_device("cpu", lock_dir=tmp_path / "locks")
    assert lease == Lease("cpu", None, "cpu")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not (tmp_path / "locks").exists()
    lease.release()  # harmless


def test_auto_without_gpus_is_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "0")
    lease = lease_device("auto", lock_dir=tmp_path / "locks")
    assert lease == Lease("cpu", None, "cpu")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not (tmp_path / "locks").exists()


def test_cuda_without_gpus_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "0")
    with pytest.raises(IrflowError, match="--device cuda requested but no GPU is visible"):
        lease_device("cuda", lock_dir=tmp_path / "locks")


def test_explicit_cuda_index_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    lease = lease_device("cuda:2", lock_dir=tmp_path / "locks")
    assert lease == Lease("cuda:2", None, "explicit")
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not (tmp_path / "locks").exists()


def test_unknown_device_is_an_error():
    with pytest.raises(IrflowError, match="unknown device 'tpu'"):
        lease_device("tpu")


SLURM_GPU_JOB = {"SLURM_JOB_ID": "4242", "SLURM_STEP_GPUS": "1", "GPU_DEVICE_ORDINAL": "1"}


@pytest.mark.parametrize("requested", ["auto", "cuda"])
@pytest.mark.parametrize("visible", ["3", "1,2", "GPU-0b1c2d3e"])
@pytest.mark.parametrize("gpu_var", ["SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL"])
def test_slurm_assignment_is_used_as_given(tmp_path, monkeypatch, caplog, requested, visible, gpu_var):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv(gpu_var, "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with caplog.at_level("INFO", logger="irflow.devices"):
        lease = lease_device(requested, lock_dir=tmp_path / "locks")
    assert lease == Lease("cuda:0", None, "scheduler")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible  # not overwritten
    assert not (tmp_path / "locks").exists()  # no lock taken
    # the job's log says what the scheduler gave it
    assert f"scheduler's assignment: CUDA_VISIBLE_DEVICES={visible} (SLURM job 4242)" in caplog.text
    lease.release()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible


def test_scheduler_gpu_that_torch_cannot_use_means_cpu(tmp_path, monkeypatch, caplog):
    """Fake scheduler GPUs, or a CPU-only torch on a GPU node: the CPU, saying why."""
    for k, v in SLURM_GPU_JOB.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(devices, "_cuda_usable", lambda: False)
    with caplog.at_level("INFO", logger="irflow.devices"):
        assert lease_device("auto") == Lease("cpu", None, "scheduler")
    assert "scheduler's assignment: CUDA_VISIBLE_DEVICES=1 (SLURM job 4242)" in caplog.text
    assert "torch cannot use CUDA here" in caplog.text
    with pytest.raises(IrflowError, match="--device cuda requested but no GPU is usable"):
        lease_device("cuda")
    # leased, then found unusable: the lock is given back and the pool restored
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert lease_device("auto", lock_dir=tmp_path / "locks") == Lease("cpu", None, "cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1" and devices._HELD_FDS == {}
    monkeypatch.setattr(devices, "_cuda_usable", lambda: True)
    assert lease_device("auto", lock_dir=tmp_path / "locks").gpu_index == 0  # lock 0 was freed


def test_cuda_usable_probes_torch_unless_declared(monkeypatch):
    import torch  # noqa: F401
    import torch

    assert devices._cuda_usable() is torch.cuda.is_available()
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "2")
    assert devices._cuda_usable() is True


@pytest.mark.parametrize("visible", ["", "-1", " "])
def test_slurm_hiding_all_gpus_means_cpu(tmp_path, monkeypatch, visible):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    for k, v in SLURM_GPU_JOB.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    lease = lease_device("auto", lock_dir=tmp_path / "locks")
    assert lease == Lease("cpu", None, "scheduler")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible
    assert not (tmp_path / "locks").exists()
    with pytest.raises(IrflowError, match="no GPU is visible"):
        lease_device("cuda", lock_dir=tmp_path / "locks")


@pytest.mark.parametrize("visible", ["", "-1", " ", "-1,0", "x,0"])
def test_shell_hiding_all_gpus_means_cpu(tmp_path, monkeypatch, visible):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    lease = lease_device("auto", lock_dir=tmp_path / "locks")
    assert lease == Lease("cpu", None, "cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible
    assert not (tmp_path / "locks").exists()
    with pytest.raises(IrflowError, match="no GPU is visible"):
        lease_device("cuda", lock_dir=tmp_path / "locks")


def test_slurm_job_without_gpus_runs_on_cpu(tmp_path, monkeypatch):
    """SLURM gave this job no GPU (it unsets CUDA_VISIBLE_DEVICES): the node's GPUs are not ours."""
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setattr(devices, "gpu_count", lambda: pytest.fail("must not count the node's GPUs"))
    assert lease_device("auto", lock_dir=tmp_path / "locks") == Lease("cpu", None, "cpu")
    with pytest.raises(IrflowError, match="SLURM job 77 was allocated no GPU"):
        lease_device("cuda", lock_dir=tmp_path / "locks")
    assert not (tmp_path / "locks").exists()
    # a pool the job script set itself is leased from
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    lease = lease_device("auto", lock_dir=tmp_path / "locks")
    assert (lease.source, lease.gpu_index, os.environ["CUDA_VISIBLE_DEVICES"]) == ("lease", 2, "2")


@pytest.mark.parametrize(
    "visible, expected",
    [
        ("0,1,2,3", ["0", "1", "2", "3"]),
        (" 5 , 7", ["5", "7"]),
        ("2,-1,3", ["2"]),
        ("1,1,2", ["1"]),
        ("GPU-0b1c2d3e,MIG-GPU-aa/1/0", ["GPU-0b1c2d3e", "MIG-GPU-aa/1/0"]),
        ("", []),
        ("none", []),
    ],
)
def test_visible_entries_as_cuda_reads_them(visible, expected):
    assert devices.visible_entries(visible) == expected


def test_shell_pool_is_leased_from_not_taken_whole(tmp_path, monkeypatch):
    """CUDA_VISIBLE_DEVICES=5,7 in an interactive shell: lease one of them, narrow, restore."""
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "8")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    lock_dir = tmp_path / "locks"
    lease = lease_device("auto", lock_dir=lock_dir)
    assert lease == Lease("cuda:0", 5, "lease")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    assert lease.lock_path == lock_dir / "gpu5.lock"
    assert lease_device("auto", lock_dir=lock_dir) is lease
    lease.release()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,7"  # the pool is given back


def test_shell_pool_of_uuids(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    lease = lease_device("cuda", lock_dir=tmp_path / "locks")
    assert (lease.device, lease.gpu_index, lease.source) == ("cuda:0", None, "lease")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa"
    assert lease.lock_path == tmp_path / "locks" / "gpu-GPU-aaaa.lock"


def test_shell_pool_cut_at_the_node_size(tmp_path, monkeypatch):
    """Indices past the node's GPUs do not exist (CUDA stops at the first invalid one)."""
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert lease_device("auto", lock_dir=tmp_path / "locks") == Lease("cpu", None, "cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3,0")
    lease = lease_device("auto", lock_dir=tmp_path / "locks")
    assert (lease.gpu_index, os.environ["CUDA_VISIBLE_DEVICES"]) == (1, "1")


def test_lease_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "2")
    lock_dir = tmp_path / "locks"
    lease = lease_device("auto", lock_dir=lock_dir)
    assert lease == Lease("cuda:0", 0, "lease")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert (lock_dir / "gpu0.lock").read_text().strip() == str(os.getpid())
    # asking again in the same process returns the lease it holds, not a second GPU
    assert lease_device("cuda", lock_dir=lock_dir) is lease
    # dropping the Lease object does not drop the lock: the module keeps the fd
    fd = lease.fd
    del lease
    os.fstat(fd)  # still open
    devices._CURRENT.release()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with pytest.raises(OSError):
        os.fstat(fd)
    again = lease_device("auto", lock_dir=lock_dir)
    assert again == Lease("cuda:0", 0, "lease")
    again.release()
    again.release()  # idempotent


def test_lock_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "1")
    monkeypatch.setenv("IRFLOW_GPU_LOCK_DIR", str(tmp_path / "envlocks"))
    lease = lease_device("auto")
    assert lease.lock_path == tmp_path / "envlocks" / "gpu0.lock"
    lease.release()


# --- gpu_count --------------------------------------------------------------------------------


def test_gpu_count_override(monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "3")
    assert gpu_count() == 3
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "two")
    with pytest.raises(IrflowError, match="IRFLOW_GPU_COUNT"):
        gpu_count()


FAKE_NVML = """
import os
class NVMLError(Exception):
    pass
def nvmlInit():
    if os.environ.get("FAKE_NVML_NO_DRIVER"):
        raise NVMLError("Driver Not Loaded")
def nvmlDeviceGetCount():
    return 3
def nvmlShutdown():
    pass
"""

# A CUDA torch as the child process sees it: its count reveals whether CUDA_VISIBLE_DEVICES leaked.
FAKE_CUDA_TORCH = """
import os
class version:
    cuda = "12.4"
    hip = None
class cuda:
    @staticmethod
    def device_count():
        return 1 if "CUDA_VISIBLE_DEVICES" in os.environ else 5
"""


def _count_in_child(tmp_path, extra_path: list[Path], env_extra: dict | None = None) -> str:
    """gpu_count() in a fresh interpreter; also asserts it imported neither torch nor CUDA there."""
    code = (
        "import sys, irflow.devices as d; n = d.gpu_count(); "
        "assert 'torch' not in sys.modules, 'torch imported in the parent'; print(n)"
    )
    env = {k: v for k, v in os.environ.items() if k != "IRFLOW_GPU_COUNT"}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), str(REPO)])
    env["PATH"] = f"{tmp_path}{os.pathsep}{env['PATH']}"  # a lying nvidia-smi first on PATH
    env.update(env_extra or {})
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-aaaa)'\n"
                   "echo 'GPU 1: NVIDIA H100 (UUID: GPU-bbbb)'\n")
    smi.chmod(0o755)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_gpu_count_through_nvml(tmp_path):
    nvml = tmp_path / "nvml"
    nvml.mkdir()
    (nvml / "pynvml.py").write_text(FAKE_NVML)
    assert _count_in_child(tmp_path, [nvml]) == "3"
    assert _count_in_child(tmp_path, [nvml], {"CUDA_VISIBLE_DEVICES": "0"}) == "3"
    assert _count_in_child(tmp_path, [nvml], {"FAKE_NVML_NO_DRIVER": "1"}) == "0"


def test_gpu_count_through_torch_in_a_child_process(tmp_path):
    """Without pynvml: torch counts in a child, without CUDA_VISIBLE_DEVICES; never nvidia-smi."""
    fake = tmp_path / "faketorch"
    (fake / "torch").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(FAKE_CUDA_TORCH)
    assert _count_in_child(tmp_path, [fake], {"CUDA_VISIBLE_DEVICES": "0,1"}) == "5"


def test_gpu_count_without_nvml_or_cuda_ignores_nvidia_smi(tmp_path):
    """The real (CPU) torch of this environment: 0 GPUs, whatever nvidia-smi on PATH claims."""
    import torch  # noqa: F401
    assert _count_in_child(tmp_path, []) == "0"


# --- concurrent processes ---------------------------------------------------------------------


def test_concurrent_jobs_get_distinct_gpus_and_the_extra_one_waits(jobs):
    n = 3
    holders = [jobs(n) for _ in range(n)]
    reports = [_report(p) for p in holders]
    assert sorted(int(r[0]) for r in reports) == list(range(n))
    for visible, device, index, source in reports:
        assert (device, index, source) == ("cuda:0", visible, "lease")
    for i in range(n):
        assert (jobs.lock_dir / f"gpu{i}.lock").exists()

    # all busy: a job with a short timeout fails, naming the lock dir and the GPU count
    extra = jobs(n, timeout=0.3)
    assert extra.wait(timeout=20) == 2
    err = extra.stderr.read()
    assert "no free GPU" in err and f"all {n} GPU lock(s)" in err
    assert str(jobs.lock_dir) in err

    # one job ends normally: its GPU is free again
    freed = int(reports[1][0])
    _stop(holders[1])
    later = jobs(n, timeout=5)
    assert _report(later)[:4] == [str(freed), "cuda:0", str(freed), "lease"]


def test_gpu_of_a_killed_job_is_freed(jobs):
    n = 2
    holders = [jobs(n) for _ in range(n)]
    reports = [_report(p) for p in holders]
    # a job started while all GPUs are leased waits (polling) rather than failing
    waiter = jobs(n, timeout=30)
    assert not _reports_within(waiter, 0.5)
    assert waiter.poll() is None
    victim = 0
    freed = reports[victim][0]
    os.kill(holders[victim].pid, signal.SIGKILL)
    assert holders[victim].wait(timeout=10) == -signal.SIGKILL
    assert _report(waiter)[:3] == [freed, "cuda:0", freed]


def test_scheduler_assigned_job_ignores_busy_locks(jobs):
    holder = jobs(1)
    assert _report(holder)[0] == "0"
    # a SLURM-style job on the same node: uses what it was given, takes no lock, never waits
    # (with timeout 0 a job that waited for the busy lock would fail instead of reporting)
    slurm = jobs(1, timeout=0, env_extra={"CUDA_VISIBLE_DEVICES": "5", **SLURM_GPU_JOB})
    assert _report(slurm) == ["5", "cuda:0", "None", "scheduler"]
    assert sorted(p.name for p in jobs.lock_dir.iterdir()) == ["gpu0.lock"]


def test_concurrent_jobs_lease_from_a_shell_pool(jobs):
    """CUDA_VISIBLE_DEVICES=0,1,2,3 in the shell: four jobs get four devices, a fifth waits."""
    pool = {"CUDA_VISIBLE_DEVICES": "3,1,0,2"}
    holders = [jobs(8, env_extra=pool) for _ in range(4)]
    reports = [_report(p) for p in holders]
    assert sorted(r[0] for r in reports) == ["0", "1", "2", "3"]
    for visible, device, index, source in reports:
        assert (device, index, source) == ("cuda:0", visible, "lease")
    extra = jobs(8, timeout=0.3, env_extra=pool)
    assert extra.wait(timeout=20) == 2
    assert "no free GPU: all 4 GPU lock(s) gpu3.lock..gpu2.lock" in extra.stderr.read()
    # an overlapping pool shares the lock files: device 1 is free once its holder ends
    freed = next(h for h, r in zip(holders, reports) if r[0] == "1")
    _stop(freed)
    later = jobs(8, timeout=5, env_extra={"CUDA_VISIBLE_DEVICES": "1,5"})
    assert _report(later) == ["1", "cuda:0", "1", "lease"]


# --- the lock directory ------------------------------------------------------------------------


def test_default_lock_dir_is_created_private(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "1")
    ldir = tmp_path / "deep" / "locks"
    monkeypatch.setattr(devices, "_default_lock_dir", lambda: ldir)
    old = os.umask(0)  # even with a permissive umask
    try:
        lease = lease_device("auto")
    finally:
        os.umask(old)
    assert stat.S_IMODE(ldir.stat().st_mode) == 0o700
    assert stat.S_IMODE(lease.lock_path.stat().st_mode) == 0o600
    monkeypatch.undo()
    assert str(devices._default_lock_dir()) == f"/tmp/irflow-gpu-locks-{os.getuid()}"


def test_lock_dir_owned_by_another_user_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "1")
    ldir = tmp_path / "locks"
    ldir.mkdir(mode=0o700)
    if os.geteuid() == 0:  # root can hand the folder to someone else for real
        os.chown(ldir, 54321, 54321)
        other = 54321
    else:  # otherwise the folder is ours and we pretend to be someone else
        other = os.geteuid()
        monkeypatch.setattr(devices.os, "geteuid", lambda: other + 1)
    msg = f"unsafe GPU lock directory: it is owned by uid {other}, not by you"
    with pytest.raises(IrflowError, match=msg):
        lease_device("auto", lock_dir=ldir)
    assert list(ldir.iterdir()) == []
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o770, 0o702])
def test_lock_dir_writable_by_others_is_refused(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "1")
    ldir = tmp_path / "locks"
    ldir.mkdir()
    ldir.chmod(mode)
    with pytest.raises(IrflowError, match=f"it is writable by others \\(mode {mode:04o}\\)") as exc:
        lease_device("auto", lock_dir=ldir)
    assert str(ldir) in str(exc.value)
    assert list(ldir.iterdir()) == []
    ldir.chmod(0o755)  # readable by others is fine: only writing lets them plant files
    assert lease_device("auto", lock_dir=ldir).source == "lease"


def test_lock_dir_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "1")
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (tmp_path / "locks").symlink_to(target)
    with pytest.raises(IrflowError, match="symbolic link or not a directory"):
        lease_device("auto", lock_dir=tmp_path / "locks")
    assert list(target.iterdir()) == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(IrflowError, match="symbolic link or not a directory"):
        lease_device("auto", lock_dir=tmp_path / "afile")


def test_symlink_planted_as_lock_file_is_never_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "2")
    ldir = tmp_path / "locks"
    ldir.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (ldir / "gpu0.lock").symlink_to(victim)
    (ldir / "gpu1.lock").symlink_to(tmp_path / "would-be-created")
    with pytest.raises(IrflowError, match="GPU lock file is a symbolic link: refusing to follow it") as exc:
        lease_device("auto", lock_dir=ldir)
    assert str(ldir / "gpu0.lock") in str(exc.value)
    assert victim.read_text() == "precious\n"  # neither truncated nor overwritten with a pid
    assert not (tmp_path / "would-be-created").exists()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_fifo_planted_as_lock_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "1")
    ldir = tmp_path / "locks"
    ldir.mkdir(mode=0o700)
    os.mkfifo(ldir / "gpu0.lock")
    with pytest.raises(IrflowError, match="not a regular file"):
        lease_device("auto", lock_dir=ldir)


# --- autocast dtype ---------------------------------------------------------------------------


def test_resolve_dtype(monkeypatch):
    import torch
    assert resolve_dtype("cpu", "fp32") is None
    assert resolve_dtype("cuda:0", "fp32") is None
    assert resolve_dtype("cpu", "bf16") is torch.bfloat16
    assert resolve_dtype("cuda:0", "bf16") is torch.bfloat16
    assert resolve_dtype("cuda:0", "fp16") is torch.float16
    assert resolve_dtype("cpu", "fp64") is torch.float64
    with pytest.raises(IrflowError, match="fp16"):
        resolve_dtype("cpu", "fp16")
    with pytest.raises(IrflowError, match="unknown precision"):
        resolve_dtype("cpu", "fp8")

    monkeypatch.setattr(devices, "_cpu_has_bf16", lambda: True)
    assert resolve_dtype("cpu", "auto") is torch.bfloat16
    monkeypatch.setattr(devices, "_cpu_has_bf16", lambda: False)
    assert resolve_dtype("cpu", "auto") is None

    monkeypatch.setattr(devices, "_cuda_has_bf16", lambda: True)
    assert resolve_dtype("cuda:0", "auto") is torch.bfloat16
    monkeypatch.setattr(devices, "_cuda_has_bf16", lambda: False)
    assert resolve_dtype("cuda", "auto") is None


def test_cpu_bf16_detection_runs():
    import torch  # noqa: F401
    devices._cpu_has_bf16.cache_clear()
    assert isinstance(devices._cpu_has_bf16(), bool)


def test_fp64_runs_float64_weights_without_autocast_and_pools_in_float64(tiny_bert):
    """fp64 is no autocast dtype: the weights are float64 and so is everything computed from them."""
    import torch

    from irflow.devices import amp, at_least_fp32, weights_dtype
    from irflow.models.biencoder import Encoder, EncoderSpec

    assert weights_dtype(torch.float64) is torch.float64 and weights_dtype(torch.bfloat16) is None
    with amp("cpu", torch.float64):
        assert not torch.is_autocast_enabled("cpu")
    with amp("cpu", torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
    assert at_least_fp32(torch.zeros(1, dtype=torch.bfloat16)).dtype == torch.float32
    assert at_least_fp32(torch.zeros(1, dtype=torch.float64)).dtype == torch.float64
    seqs = [[1, 5, 7, 2], [1, 9, 2]]
    e64 = Encoder(EncoderSpec(str(tiny_bert), "mean", True), autocast_dtype=torch.float64)
    assert next(e64.model.parameters()).dtype == torch.float64
    v64, v32 = e64.forward(seqs), Encoder(EncoderSpec(str(tiny_bert), "mean", True)).forward(seqs)
    assert v64.dtype == np.float64 and np.abs(v64 - v32).max() < 1e-5
