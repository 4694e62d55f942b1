"""Dataset specs and the streams they yield.

A spec is one string:

* ``irds:<id>`` — any ir_datasets id (``irds:vaswani``, ``irds:msmarco-passage/trec-dl-2019/judged``);
* ``synthetic:<name>`` — the embedded generator (:mod:`irflow.data.synthetic`), no network;
* a local file, bare or as ``file:<path>``: JSONL (``doc_id``/``query_id``/``id`` + ``text``),
  TSV (``id<TAB>text``) or TREC qrels (``qid iter docid rel``).

Specs are keyed by identity (:func:`identity`): an ir_datasets id by the id, a file by the hash of
its content, a synthetic set by its generator parameters. Everything streams: nothing here holds
a corpus in memory, and nothing trusts ``docs_count()``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import IrflowError
from ..textfile import text_lines

Kind = Literal["docs", "queries", "qrels"]
_ID_FIELDS = {"docs": ("doc_id", "docno", "id", "_id"), "queries": ("query_id", "qid", "id", "_id")}


@dataclass(frozen=True)
class DatasetSpec:
    scheme: Literal["irds", "synthetic", "file"]
    value: str

    @property
    def raw(self) -> str:
        return f"{self.scheme}:{self.value}"


def parse_spec(spec: str) -> DatasetSpec:
    spec = spec.strip()
    for scheme in ("irds", "synthetic", "file"):
        if spec.startswith(scheme + ":"):
            value = spec[len(scheme) + 1 :]
            if not value:
                raise IrflowError(f"empty dataset spec {spec!r}")
            return DatasetSpec(scheme, value)  # type: ignore[arg-type]
    if "/" in spec or "." in Path(spec).name:
        return DatasetSpec("file", spec)
    raise IrflowError(
        f"unrecognised dataset spec {spec!r}: use irds:<ir_datasets id>, synthetic:<name> or a file path"
    )


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def identity(spec: str | DatasetSpec) -> dict:
    """What a dataset is, for artifact keys: never a path or a mtime, so moving a file keeps keys."""
    s = parse_spec(spec) if isinstance(spec, str) else spec
    if s.scheme == "irds":
        return {"irds": s.value}
    if s.scheme == "synthetic":
        from .synthetic import get_spec

        return {"synthetic": get_spec(s.value).identity()}
    p = Path(s.value)
    if p.is_dir():
        raise IrflowError("is a directory, expected a file", where=p)
    if not p.is_file():
        raise IrflowError("no such file", where=p)
    st = p.stat()
    return {"file_sha256": _file_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)}


# ---------------------------------------------------------------------------------------- ir_datasets


def _irds(dataset_id: str):
    import ir_datasets

    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise IrflowError(f"unknown ir_datasets id {dataset_id!r}", where=f"irds:{dataset_id}") from None


def _irds_stream(dataset_id: str, kind: Kind):
    """Stream one kind of record of an ir_datasets id.

    Only the requested kind is looked up: ir_datasets datasets lack the ``<kind>_iter`` attributes
    of what they do not provide (``msmarco-passage`` has no ``queries_iter``), so touching the others
    raises ``AttributeError``.
    """
    ds = _irds(dataset_id)
    has = getattr(ds, f"has_{kind}", None)
    if has is None or not has():
        provides = [k for k in ("docs", "queries", "qrels") if getattr(ds, f"has_{k}", lambda: False)()]
        what = ", ".join(provides) if provides else "nothing irflow reads"
        raise IrflowError(f"ir_datasets id {dataset_id!r} provides no {kind} (it provides {what})",
                          where=f"irds:{dataset_id}")
    try:
        yield from getattr(ds, f"{kind}_iter")()
    except IrflowError:
        raise
    except Exception as e:  # ir_datasets raises RuntimeError/ConnectionError/OSError on failed downloads
        raise _irds_read_error(dataset_id, kind, e) from e


def _download_failure(e: BaseException) -> str | None:
    """``url: reason`` of an ir_datasets download failure, or None when ``e`` is something else."""
    import requests

    if isinstance(e, RuntimeError) and e.args and e.args[0] == "All download sources failed":
        errors = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], list) else []
        if errors:
            source, err = errors[0]
            return f"{getattr(source, 'url', source)}: {type(err).__name__}"
        return "all download sources failed"
    if isinstance(e, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
        url = getattr(getattr(e, "request", None), "url", None)
        return f"{url}: {type(e).__name__}" if url else type(e).__name__
    return None


def _irds_read_error(dataset_id: str, kind: str, e: Exception) -> IrflowError:
    """One line: which id, that it is not available offline (when a download failed), and why."""
    where = f"irds:{dataset_id}"
    failed = _download_failure(e)
    if failed is not None:
        home = os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")
        return IrflowError(
            f"{kind} are not available offline: not in IR_DATASETS_HOME={home} and could not be "
            f"downloaded (no network?) ({failed})",
            where=where,
        )
    detail = " ".join(str(e).split())[:300]
    return IrflowError(f"ir_datasets could not read {kind}: {type(e).__name__}: {detail}", where=where)


def _text_of(record) -> str:
    if hasattr(record, "default_text"):
        return record.default_text()
    return getattr(record, "text")


# ---------------------------------------------------------------------------------------- local files


def _file_texts(path: Path, kind: Kind) -> Iterator[tuple[str, str, int]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        for n, line in text_lines(path):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise IrflowError(f"malformed JSON ({e.msg})", where=path, line=n) from e
            if not isinstance(obj, dict):
                raise IrflowError("expected a JSON object", where=path, line=n)
            key = next((k for k in _ID_FIELDS[kind] if k in obj), None)
            if key is None or "text" not in obj:
                raise IrflowError(f"needs fields {_ID_FIELDS[kind][0]!r} and 'text'", where=path, line=n)
            rid, text, title = obj[key], obj["text"], obj.get("title")
            # str() of null or of a list would store "None" / "['a', 'b']" as if it were the record.
            if not isinstance(rid, (str, int)) or isinstance(rid, bool):
                raise IrflowError(f"{key!r} must be a string or an integer, found {_json_type(rid)}",
                                  where=path, line=n)
            for name, value in (("text", text), ("title", title)):
                if not isinstance(value, str) and not (name == "title" and value is None):
                    raise IrflowError(f"{name!r} must be a string, found {_json_type(value)}", where=path, line=n)
            if title:
                text = f"{title} {text}"
            yield str(rid), text, n
    else:
        for n, line in text_lines(path):
            cols = line.split("\t")
            if len(cols) != 2:
                raise IrflowError(f"expected 2 tab-separated columns (id, text), found {len(cols)}", where=path, line=n)
            yield cols[0], cols[1], n


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _check_id(rid: str, what: str, where: str, line: int | None) -> None:
    """Ids are single tokens: run files and qrels are whitespace-separated, so an id with a space or a
    control character would be published here and only fail (or silently shift columns) later."""
    if not rid:
        raise IrflowError(f"empty {what} id", where=where, line=line)
    if " " in rid or not rid.isprintable():  # non-printable: every other whitespace and control character
        raise IrflowError(f"{what} id {rid!r} contains whitespace or a control character (ids must be "
                          "single tokens: run and qrels files are whitespace-separated)", where=where, line=line)


def _file_qrels(path: Path) -> Iterator[tuple[str, str, int, int]]:
    for n, line in text_lines(path):
        cols = line.split()
        if len(cols) != 4:
            raise IrflowError(f"expected 4 columns (qid iter docid rel), found {len(cols)}", where=path, line=n)
        try:
            rel = int(cols[3])
        except ValueError as e:
            raise IrflowError(f"relevance {cols[3]!r} is not an integer", where=path, line=n) from e
        yield cols[0], cols[2], rel, n


# ---------------------------------------------------------------------------------------- public streams


def iter_texts(spec: str, kind: Literal["docs", "queries"]) -> Iterator[tuple[str, str, str | None, int | None]]:
    """Yield ``(id, text, where, line)``; ``where``/``line`` locate the record for error messages.

    Every id is checked to be a non-empty single token (:func:`_check_id`), whatever the source.
    """
    s = parse_spec(spec)
    what = {"docs": "doc", "queries": "query"}[kind]
    if s.scheme == "irds":
        for r in _irds_stream(s.value, kind):
            rid = r.doc_id if kind == "docs" else r.query_id
            _check_id(rid, what, s.raw, None)
            yield rid, _text_of(r), None, None
    elif s.scheme == "synthetic":
        from .synthetic import generate

        coll = generate(s.value)
        for rid, text in coll.docs if kind == "docs" else coll.queries:
            _check_id(rid, what, s.raw, None)
            yield rid, text, None, None
    else:
        p = Path(s.value)
        for rid, text, n in _file_texts(p, kind):
            _check_id(rid, what, str(p), n)
            yield rid, text, str(p), n


def iter_qrels(spec: str) -> Iterator[tuple[str, str, int]]:
    s = parse_spec(spec)
    if s.scheme == "irds":
        for q in _irds_stream(s.value, "qrels"):
            yield q.query_id, q.doc_id, int(q.relevance)
    elif s.scheme == "synthetic":
        from .synthetic import generate

        yield from generate(s.value).qrels
    else:
        for qid, did, rel, _ in _file_qrels(Path(s.value)):
            yield qid, did, rel
