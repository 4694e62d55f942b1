"""Indexes: dense (faiss, any ``index_factory`` string) and sparse (BM25 with bm25s).

Each index directory carries ``index.json`` with a ``type`` tag, checked when it is opened, so a
search never silently runs a dense query against a sparse index or vice versa.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import IrflowError

INDEX_INFO = "index.json"


def read_info(index_dir: Path) -> dict:
    f = Path(index_dir) / INDEX_INFO
    if not f.is_file():
        raise IrflowError("not an irflow index (no index.json)", where=index_dir)
    return json.loads(f.read_text())


def write_info(index_dir: Path, info: dict) -> None:
    (Path(index_dir) / INDEX_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
