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


def trained_dense(**training):
    raw = base()
    x = raw["experiments"]["x"]
    x["split"] = {"seed": 1, "test": 10, "valid": 4}
    x["systems"]["rerank"] = {"type": "rerank", "first_stage": "bm25"}
    x["systems"]["tasb"] = {"type": "dense", "training": {
        "first_stage": "bm25", "teacher": "rerank", "stages": [{"objective": "margin-mse"}], **training}}
    return raw


def test_dense_training_is_checked():
    validate(trained_dense())
    with pytest.raises(IrflowError, match=r"stages\[0\]: objective dual needs a colbert: teacher"):
        validate(trained_dense(stages=[{"objective": "dual", "sampler": "tas-balanced"}]))
    with pytest.raises(IrflowError, match="training.teacher must name a rerank system"):
        validate(trained_dense(teacher="bm25"))
    with pytest.raises(IrflowError, match="first_stage must name a bm25 or untrained dense"):
        validate(trained_dense(first_stage="tasb"))
    with pytest.raises(IrflowError, match=r"training\.stages\[0\]\.sampler: Input should be .random., .tas. or .tas-balanced."):
        validate(trained_dense(stages=[{"sampler": "tas-balancd"}]))
    with pytest.raises(IrflowError, match="the ColBERT teacher trains with objective margin-mse"):
        validate(trained_dense(colbert={"stage": {"objective": "infonce"}}))
    raw = trained_dense()
    del raw["experiments"]["x"]["split"]
    with pytest.raises(IrflowError, match="add a split"):
        validate(raw)
    raw["experiments"]["x"]["systems"]["tasb"]["training"]["queries"] = "irds:msmarco-passage/train/judged"
    validate(raw)  # a separate training set needs no split of the evaluation queries
