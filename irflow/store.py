"""Content-addressed artifact store.

Every step writes one directory ``<store>/<step>/<key>/``. The key hashes the canonical JSON of the
step name, the step's format version, its own parameters and the keys of its inputs, so keys form
a Merkle chain: change one parameter and exactly that step and its descendants get new
directories; revert it and the old directories are found again. The Snakefile and the CLI both
call :func:`compute_key`, so the path a rule declares is the path the command writes.

Directories are published atomically: a step writes into a hidden temporary sibling and renames it
into place after writing ``manifest.json``, so a killed job never leaves a directory that looks
complete (complete == has a manifest). Runs of one key serialise on a per-key ``flock`` (in
``<store>/.locks/``), so concurrent identical runs compute once and the others reuse the result.

A step's inputs are checked against their manifests before anything reads them
(:func:`verify_input`): a key only vouches for an artifact whose bytes are still the published ones.
:func:`verify` is the thorough check: it re-hashes everything and never reads outside the artifact.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .errors import IrflowError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
KEY_LENGTH = 16
LOCK_DIR = ".locks"  # <store>/.locks/<step>.<key>.lock: outside the step folders, which hold only artifacts

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
    """The manifest of a complete artifact, read without following a symlink; IrflowError otherwise."""
    path = Path(path)
    if not is_complete(path):
        raise IrflowError("not a complete irflow artifact (no manifest.json)", where=path)
    try:
        manifest = json.loads(_read_regular(path / MANIFEST))
    except _Bad as e:
        raise IrflowError(f"manifest.json: {e.describe()}", where=path) from None
    except OSError as e:
        raise IrflowError(f"cannot read manifest.json ({e.strerror})", where=path) from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IrflowError(f"corrupt manifest.json ({e})", where=path / MANIFEST) from e
    if not isinstance(manifest, dict):
        raise IrflowError("corrupt manifest.json (not a JSON object)", where=path / MANIFEST)
    return manifest


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


# ------------------------------------------------------------------------- reading inside an artifact



def _resources_used() -> dict:
    """This process's CPU time so far (user + system, its finished children included) and its
    peak RSS (the kernel's high-water mark, with the largest child's): exact, where a sampling
    monitor (Snakemake's ``benchmark:``, sampling every 30 s after 15 s) misses the tail of a
    job and brief peaks."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"cpu_s": round(me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, 3),
            "peak_rss_mb": round(max(me.ru_maxrss, kids.ru_maxrss) * scale / 2**20, 1)}

class _Bad(Exception):
    """One problem with one path of an artifact; ``kind`` is what verify reports."""

    def __init__(self, kind: str, detail: str = ""):
        self.kind, self.detail = kind, detail
        super().__init__(kind)

    def describe(self) -> str:
        return {
            "missing": "missing (its artifact's manifest lists it)",
            "altered": "altered since it was published (sha256 differs from its manifest)",
            "size": f"altered since it was published ({self.detail})",
            "unexpected": "not listed in its artifact's manifest (added after publication)",
            "symlink": "a symbolic link inside an artifact (not followed)",
            "special": "not a regular file (not read)",
            "unsafe": "a path outside the artifact (not followed)",
        }.get(self.kind, self.kind)


_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _check_kind(mode: int) -> None:
    if stat.S_ISLNK(mode):
        raise _Bad("symlink")
    if not stat.S_ISREG(mode):
        raise _Bad("special")


def _open_within(root: Path, rel: str) -> int:
    """A file descriptor of ``root/rel``, a regular file reached without following any symlink.

    Each component is opened relative to its parent's descriptor with ``O_NOFOLLOW``, so a symlink
    (or a directory swapped for one meanwhile) is never followed out of ``root``; FIFOs and devices
    are refused before they are opened (opening them can block or have side effects).
    """
    parts = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise _Bad("symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise _Bad("missing")
            sub = os.open(part, _OPEN_DIR, dir_fd=fd)
            os.close(fd)
            fd = sub
        _check_kind(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode)
        out = os.open(parts[-1], _OPEN_FILE, dir_fd=fd)
    except FileNotFoundError:
        raise _Bad("missing") from None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a symlink between stat and open
            raise _Bad("symlink") from None
        raise
    finally:
        os.close(fd)
    try:
        _check_kind(os.fstat(out).st_mode)
    except _Bad:
        os.close(out)
        raise
    return out


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file, refusing a symlink in its last component, a FIFO or a device."""
    try:
        _check_kind(os.lstat(path).st_mode)
        fd = os.open(path, _OPEN_FILE)
    except FileNotFoundError:
        raise _Bad("missing") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _Bad("symlink") from None
        raise
    with os.fdopen(fd, "rb") as f:
        _check_kind(os.fstat(f.fileno()).st_mode)
        return f.read()


def _digest_fd(fd: int) -> str:
    h = hashlib.sha256()
    while block := os.read(fd, 1 << 20):
        h.update(block)
    return h.hexdigest()


def _walk(root: Path) -> Iterator[tuple[str, str]]:
    """``(relative path, kind)`` of every non-directory entry under ``root``, symlinks not followed."""
    stack = [""]
    while stack:
        sub = stack.pop()
        with os.scandir(root / sub if sub else root) as entries:
            for e in entries:
                rel = f"{sub}/{e.name}" if sub else e.name
                if e.is_symlink():
                    yield rel, "symlink"
                elif e.is_dir(follow_symlinks=False):
                    stack.append(rel)
                elif e.is_file(follow_symlinks=False):
                    yield rel, "file"
                else:
                    yield rel, "special"


def _safe_rel(rel: Any) -> bool:
    """A manifest entry names a file inside the artifact: relative, no ``.``/``..``/empty component."""
    return (isinstance(rel, str) and rel != "" and "\x00" not in rel
            and all(part not in ("", ".", "..") for part in rel.split("/")))


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What makes a parsed manifest unusable (None when its key and file list are well-formed)."""
    key = manifest.get("key")
    if not (isinstance(key, str) and len(key) == KEY_LENGTH and all(c in "0123456789abcdef" for c in key)):
        return "corrupt manifest.json (no valid key)"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "corrupt manifest.json (no file list)"
    for rel, meta in files.items():
        if not (isinstance(meta, dict) and isinstance(meta.get("bytes"), int) and meta["bytes"] >= 0
                and isinstance(meta.get("sha256"), str) and len(meta["sha256"]) == 64
                and isinstance(meta.get("mtime_ns", 0), int)):
            return f"corrupt manifest.json (bad entry for {rel!r})"
    return None


def _check_files(root: Path, files: dict[str, Any], *, trust_mtime: bool) -> Iterator[tuple[str, _Bad]]:
    """Every problem of ``root`` against its manifest's ``files``, in sorted order of the listed names.

    With ``trust_mtime`` (inputs about to be read) a file whose size and ``mtime_ns`` equal the
    manifest's is taken as published; any other file is re-hashed, and a verified re-hash is cached
    beside the artifact (keyed by size, mtime, ctime and inode) so the next check is a ``stat``
    again. Without it (``verify``) every file is re-hashed. Sizes are always compared.
    """
    cache = _HashCache(root) if trust_mtime else None
    for rel in sorted(files):
        meta = files[rel]
        if not _safe_rel(rel):
            yield rel, _Bad("unsafe")
            continue
        try:
            fd = _open_within(root, rel)
        except _Bad as e:
            yield rel, e
            continue
        try:
            st = os.fstat(fd)
            if st.st_size != meta["bytes"]:
                yield rel, _Bad("size", f"{st.st_size} bytes, its manifest says {meta['bytes']}")
                continue
            if trust_mtime and meta.get("mtime_ns") == st.st_mtime_ns:
                continue
            if cache is not None and cache.get(rel, st) == meta["sha256"]:
                continue
            digest = _digest_fd(fd)
            if digest != meta["sha256"]:
                yield rel, _Bad("altered")
            elif cache is not None:
                cache.put(rel, st, digest)
        finally:
            os.close(fd)
    for rel, kind in sorted(_walk(root)):
        if rel == MANIFEST or (rel in files and kind == "file"):
            continue
        if rel not in files:
            yield rel, _Bad("unexpected" if kind == "file" else kind)
        # a listed symlink or special file was reported above
    if cache is not None:
        cache.save()


class _HashCache:
    """Re-hashes of an input that matched its manifest, in ``<parent>/.<name>.hashes.json``.

    Only a cache: unreadable, corrupt or unwritable (a read-only store) means re-hashing again.
    An entry holds only while size, mtime, ctime and inode are unchanged.
    """

    def __init__(self, root: Path):
        self.path = root.parent / f".{root.name}.hashes.json"
        self.entries: dict[str, list] | None = None
        self.dirty = False

    @staticmethod
    def _stamp(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def _load(self) -> dict[str, list]:
        if self.entries is None:
            try:
                data = json.loads(_read_regular(self.path))
                self.entries = data if isinstance(data, dict) else {}
            except (_Bad, OSError, ValueError):
                self.entries = {}
        return self.entries

    def get(self, rel: str, st: os.stat_result) -> str | None:
        entry = self._load().get(rel)
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == self._stamp(st):
            return entry[4]
        return None

    def put(self, rel: str, st: os.stat_result, digest: str) -> None:
        self._load()[rel] = [*self._stamp(st), digest]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            with os.fdopen(fd, "w") as f:
                json.dump(self.entries, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.debug("%s: hash cache not written (%s)", self.path, e)
            tmp.unlink(missing_ok=True)


def verify_input(path: str | Path) -> dict[str, Any]:
    """Check an artifact about to be read against its manifest; return the manifest.

    Sizes always; content hashes when a file's mtime or size differs from the manifest's (or the
    manifest predates recorded mtimes). Raises IrflowError naming the first altered, missing or
    unexpected file, so a step never turns altered bytes into a clean-looking artifact. Steps get
    this for every input given to :class:`Artifact`; call it for any other artifact a step reads.
    """
    path = Path(path)
    manifest = read_manifest(path)
    problem = _manifest_problem(manifest)
    if problem:
        raise IrflowError(problem, where=path / MANIFEST)
    for rel, bad in _check_files(path, manifest["files"], trust_mtime=True):
        where = path / MANIFEST if bad.kind == "unsafe" else path / rel
        if bad.kind == "unsafe":
            raise IrflowError(f"unsafe file name {rel!r} in the manifest (not followed)", where=where)
        raise IrflowError(bad.describe(), where=where)
    return manifest


def verify(path: str | Path) -> list[str]:
    """Re-hash an artifact's files; return one line per problem (empty when intact).

    Never raises for a damaged artifact and never reads outside it: a missing or corrupt manifest,
    a manifest entry that leaves the directory, symlinks and special files are reported, not followed.
    """
    path = Path(path)
    if not path.is_dir():  # the path given is the user's choice (it may be a link); its contents are not
        return ["not a directory" if path.exists() else "does not exist"]
    try:
        manifest = read_manifest(path)
    except IrflowError as e:
        return [e.message]
    problem = _manifest_problem(manifest)
    if problem:
        return [problem]
    return [f"{bad.kind if bad.kind != 'size' else 'altered'}: {rel}"
            + {"symlink": " (not followed)", "unsafe": " (outside the artifact, not followed)",
               "special": " (not a regular file)"}.get(bad.kind, "")
            for rel, bad in _check_files(path, manifest["files"], trust_mtime=False)]


# ---------------------------------------------------------------------------------- environment errors


def _no_space(exc: BaseException) -> OSError | RuntimeError | None:
    """The exception in ``exc``'s chain that says the disk is full (libraries wrap errno differently)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        if isinstance(e, (OSError, RuntimeError)) and "No space left on device" in str(e):
            return e
        e = e.__cause__ or e.__context__
    return None


class Artifact:
    """One step's output directory, written atomically.

    The recommended form is :meth:`build`::

        art = Artifact(store, "encode", params, {"prepared": path}, expect=out)
        art.build(work)   # work(art) writes into art.tmp and returns stats; skipped when complete

    It serialises concurrent runs of one key, reuses what another process published meanwhile, and
    turns a full disk or an unwritable store into one IrflowError. The older form ``with
    Artifact(...) as art:`` yields the writable temporary directory ``art.tmp``; on a clean exit the
    manifest (with file digests) is written and the directory is renamed to ``art.path``; on an
    exception the temporary directory is removed and nothing is published.

    Every input directory is verified against its manifest when the Artifact is constructed.
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
        self.store = Path(store)
        self.input_paths = {name: Path(p) for name, p in (inputs or {}).items()}
        self.input_keys = {name: verify_input(p)["key"] for name, p in self.input_paths.items()}
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
        self._lock_fd: int | None = None

    @property
    def complete(self) -> bool:
        return is_complete(self.path)

    # ------------------------------------------------------------------------------------ build

    def build(self, work: Callable[[Artifact], Mapping[str, Any] | None]) -> Artifact:
        """Run ``work(self)`` into ``self.tmp`` and publish, unless the artifact is already complete.

        Holds the key's lock while working, so a second identical run waits and then reuses the
        first one's artifact instead of computing it again.
        """
        if self.complete:
            return self
        with self._locked():
            if self.complete:
                log.info("%s: published by another process meanwhile; reusing it", self.path)
                return self
            with self:
                stats = work(self)
                if stats is not None:
                    if not isinstance(stats, Mapping):
                        raise TypeError(f"work must return a dict of stats, not {type(stats).__name__}")
                    self.stats.update(stats)
        return self

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``<store>/.locks/<step>.<key>.lock`` (re-entrant within this object)."""
        if self._lock_fd is not None:
            yield
            return
        locks = self.store / LOCK_DIR
        name = f"{self.step}.{self.key}.lock"
        try:
            self._mkdir(locks)
            dfd = os.open(locks, _OPEN_DIR)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise IrflowError("the lock folder is not a directory (a symlink or file is in the way)",
                                  where=locks) from None
            raise self._env_error(e, locks) from e
        try:
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
            except PermissionError:  # another user's lock file in a shared store: flock needs no write
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise IrflowError("the lock file is a symlink (not followed)", where=locks / name) from None
            raise self._env_error(e, locks / name) from e
        finally:
            os.close(dfd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IrflowError("the lock file is not a regular file", where=locks / name)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("%s: another process is building this artifact; waiting for it", self.path)
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            os.close(fd)  # releases the lock

    # --------------------------------------------------------------------- context-manager form

    def __enter__(self) -> Artifact:
        parent = self.path.parent
        self._mkdir(parent)
        _remove_orphans(parent, self.key)
        self.tmp = parent / f".{self.key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            self.tmp.mkdir()
        except OSError as e:
            raise self._env_error(e, parent) from e
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not isinstance(exc, IrflowError) and (full := _no_space(exc)) is not None:
                raise self._full_error(full) from exc
            return
        try:
            self._publish()
        except BaseException as e:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not isinstance(e, IrflowError) and (full := _no_space(e)) is not None:
                raise self._full_error(full) from e
            raise

    def _publish(self) -> None:
        assert self.tmp is not None
        files = {}
        for rel, kind in sorted(_walk(self.tmp)):
            if kind != "file":
                what = "symbolic link" if kind == "symlink" else "special file"
                raise IrflowError(f"the step wrote a {what} {rel!r}; an artifact holds only regular files",
                                  where=self.path)
            st = (self.tmp / rel).stat()
            files[rel] = {"sha256": file_digest(self.tmp / rel), "bytes": st.st_size,
                          "mtime_ns": st.st_mtime_ns}  # inputs whose size and mtime match skip the re-hash
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
            "resources": _resources_used(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": sys.argv,
            "versions": library_versions(),
            "files": files,
        }
        with open(self.tmp / MANIFEST, "w") as f:
            f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a full disk shows here, not as an empty manifest after the rename
        with self._locked():
            if is_complete(self.path):  # another run published it first: identical by construction
                shutil.rmtree(self.tmp)
                log.info("%s: published by another process meanwhile; reusing it", self.path)
                return
            if self.path.is_symlink():
                self.path.unlink()
            elif self.path.exists():
                # Snakemake creates an output's parent folder before the job runs; an incomplete
                # leftover (no manifest) is replaced.
                shutil.rmtree(self.path)
            try:
                os.replace(self.tmp, self.path)
            except OSError as e:
                # a publisher that does not share our lock (another host, an older irflow) won the race
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and is_complete(self.path):
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    log.info("%s: published by another process meanwhile; reusing it", self.path)
                    return
                raise

    # ------------------------------------------------------------------------------ errors

    def _mkdir(self, d: Path) -> None:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise self._env_error(e, d) from e

    def _env_error(self, e: OSError, path: Path) -> IrflowError:
        """One line for a store the step cannot write: full, read-only, not a directory."""
        if _no_space(e) is not None:
            return IrflowError(f"no space left on device: {path}")
        if isinstance(e, (FileExistsError, NotADirectoryError)) or e.errno in (errno.EEXIST, errno.ENOTDIR):
            blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), self.store)
            return IrflowError("the store must be a directory, but this is a file", where=blocker)
        if e.errno == errno.EROFS:
            return IrflowError(f"the store is on a read-only file system (cannot create {path})",
                               where=self.store)
        if e.errno in (errno.EACCES, errno.EPERM):
            return IrflowError(f"the store is not writable (permission denied: {path})", where=self.store)
        return IrflowError(f"cannot write to the store ({e.strerror}: {path})", where=self.store)

    def _full_error(self, e: BaseException) -> IrflowError:
        where = self.path
        name = getattr(e, "filename", None)
        if isinstance(name, (str, os.PathLike)) and self.tmp is not None:
            p = Path(name)
            try:
                where = self.path / p.relative_to(self.tmp)  # the file it was writing, as it would be named
            except ValueError:
                where = p  # a file outside the artifact (a scratch folder): that disk is the full one
        return IrflowError(f"no space left on device: {where}")


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
