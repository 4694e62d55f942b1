"""Content-addressed artifact store.

Every step writes one directory ``<store>/<step>/<key>/``. The key hashes the canonical JSON of the
step name, the step's format version, its own parameters and the keys of its inputs, so keys form
a Merkle chain: change one parameter and exactly that step and its descendants get new
directories; revert it and the old directories are found again. The Snakefile and the CLI both
call :func:`compute_key`, so the path a rule declares is the path the command writes.

Directories are published atomically: a step writes into a hidden temporary sibling and renames it
into place after writing ``manifest.json``, so a killed job never leaves a directory that looks
complete (complete == has a manifest).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .errors import IrflowError

MANIFEST = "manifest.json"
KEY_LENGTH = 16

#: Bumped whenever a step's output format or semantics change, so old artifacts are not reused.
STEP_VERSIONS: dict[str, int] = {
    "prepare": 1,
    "encode": 1,
    "index": 1,
    "search": 1,
    "fuse": 1,
    "evaluate": 1,
    "preprocess": 1,
    "score": 2,  # 2: the cosine head's late interaction (separate lower layers)
    "train": 2,
    "rerank": 2,
    "cluster": 1,
}

_LIBRARIES = (
    "irflow", "torch", "transformers", "tokenizers", "faiss-cpu", "faiss-gpu-cu12", "bm25s",
    "PyStemmer", "ir_datasets", "ir-measures", "pyarrow", "numpy", "snakemake",
)


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte string that keys are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_key(step: str, params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """The store key of a step run with ``params`` on inputs whose keys are ``inputs``."""
    if step not in STEP_VERSIONS:
        raise ValueError(f"unknown step {step!r}")
    payload = {"step": step, "version": STEP_VERSIONS[step], "params": dict(params), "inputs": dict(inputs)}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:KEY_LENGTH]


def artifact_path(store: str | Path, step: str, key: str) -> Path:
    return Path(store) / step / key


def is_complete(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not is_complete(path):
        raise IrflowError("not a complete irflow artifact (no manifest.json)", where=path)
    try:
        return json.loads((path / MANIFEST).read_text())
    except json.JSONDecodeError as e:
        raise IrflowError(f"corrupt manifest.json ({e})", where=path / MANIFEST) from e


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


class Artifact:
    """One step's output directory, written atomically.

    ``with Artifact(...) as art:`` yields a writable temporary directory ``art.tmp``; on a clean exit
    the manifest (with file digests) is written and the directory is renamed to ``art.path``; on an
    exception the temporary directory is removed and nothing is published.
    """

    def __init__(
        self,
        store: str | Path,
        step: str,
        params: Mapping[str, Any],
        inputs: Mapping[str, str | Path] | None = None,
        *,
        expect: str | Path | None = None,
    ):
        self.step = step
        self.params = dict(params)
        self.input_paths = {name: Path(p) for name, p in (inputs or {}).items()}
        self.input_keys = {name: read_manifest(p)["key"] for name, p in self.input_paths.items()}
        self.key = compute_key(step, self.params, self.input_keys)
        self.path = artifact_path(store, step, self.key)
        if expect is not None and Path(expect).resolve() != self.path.resolve():
            raise IrflowError(
                f"the command's parameters give {self.path}, not the expected {expect}: the workflow "
                "and the command disagree on this step's parameters"
            )
        self.seed: int | None = None
        self.device: str | None = None
        self.stats: dict[str, Any] = {}
        self.tmp: Path | None = None
        self._t0 = 0.0

    @property
    def complete(self) -> bool:
        return is_complete(self.path)

    def __enter__(self) -> Artifact:
        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(parent, self.key)
        self.tmp = parent / f".{self.key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._publish()
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def _publish(self) -> None:
        assert self.tmp is not None
        files = {}
        for f in sorted(p for p in self.tmp.rglob("*") if p.is_file()):
            rel = f.relative_to(self.tmp).as_posix()
            files[rel] = {"sha256": file_digest(f), "bytes": f.stat().st_size}
        manifest = {
            "step": self.step,
            "key": self.key,
            "format_version": STEP_VERSIONS[self.step],
            "params": self.params,
            "inputs": {n: {"key": self.input_keys[n], "path": str(p)} for n, p in self.input_paths.items()},
            "seed": self.seed,
            "device": self.device,
            "stats": self.stats,
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv,
            "versions": library_versions(),
            "files": files,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if self.path.exists():
            # Snakemake creates an output's parent folder before the job runs; an incomplete
            # leftover (no manifest) is replaced, a complete one is identical by construction.
            if is_complete(self.path):
                shutil.rmtree(self.tmp)
                return
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)


def _remove_orphans(parent: Path, key: str) -> None:
    """Temporary siblings of killed runs of this key (their process is gone) are removed."""
    for tmp in parent.glob(f".{key}.tmp-*"):
        try:
            pid = int(tmp.name.split(".tmp-")[1].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            pass


def verify(path: str | Path) -> list[str]:
    """Re-hash an artifact's files; return one line per problem (empty when intact)."""
    path = Path(path)
    manifest = read_manifest(path)
    problems = []
    listed = manifest.get("files", {})
    for rel, meta in sorted(listed.items()):
        f = path / rel
        if not f.is_file():
            problems.append(f"missing: {rel}")
        elif f.stat().st_size != meta["bytes"] or file_digest(f) != meta["sha256"]:
            problems.append(f"altered: {rel}")
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel != MANIFEST and rel not in listed:
            problems.append(f"unexpected: {rel}")
    return problems
