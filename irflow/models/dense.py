"""The trainable single-vector bi-encoder (the dense retriever that ``irflow train`` fine-tunes).

Inference lives in :mod:`irflow.models.biencoder` (pre-tokenised, length-bucketed, bf16 weights);
this is the same encoder as an ``nn.Module`` with gradients: one shared backbone for queries and
passages, mean or CLS pooling, optional L2 normalisation — exactly what ``irflow encode`` computes
with the same ``pooling``/``normalize``, so the retriever that was validated is the one that is
indexed.

A normalised encoder scores with cosines in [-1, 1] while teacher margins are logits of any size;
``scale`` multiplies the student's scores *during training only* (ranking is invariant to it).
``None`` means 1 for unnormalised models (TAS-B's dot product) and 20 for normalised ones
(sentence-transformers' default for cosine in-batch losses).

Saved as an HF ``save_pretrained`` directory plus ``irflow_model.json`` (family, pooling,
normalize, the key of the artifact that made it) and the sentence-transformers module files
(``modules.json``, ``1_Pooling``, ``2_Normalize``...), so that ``SentenceTransformer(dir)`` gives
the vectors ``irflow encode`` gives and ``AutoModel.from_pretrained(dir)`` loads the backbone: a
trained retriever is usable outside irflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .biencoder import pool
from .crossencoder import CARD, read_card
from .resolve import load_error, pretrained


class DenseModel(nn.Module):
    family = "bi-encoder"

    def __init__(self, model: str, pooling: str = "mean", normalize: bool = True, scale: float | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path, kw = pretrained(model)
        try:
            self.backbone = AutoModel.from_pretrained(path, trust_remote_code=False, attn_implementation="sdpa", **kw)
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
        except Exception as e:
            raise load_error(model, e) from e
        self.pooling, self.normalize = pooling, normalize
        self.scale = float(scale) if scale is not None else (20.0 if normalize else 1.0)
        self.card = read_card(model)
        self.max_seq_length = _max_seq_length(path if not kw else None, self.backbone.config, self.tokenizer)

    def tokenize(self, texts: list[str], max_length: int) -> dict:
        return self.tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")

    def encode(self, input_ids, attention_mask) -> torch.Tensor:
        """Float32 vectors [N, dim] (pooled in float32 whatever the forward pass ran in)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling, self.normalize)

    # the scorer interface shared with ColBERT (irflow.train.biencoder uses only these two)
    def score_pairs(self, q: torch.Tensor, q_mask, d: torch.Tensor, d_mask) -> torch.Tensor:
        return self.scale * (q * d).sum(-1)

    def inbatch_scores(self, q: torch.Tensor, q_mask, d: torch.Tensor, d_mask) -> torch.Tensor:
        return self.scale * q @ d.T

    def head_parameters(self) -> list[nn.Parameter]:
        return []

    def save(self, out: Path, card: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        (out / CARD).write_text(json.dumps({"family": self.family, "pooling": self.pooling,
                                            "normalize": self.normalize, **card}, indent=2, sort_keys=True) + "\n")
        write_sentence_transformers_files(out, self.pooling, self.normalize, self.backbone.config.hidden_size,
                                          self.max_seq_length)


def _max_seq_length(local: str | None, config, tokenizer) -> int:
    """The source model's sentence-transformers max length, else what its positions and tokenizer allow."""
    if local is not None:
        f = Path(local) / "sentence_bert_config.json"
        if f.is_file():
            try:
                return int(json.loads(f.read_text())["max_seq_length"])
            except (ValueError, KeyError, TypeError):
                pass
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    return int(min([x for x in limits if isinstance(x, int) and 0 < x < 1_000_000] or [512]))


def write_sentence_transformers_files(out: Path, pooling: str, normalize: bool, dim: int, max_seq_length: int) -> None:
    """The module files that make ``SentenceTransformer(out)`` = Transformer -> Pooling (-> Normalize)."""
    import transformers

    out = Path(out)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "1_Pooling").mkdir(exist_ok=True)
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": int(max_seq_length), "do_lower_case": False},
        "1_Pooling/config.json": {"word_embedding_dimension": int(dim), "pooling_mode_cls_token": pooling == "cls",
                                  "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
                                  "pooling_mode_mean_sqrt_len_tokens": False},
        "config_sentence_transformers.json": {
            "__version__": {"transformers": transformers.__version__, "pytorch": torch.__version__},
            "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine" if normalize else "dot"},
    }
    for name, data in files.items():
        (out / name).write_text(json.dumps(data, indent=2) + "\n")
    (out / "README.md").write_text(
        f"""# irflow bi-encoder

A single-vector retriever trained by irflow ({pooling} pooling{", L2-normalised" if normalize else ""},
{"cosine" if normalize else "dot-product"} similarity). `irflow_model.json` records the training artifact.

```python
from sentence_transformers import SentenceTransformer
model = SentenceTransformer("path/to/this/dir")      # the vectors `irflow encode` computes
vectors = model.encode(["a query", "a passage"])

from transformers import AutoModel                    # the backbone alone (pool it yourself)
backbone = AutoModel.from_pretrained("path/to/this/dir")
```
""")
