"""Config validation names the offending key; the shipped config is valid."""

from pathlib import Path

import pytest
import yaml

from irflow.config import validate
from irflow.errors import IrflowError

ROOT = Path(__file__).resolve().parents[1]


def base():
    return {"experiments": {"x": {"corpus": "synthetic:tiny", "queries": "synthetic:tiny",
                                  "systems": {"bm25": {"type": "bm25"}, "dense": {"type": "dense"}}}}}


def test_shipped_config_is_valid():
    cfg = validate(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    assert {"demo", "vaswani", "cranfield", "dl19", "dl20"} <= set(cfg.experiments)


def test_unknown_key_is_named():
    raw = base()
    raw["experiments"]["x"]["systems"]["dense"]["poolng"] = "mean"
    with pytest.raises(IrflowError, match=r"experiments\.x\.systems\.dense\.poolng: unknown key"):
        validate(raw)


def test_wrong_type_is_named():
    raw = base()
    raw["experiments"]["x"]["systems"]["dense"]["shards"] = "four"
    with pytest.raises(IrflowError, match=r"experiments\.x\.systems\.dense\.shards: .*integer"):
        validate(raw)


def test_unknown_system_type_and_bad_references():
    raw = base()
    raw["experiments"]["x"]["systems"]["f"] = {"type": "fusion", "runs": ["bm25", "nope"]}
    with pytest.raises(IrflowError, match="unknown system 'nope'"):
        validate(raw)
    raw = base()
    raw["experiments"]["x"]["systems"]["s"] = {"type": "splade"}
    with pytest.raises(IrflowError, match=r"experiments\.x\.systems\.s"):
        validate(raw)
