"""Device choice and per-job GPU leasing (irflow.devices), with GPUs simulated by IRFLOW_GPU_COUNT.

No GPU is needed: leasing only takes flocks and sets CUDA_VISIBLE_DEVICES, so concurrent jobs are
real processes competing for simulated devices.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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
    for var in ("CUDA_VISIBLE_DEVICES", "IRFLOW_GPU_COUNT", "IRFLOW_GPU_LOCK_DIR"):
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
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
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


@pytest.mark.parametrize("requested", ["auto", "cuda"])
@pytest.mark.parametrize("visible", ["3", "1,2", "GPU-0b1c2d3e"])
def test_scheduler_assignment_is_respected(tmp_path, monkeypatch, requested, visible):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    lease = lease_device(requested, lock_dir=tmp_path / "locks")
    assert lease == Lease("cuda:0", None, "scheduler")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible  # not overwritten
    assert not (tmp_path / "locks").exists()  # no lock taken
    lease.release()
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible


@pytest.mark.parametrize("visible", ["", "-1", " "])
def test_scheduler_hiding_all_gpus_means_cpu(tmp_path, monkeypatch, visible):
    monkeypatch.setenv("IRFLOW_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    lease = lease_device("auto", lock_dir=tmp_path / "locks")
    assert lease == Lease("cpu", None, "scheduler")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible
    assert not (tmp_path / "locks").exists()
    with pytest.raises(IrflowError, match="no GPU is visible"):
        lease_device("cuda", lock_dir=tmp_path / "locks")


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


def test_gpu_count_from_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)'\n"
        "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb)'\n"
        "echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-cccc)'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_count() == 2


def test_gpu_count_nvidia_smi_failing_or_missing(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_count() == 0
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert gpu_count() == 0


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
    slurm = jobs(1, timeout=0, env_extra={"CUDA_VISIBLE_DEVICES": "5"})
    assert _report(slurm) == ["5", "cuda:0", "None", "scheduler"]
    assert sorted(p.name for p in jobs.lock_dir.iterdir()) == ["gpu0.lock"]


# --- autocast dtype ---------------------------------------------------------------------------


def test_resolve_dtype(monkeypatch):
    torch = pytest.importorskip("torch")
    assert resolve_dtype("cpu", "fp32") is None
    assert resolve_dtype("cuda:0", "fp32") is None
    assert resolve_dtype("cpu", "bf16") is torch.bfloat16
    assert resolve_dtype("cuda:0", "bf16") is torch.bfloat16
    assert resolve_dtype("cuda:0", "fp16") is torch.float16
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
    pytest.importorskip("torch")
    devices._cpu_has_bf16.cache_clear()
    assert isinstance(devices._cpu_has_bf16(), bool)
