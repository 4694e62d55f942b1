"""Shared fixtures: an offline ir_datasets home, a scratch workflow directory, CLI runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("IRFLOW_SHARED", ROOT.parent / "shared"))
IRFLOW = [sys.executable, "-m", "irflow.cli"]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture(scope="session")
def irds_home(tmp_path_factory) -> Path:
    """A writable copy of the shared offline ir_datasets home (vaswani, cranfield)."""
    src = SHARED / "data" / "irds_home"
    if not src.is_dir():
        pytest.skip(f"no offline ir_datasets home at {src}")
    dst = tmp_path_factory.mktemp("irds") / "irds_home"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture()
def env(irds_home, tmp_path) -> dict:
    """Environment of subprocesses: offline, with the copied ir_datasets home."""
    e = dict(os.environ)
    e.update(IR_DATASETS_HOME=str(irds_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             IRFLOW_GPU_LOCK_DIR=str(tmp_path / "gpu-locks"), TOKENIZERS_PARALLELISM="false",
             PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return e


def irflow(args, env, cwd, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(IRFLOW + [str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"irflow {args} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


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
