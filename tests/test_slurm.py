"""The SLURM profile against a real scheduler: a one-node slurmctld + slurmd with fake GPUs.

``tests/slurm/setup_slurm.sh`` starts the cluster (root only; marker ``slurm``; as non-root it is
skipped and counted like a GPU-only test). A small experiment on the tiny synthetic collection (BM25,
a dense encode and search, a trained re-ranker stage and its rerank) runs through
``snakemake --profile profiles/slurm`` -- the shipped profile, with only what this test cluster
lacks given on the command line (no slurmdbd, so job states come from squeue) -- and, at the same
time, locally. Checked: every non-local job was a SLURM job that completed; every GPU step ran in
the ``gpu`` partition with a GPU allocated and logged the ``CUDA_VISIBLE_DEVICES`` SLURM gave it,
every other job in the ``cpu`` partition; the re-ranker's training stage asks for two devices and
runs as one job with two GPUs and two processes (torchrun, gloo on the CPU); the results and the
store's run files are byte-identical to the local run. Only the daemons and partitions the test
created are removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import ROOT, SNAKEMAKE, Workflow

#: the one-node cluster scripts (from the project's shared test tooling), shipped beside the tests
SLURM_DIR = Path(__file__).resolve().parent / "slurm"
STATE = Path(os.environ.get("SLURM_CI_DIR", "/var/lib/slurm-ci"))
PARTITIONS = ("cpu", "gpu")  # the names profiles/slurm/partitions.yaml declares
GPU_RULES = {"train", "score", "rerank", "cluster", "encode"}  # and search over a dense index
LOCAL_RULES = {"results", "all", "report_evaluation", "report_training"}  # localrules: figures of the run
EXPERIMENT = "tiny-slurm"
TARGET = f"results/{EXPERIMENT}/ndcg.tsv"

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.geteuid() != 0, reason="setup_slurm.sh needs root (apt packages, daemons)"),
]


def _alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The cluster's client environment; stops afterwards only what this fixture started."""
    if not (SLURM_DIR / "setup_slurm.sh").is_file():
        pytest.fail(f"no SLURM test scripts at {SLURM_DIR}")
    started_here = not _alive(STATE / "run" / "slurmctld.pid")
    subprocess.run(["timeout", "300", "bash", str(SLURM_DIR / "setup_slurm.sh")], check=True,
                   capture_output=True, text=True)
    env = dict(os.environ)
    env["SLURM_CONF"] = str(STATE / "etc" / "slurm.conf")
    env["PATH"] = f"{STATE / 'bin'}{os.pathsep}{env['PATH']}"  # wrappers that keep SLURM_CONF

    def scontrol(*args, check=True):
        return subprocess.run(["timeout", "30", "scontrol", *args], env=env, capture_output=True,
                              text=True, check=check)

    created = []
    for name in PARTITIONS:
        if scontrol("show", "partition", name, check=False).returncode != 0:
            # OverSubscribe: the node is this machine with few cores; a 2-thread GPU step must not
            # hold back the CPU jobs beside it (GPUs themselves stay exclusive)
            scontrol("create", f"PartitionName={name}", "Nodes=ALL", "State=UP", "MaxTime=INFINITE",
                     "OverSubscribe=FORCE:4")
            created.append(name)
    try:
        yield env
    finally:
        for name in created:
            scontrol("delete", f"PartitionName={name}", check=False)
        if started_here:
            subprocess.run(["timeout", "120", "bash", str(SLURM_DIR / "teardown_slurm.sh")], check=False)


def _config(tiny_bert) -> dict:
    return {"experiments": {EXPERIMENT: {
        "corpus": "synthetic:tiny", "queries": "synthetic:tiny", "baseline": "bm25",
        "split": {"seed": 1, "test": 10, "valid": 4},
        "systems": {
            "bm25": {"type": "bm25"},
            "dense": {"type": "dense", "model": str(tiny_bert), "doc_max_length": 64},
            "rerank": {"type": "rerank", "first_stage": "dense", "depth": 20, "model": str(tiny_bert),
                       "max_length": 64, "training": {"first_stage": "bm25", "depth": 30, "min_grade": 2},
                       # two (fake) GPUs: one job, two processes under torchrun (gloo on the CPU)
                       "stages": [{"objective": "lce", "batch_queries": 2, "group_size": 4, "max_steps": 3,
                                   "devices": 2}]},
        },
    }}}


def _jobs(env) -> dict[str, dict[str, str]]:
    """Every job the controller still knows (finished ones stay MinJobAge=300 s), by job id."""
    out = subprocess.run(["timeout", "30", "scontrol", "-o", "show", "job"], env=env, capture_output=True,
                         text=True, check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def _submitted(logdir: Path) -> dict[tuple[str, str], str]:
    """(rule, key) -> SLURM job id, from the plugin's per-job logs (rule_<r>/<wildcards>/<id>.log)."""
    seen = {}
    for log in logdir.glob("rule_*/**/*.log"):
        rule = log.relative_to(logdir).parts[0].removeprefix("rule_")
        wildcards = "/".join(log.relative_to(logdir).parts[1:-1])
        key = re.search(r"key=([0-9a-f]{16})", wildcards)
        seen[(rule, key.group(1) if key else wildcards)] = log.stem
    return seen


def _store_files(root: Path) -> dict[str, bytes]:
    """The run files of the store and the human-facing results, by path relative to the workdir."""
    files = {}
    for p in [*root.glob("results/store/*/*/run.trec"), *root.glob(f"results/{EXPERIMENT}/*.tsv")]:
        files[str(p.relative_to(root))] = p.read_bytes()
    return files


def test_profile_runs_the_experiment_on_slurm(slurm, env, tmp_path, tiny_bert):
    config = _config(tiny_bert)
    local = Workflow(tmp_path / "local", env)
    local.write_config(config)
    remote = Workflow(tmp_path / "slurm", {**env, **{k: slurm[k] for k in ("SLURM_CONF", "PATH")}})
    remote.write_config(config)
    planned = remote.planned_jobs(TARGET)
    assert {"train", "encode", "rerank", "search"} <= set(planned), planned

    # the local run, concurrently (the cluster's node is this machine: the jobs queue anyway)
    local_result: list = []
    t = threading.Thread(target=lambda: local_result.append(local.snakemake(TARGET, check=False)))
    t.start()

    logdir = tmp_path / "slurm-logs"
    cmd = ["timeout", "-k", "10", "420", *SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(remote.path),
           "--profile", str(ROOT / "profiles" / "slurm"),
           # what this test cluster lacks (no slurmdbd) and what the checks need; the rest is the profile's
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--slurm-keep-successful-logs", "--slurm-logdir", str(logdir), "--latency-wait", "5",
           # the test node has only this machine's cores; the rules ask for up to 4 threads per job
           "--max-threads", str(os.cpu_count() or 1),
           "--retries", "0", TARGET]
    r = subprocess.run(cmd, env=remote.env, cwd=remote.path, capture_output=True, text=True)
    t.join(timeout=420)
    if r.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in sorted(logdir.rglob("*.log")))
        pytest.fail(f"snakemake --profile profiles/slurm failed ({r.returncode}):\n"
                    f"{r.stderr[-5000:]}\n{logs}")
    assert local_result and local_result[0].returncode == 0, local_result and local_result[0].stderr[-3000:]

    # every job but the local ones went through sbatch, and the controller saw each complete
    submitted = _submitted(logdir)
    by_rule: dict[str, int] = {}
    for rule, _ in submitted:
        by_rule[rule] = by_rule.get(rule, 0) + 1
    assert by_rule == {k: v for k, v in planned.items() if k not in LOCAL_RULES}, (by_rule, planned)
    jobs = _jobs(slurm)
    gpu_jobs = gpu_searches = two_device_jobs = 0
    for (rule, key), job_id in submitted.items():
        job = jobs.get(job_id)
        assert job is not None, f"{rule} {key}: job {job_id} unknown to slurmctld"
        assert job["JobState"] == "COMPLETED", (rule, key, job["JobState"])
        step_log = remote.path / "logs" / rule / f"{key}.log"
        text = step_log.read_text() if step_log.exists() else ""
        # a dense search asks for a GPU, a BM25 search does not (exactly one dense search: below)
        is_gpu = rule in GPU_RULES or (rule == "search" and "gpu" in job.get("TresPerJob", ""))
        gpu_searches += rule == "search" and is_gpu
        if is_gpu:
            gpu_jobs += 1
            assert job["Partition"] == "gpu", (rule, key, job["Partition"])
            tres = job.get("TresPerJob", "") + job.get("TresPerNode", "")
            # the irflow command logged the devices SLURM gave this very job (every process of it)
            found = re.findall(r"scheduler's assignment: CUDA_VISIBLE_DEVICES=(\S+) \(SLURM job (\d+)\)", text)
            assert found and all(j == job_id for _, j in found), f"{step_log}:\n{text[-1500:]}"
            if rule == "train":  # the two-device stage: one job, two GPUs, two processes
                assert "gpu:2" in tres, (rule, key, job)
                assert len(found) == 2 and {v for v, _ in found} == {"0,1"}, found
                manifest = remote.path / "results" / "store" / "train" / key / "manifest.json"
                assert json.loads(manifest.read_text())["stats"]["devices"] == 2
                two_device_jobs += 1
            else:
                assert "gpu:1" in tres, (rule, key, job)
                assert len(found) == 1 and found[0][0] in ("0", "1"), found
        else:
            assert job["Partition"] == "cpu", (rule, key, job["Partition"])
    assert gpu_searches == 1 and two_device_jobs == 1
    assert gpu_jobs == sum(planned.get(r, 0) for r in GPU_RULES) + 1

    # the same bytes as the local run: every run file of the store, the results table
    here, there = _store_files(local.path), _store_files(remote.path)
    assert TARGET in there and len(there) >= 4, sorted(there)
    assert sorted(here) == sorted(there)
    for name in here:
        assert here[name] == there[name], f"{name} differs between the local and the SLURM run"
