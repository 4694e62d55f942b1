"""Shared fixtures: an offline ir_datasets home, a scratch workflow directory, CLI runners.

Also the skip policy: a test run that skips a test is not a passing run. Only tests marked ``gpu``
may be skipped (when torch sees no CUDA device), and they are counted in the summary; any other
skip, and any xfail that is not strict, is turned into a failure, unless IRFLOW_ALLOW_SKIPS=1 (for
local partial runs). Tests marked ``slow`` (the vaswani BM25 reference: minutes) run only with
IRFLOW_SLOW=1; elsewhere they are deselected and counted in the summary, never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
IRDS_ARCHIVES = DATA / "irds"  # one <ir_datasets folder>.tar.xz per collection: see data/README.md
IRFLOW = [sys.executable, "-m", "irflow.cli"]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# ---------------------------------------------------------------------------------- skip policy



def _skips_allowed() -> bool:
    return os.environ.get("IRFLOW_ALLOW_SKIPS") == "1"


_IRDS_HOME = pytest.StashKey[Path]()


def pytest_configure(config):
    # a bare `pytest` outside the environment `make test` installs: one line saying so, instead of
    # an ImportError for every test module
    import importlib.util

    missing = [m for m in ("irflow", "torch", "pyarrow") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.exit(f"{', '.join(missing)} not importable by {sys.executable}: run the tests with `make test` "
                    "(it installs irflow and its dependencies into .venv), or with .venv/bin/python -m pytest",
                    returncode=4)
    # ir_datasets fixes its dataset paths when it is first imported, whichever test does that: so
    # the test home is set before any test runs (the `irds_home` fixture fills it on first use), and
    # no test reads or downloads into the user's ~/.ir_datasets
    home = Path(tempfile.mkdtemp(prefix="irflow-test-irds-")) / "irds_home"
    config.stash[_IRDS_HOME] = home
    os.environ["IR_DATASETS_HOME"] = str(home)
    # `make test` runs one xdist worker per core: a worker's in-process torch (the learning and
    # training tests) then computes on one thread, instead of two workers each spreading over every
    # core and waiting on each other (the commands the tests start choose their own threads)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    from irflow.devices import usable_cores

    if workers > 1 and workers >= usable_cores():
        import torch

        torch.set_num_threads(1)


def pytest_unconfigure(config):
    home = config.stash.get(_IRDS_HOME, None)
    if home is not None:
        shutil.rmtree(home.parent, ignore_errors=True)


_SLOW_DESELECTED = pytest.StashKey[int]()


#: modules whose tests run whole workflows or several training processes (minutes, not seconds):
#: collected first, longest first. `make test` has pytest-xdist hand out one test at a time
#: (--maxschedchunk 1), so the long ones start first and the short ones fill the gaps, instead of
#: one worker finishing alone on a long tail
LONG_FIRST = ("test_dense_workflow", "test_bench_scale", "test_msmarco", "test_real_collections", "test_slurm", "test_report",
              "test_learning_dl20", "test_training", "test_workflow", "test_ddp", "test_search_shards",
              "test_encode", "test_housekeeping", "test_score", "test_concurrency")


def pytest_collection_modifyitems(config, items):
    """`slow` tests run only with IRFLOW_SLOW=1, deselected and counted otherwise; long modules first.

    GPU-only tests are skipped when torch sees no CUDA device (torch imported only if there are any).
    """
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rsplit(".", 1)[-1], len(rank)))  # stable
    if os.environ.get("IRFLOW_SLOW") != "1":
        slow = [item for item in items if item.get_closest_marker("slow")]
        if slow:
            config.hook.pytest_deselected(items=slow)
            items[:] = [item for item in items if not item.get_closest_marker("slow")]
        config.stash[_SLOW_DESELECTED] = len(slow)
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu:
        return
    import torch

    if not torch.cuda.is_available():
        for item in gpu:
            item.add_marker(pytest.mark.skip(reason="GPU-only test: torch.cuda.is_available() is false"))


def _strict_xfail(item) -> bool:
    marker = item.get_closest_marker("xfail")
    if marker is None:  # pytest.xfail() called inside the test: never strict
        return False
    return bool(marker.kwargs.get("strict", item.config.getini("xfail_strict")))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Turn an unexpected skip (or a non-strict xfail/xpass) into a failure of that test."""
    report = yield
    if report.when == "teardown" and not report.skipped:
        return report
    xfail = hasattr(report, "wasxfail")
    if xfail and _strict_xfail(item):
        return report
    if report.skipped and not xfail and item.get_closest_marker("gpu"):
        return report
    if report.skipped and not xfail and item.get_closest_marker("slurm") and os.geteuid() != 0:
        return report  # a real scheduler needs root: counted alike
    if not (report.skipped or xfail):
        return report
    if xfail:
        what = f"non-strict xfail ({report.wasxfail or 'no reason'}): mark it strict=True or fix the test"
    else:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        what = f"unexpected skip ({reason}): only tests marked `gpu` may skip"
    if _skips_allowed():
        return report
    if xfail:
        del report.wasxfail
    report.outcome = "failed"
    report.longrepr = f"{what}; set IRFLOW_ALLOW_SKIPS=1 to allow skips in a local partial run"
    return report


def _allowed_skip(report) -> bool:
    """A skip the policy allows: a `gpu` test's, or a `slurm` test's as non-root. A skip raised while
    collecting a module (no test markers to go by) is never allowed."""
    keywords = getattr(report, "keywords", None) or {}
    return "gpu" in keywords or ("slurm" in keywords and os.geteuid() != 0)


def _skips(reporter) -> tuple[list, list]:
    """(allowed, unexpected) skip reports, from the reports themselves: the policy above runs in
    pytest-xdist's workers, these run where the reports arrive."""
    skipped = [r for r in reporter.stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    return [r for r in skipped if _allowed_skip(r)], [r for r in skipped if not _allowed_skip(r)]


def pytest_sessionfinish(session, exitstatus):
    """A skip the makereport hook cannot see (a module-level skip at collection) fails the run too."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _skips(reporter)[1] and not _skips_allowed() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    allowed, skipped = _skips(terminalreporter)
    converted = [r for r in terminalreporter.stats.get("failed", []) if "set IRFLOW_ALLOW_SKIPS=1" in str(r.longrepr)]
    if allowed:
        terminalreporter.write_line(f"GPU-only (or, as non-root, SLURM) tests skipped: {len(allowed)}")
    slow = config.stash.get(_SLOW_DESELECTED, 0)
    if slow:
        terminalreporter.write_line(f"Slow tests not run: {slow} (IRFLOW_SLOW=1 runs them)")
    unexpected = converted + skipped
    if unexpected:
        verdict = "allowed by IRFLOW_ALLOW_SKIPS=1" if _skips_allowed() else "counted as failures"
        terminalreporter.write_line(f"Unexpected skips ({verdict}): {len(unexpected)}")
        for r in unexpected:
            terminalreporter.write_line(f"  {r.nodeid or r.fspath}")


# ------------------------------------------------------------------------------------- fixtures


def extract_irds_home(dst: Path, names=None) -> Path:
    """Unpack the shipped collections (all, or ``names``) into ``dst``, an ir_datasets home.

    ir_datasets writes into its home (doc stores beside the files), hence a fresh writable copy.
    """
    archives = sorted(IRDS_ARCHIVES.glob("*.tar.xz"))
    if names is not None:
        archives = [a for a in archives if a.name.removesuffix(".tar.xz") in names]
    assert archives, f"no collection archives in {IRDS_ARCHIVES}"
    dst.mkdir(parents=True, exist_ok=True)
    for archive in archives:
        with tarfile.open(archive, "r:xz") as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: no absolute paths, links or ../
                tar.extractall(dst, filter="data")
            else:
                for m in tar.getmembers():
                    assert (m.isfile() or m.isdir()) and not m.name.startswith("/") and ".." not in m.name, m.name
                tar.extractall(dst)
    version = dst / "msmarco-passage" / "irds_version.txt"
    if version.exists():  # any other content and ir_datasets wipes the folder on first use
        assert version.read_bytes() == b"v2", version.read_bytes()
    return dst


@pytest.fixture(scope="session")
def irds_home(pytestconfig) -> Path:
    """A writable ir_datasets home with the collections shipped in tests/data/irds.

    vaswani, cranfield, and the MS MARCO passage subset with TREC DL 2020 (tests/data/README.md);
    it is $IR_DATASETS_HOME of the test process as well.
    """
    return extract_irds_home(pytestconfig.stash[_IRDS_HOME])


def offline_env(irds_home: Path, scratch: Path) -> dict:
    """Environment of subprocesses: offline, with the copied ir_datasets home and private GPU locks."""
    e = dict(os.environ)
    e.update(IR_DATASETS_HOME=str(irds_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             IRFLOW_GPU_LOCK_DIR=str(scratch / "gpu-locks"), TOKENIZERS_PARALLELISM="false",
             PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return e


@pytest.fixture()
def env(irds_home, tmp_path) -> dict:
    return offline_env(irds_home, tmp_path)


def irflow(args, env, cwd, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(IRFLOW + [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"irflow {args} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


class Store:
    """``irflow`` commands against one store: ``store("prepare", ...)`` returns the artifact's path."""

    def __init__(self, root: Path, env: dict):
        self.root, self.env, self.path = root, env, root / "store"

    def __call__(self, *args) -> Path:
        return self.root / irflow([*args, "--store", self.path], self.env, self.root).stdout.strip()

    def run(self, *args, check=False) -> subprocess.CompletedProcess:
        return irflow([*args, "--store", self.path], self.env, self.root, check=check)

    def tiny_first_stage(self, k: int = 30) -> dict[str, Path]:
        """The tiny synthetic collection prepared, indexed with BM25 and searched (top ``k``)."""
        docs = self("prepare", "--dataset", "synthetic:tiny", "--kind", "docs")
        queries = self("prepare", "--dataset", "synthetic:tiny", "--kind", "queries")
        index = self("index", "bm25", "--texts", docs)
        bm25 = self("search", "--index", index, "--queries", queries, "--k", k)
        return {"docs": docs, "queries": queries, "index": index, "bm25": bm25}


@pytest.fixture(scope="module")
def tiny_store(irds_home, tmp_path_factory) -> Store:
    """A store shared by a module's tests (read-mostly: tests add artifacts, never alter them)."""
    root = tmp_path_factory.mktemp("store")
    return Store(root, offline_env(irds_home, root))


class Workflow:
    """A scratch working directory for Snakemake runs of the repo's Snakefile with a test config."""

    def __init__(self, path: Path, env: dict):
        self.path = path
        self.env = env
        (path / "config").mkdir(parents=True, exist_ok=True)

    def write_config(self, config: dict) -> None:
        (self.path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def snakemake(self, *args, check=True) -> subprocess.CompletedProcess:
        cmd = SNAKEMAKE + ["-s", str(ROOT / "Snakefile"), "-d", str(self.path), "--cores", "2", *map(str, args)]
        r = subprocess.run(cmd, env=self.env, cwd=self.path, capture_output=True, text=True)
        if check and r.returncode != 0:
            logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted((self.path / "logs").rglob("*.log")))
            raise AssertionError(f"snakemake {args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}\n{logs}")
        return r

    def planned_jobs(self, *targets) -> dict[str, int]:
        """Jobs a dry run would execute, by rule (from Snakemake's job stats table)."""
        r = self.snakemake("-n", *targets, "--quiet", "rules")
        counts: dict[str, int] = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
                counts[parts[0]] = int(parts[1])
        return counts


@pytest.fixture()
def workflow(tmp_path, env) -> Workflow:
    return Workflow(tmp_path / "wf", env)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT with a WordPiece tokenizer trained on the tiny corpus."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from irflow.data.synthetic import generate

    out = tmp_path_factory.mktemp("tiny-bert")
    coll = generate("tiny")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator([t for _, t in coll.docs + coll.queries],
                            trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    fast.save_pretrained(out)
    import torch

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(out)
    return out
