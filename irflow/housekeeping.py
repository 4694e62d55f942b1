"""Store housekeeping: what is in the store (``irflow ls``) and what no experiment needs (``irflow gc``).

The store only grows: every changed parameter leaves the old artifact behind, and killed runs leave
temporary (``.<key>.tmp-<pid>-*``) and checkpoint (``.ckpt-<key>``) folders. What is still needed
is decided by the current config's plan: an artifact is *live* when some experiment's evaluation
node reaches it through its inputs. Everything else may go, except

* an artifact whose per-key lock (``<store>/.locks/<step>.<key>.lock``, held by
  :meth:`irflow.store.Artifact.build` while it builds) is taken: a running job is writing it;
* a temporary folder whose process is alive (the pid is in its name);
* the checkpoint of a live training that is not complete yet (it is what a resume continues from).

Deleting an artifact first renames it out of place (one atomic step that un-publishes it: the
manifest disappears with the rename), then removes the files, all while holding the key's lock so
that a job starting meanwhile waits and then rebuilds instead of reading half-deleted files.
A job that only *reads* an artifact takes no lock; ``gc`` never removes what the current plan
needs, so only a job of another config reading an artifact this config dropped can lose it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import IrflowError
from .store import LOCK_DIR, MANIFEST, STEP_VERSIONS, KEY_LENGTH

_HEX = set("0123456789abcdef")


def _is_key(name: str) -> bool:
    return len(name) == KEY_LENGTH and set(name) <= _HEX


def load_plan(config_file: str | Path, store: str | Path):
    """The plan of a config file (validated as the Snakefile validates it)."""
    import yaml

    from .config import validate
    from .plan import build

    path = Path(config_file)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise IrflowError(f"cannot read the config ({e.strerror})", where=path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise IrflowError(f"not valid YAML{at} ({getattr(e, 'problem', None) or 'parse error'})", where=path) from None
    return build(validate(raw or {}, source=str(path)), store=str(store))


def usage(plan) -> dict[tuple[str, str], set[str]]:
    """``(step, key)`` of every node an experiment needs -> the experiments that need it.

    Walks each experiment's evaluation node and its inputs recursively: the plan holds nodes of
    every experiment in one table, so a node shared by two experiments lists both.
    """
    used: dict[tuple[str, str], set[str]] = {}
    for name, root in plan.experiments.items():
        stack, seen = [root], set()
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            used.setdefault((n.step, n.key), set()).add(name)
            stack.extend(n.inputs.values())
    return used


def _size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (symlinks not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


@contextmanager
def try_key_lock(store: Path, step: str, key: str, *, create: bool = True) -> Iterator[bool]:
    """Hold the key's build lock if nobody does (yields True), else yield False at once.

    With ``create`` the lock file is created when missing (as :class:`irflow.store.Artifact` does),
    so a job that starts while we delete waits for us instead of racing. Without it (a dry run,
    which must work on a read-only store) a missing lock file means nobody holds the lock.
    """
    path = store / LOCK_DIR / f"{step}.{key}.lock"
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            except PermissionError:  # another user's lock file in a shared store: flock needs no write
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        else:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                yield True
                return
    except OSError as e:
        raise IrflowError(f"cannot open the build lock ({e.strerror})", where=path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Entry:
    """One thing in the store: an artifact, an incomplete artifact folder, a temp or checkpoint folder."""

    kind: str  # artifact | incomplete | tmp | ckpt
    step: str
    key: str
    path: Path
    bytes: int
    age_s: float
    made_by: str = ""
    experiments: list[str] = field(default_factory=list)
    why_kept: str = ""  # empty: garbage


def _summary(params: dict, width: int = 60) -> str:
    """``k=v`` of a manifest's parameters, shortest values first-come, cut to ``width`` characters."""
    parts = []
    for k, v in params.items():
        if isinstance(v, dict) and set(v) == {"input"}:
            continue  # a model given as an artifact: the input is shown by its key chain
        s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        parts.append(f"{k}={s}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"


def scan(store: str | Path, plan) -> list[Entry]:
    """Every artifact, incomplete folder, temporary and checkpoint folder of the store's step folders."""
    store = Path(store)
    used = usage(plan)
    now = time.time()
    out: list[Entry] = []
    for step in sorted(STEP_VERSIONS):
        d = store / step
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir(), key=lambda p: p.name):
            name = p.name
            try:
                age = now - p.lstat().st_mtime
            except OSError:
                continue
            if _is_key(name) and p.is_dir() and not p.is_symlink():
                exps = sorted(used.get((step, name), ()))
                if (p / MANIFEST).is_file():
                    try:
                        m = json.loads((p / MANIFEST).read_text())
                        made = _summary(m.get("params", {}))
                        created = m.get("created")
                        if created:
                            from datetime import datetime

                            age = now - datetime.fromisoformat(created).timestamp()
                    except (OSError, ValueError, TypeError):
                        made = "(unreadable manifest)"
                    out.append(Entry("artifact", step, name, p, _size(p), age, made, exps))
                else:
                    out.append(Entry("incomplete", step, name, p, _size(p), age, "(no manifest)", exps))
            elif name.startswith(".ckpt-"):
                key = name[len(".ckpt-"):].split(".", 1)[0]
                out.append(Entry("ckpt", step, key, p, _size(p), age, "(checkpoint)",
                                 sorted(used.get((step, key), ()))))
            elif name.startswith(".") and (".tmp-" in name or ".gc-" in name):  # a killed run or gc
                key = name[1:].split(".tmp-" if ".tmp-" in name else ".gc-", 1)[0]
                out.append(Entry("tmp", step, key, p, _size(p), age, "(temporary)"))
            elif name.startswith(".") and name.endswith(".hashes.json") and _is_key(name[1:-len(".hashes.json")]):
                continue  # an artifact's hash cache: goes with its artifact
    return out


def _judge(store: Path, e: Entry, entries: list[Entry]) -> str:
    """Why ``e`` is kept (empty when it is garbage), before looking at locks."""
    if e.kind == "artifact":
        return "used" if e.experiments else ""
    if e.kind == "incomplete":
        return "planned" if e.experiments else ""  # Snakemake made the folder of a job to come
    if e.kind == "tmp":
        try:
            marker = ".tmp-" if ".tmp-" in e.path.name else ".gc-"
            pid = int(e.path.name.split(marker, 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            return "unknown process"
        return f"process {pid} alive" if _pid_alive(pid) else ""
    if e.kind == "ckpt":
        complete = (store / e.step / e.key / MANIFEST).is_file()
        return "resumable" if e.experiments and not complete else ""
    return "unknown"


def judge(store: str | Path, entries: list[Entry]) -> list[Entry]:
    store = Path(store)
    for e in entries:
        e.why_kept = _judge(store, e, entries)
    return entries


def _remove(path: Path) -> None:
    """Un-publish atomically (rename out of place), then delete."""
    if path.is_dir() and not path.is_symlink():
        gone = path.with_name(f".{path.name}.gc-{os.getpid()}")
        try:
            os.rename(path, gone)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            raise
        shutil.rmtree(gone, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass
class GcResult:
    removed: list[Entry]
    busy: list[Entry]
    kept: list[Entry]

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.removed)


def collect_garbage(store: str | Path, plan, *, delete: bool) -> GcResult:
    """What ``irflow gc`` removes (``delete``) or would remove (a dry run: nothing is touched).

    An entry whose key's lock is held by a running job is reported busy and kept, in a dry run too
    (the lock is only tried, never waited for).
    """
    store = Path(store)
    entries = judge(store, scan(store, plan))
    removed, busy, kept = [], [], []
    for e in entries:
        if e.why_kept:
            kept.append(e)
            continue
        with try_key_lock(store, e.step, e.key, create=delete) as free:
            if not free:
                e.why_kept = "locked by a running job"
                busy.append(e)
                continue
            if e.kind == "tmp" and _judge(store, e, entries):  # its process started meanwhile? (pid reuse)
                kept.append(e)
                continue
            if delete:
                try:
                    _remove(e.path)
                    if e.kind == "artifact":
                        (e.path.parent / f".{e.key}.hashes.json").unlink(missing_ok=True)
                        (e.path.parent / f".ckpt-{e.key}.train_log.jsonl").unlink(missing_ok=True)
                except OSError as err:
                    raise IrflowError(f"cannot remove ({err.strerror})", where=e.path) from err
            removed.append(e)
    return GcResult(removed, busy, kept)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_age(s: float) -> str:
    s = max(0.0, s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit}"
    return f"{s:.0f}s"
