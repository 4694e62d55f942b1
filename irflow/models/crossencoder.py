"""Cross-encoders: one relevance score per (query, document) pair.

Two heads share one interface:

* ``seqcls`` — ``AutoModelForSequenceClassification`` with one logit: every published re-ranker
  on the hub (``cross-encoder/ms-marco-MiniLM-L-6-v2``, monoT5-style heads aside) loads this way.
* ``cosine`` (irflow's default for a *sentence* encoder such as all-MiniLM-L6-v2) — query and
  document are encoded jointly, as in any cross-encoder, and the score is a learnt scale times the
  cosine of the mean of the query segment's last hidden states and the mean of the document
  segment's, plus a bias. all-MiniLM-L6-v2's CLS token and pooler were never trained: a fresh
  classifier on that CLS barely varies across pairs and, trained the usual way on a few thousand
  pairs, stays at the label-prior loss. Mean-pooled segments are what the encoder was trained to
  make comparable, so this head ranks sensibly before the first step and fine-tuning starts from
  there instead of from noise.
* ``mean`` — a linear head (zero-initialised) on the mean of all last hidden states.

With the ``cosine`` head the lower ``separate_layers`` transformer layers attend within each
segment only (query to query, document to document; positions restart at the document, token
types zero), the upper layers jointly — DeFormer / PreTTR-style late interaction. With all layers
separate the query's states are exactly the bi-encoder's, but the document's are not: its segment
has no [CLS] of its own (the one difference left), and every document state differs (real DL20 pair: cosine
0.30 here vs the bi-encoder's 0.58; nDCG@10 0.41 vs 0.61 on the tests' first DL20 slice), so
the score is only near the bi-encoder's; with none it is a plain joint encoding, whose
segment means are mixed by cross-attention and rank worse than the bi-encoder before training
(all-MiniLM-L6-v2 untrained, cranfield, 40 queries, BM25's top 30, nDCG@10: 0.317 joint, 0.283
with 5 of 6 layers separate, 0.342 with 4, 0.374 with all 6; BM25 0.343 — a single joint layer
on top of separate ones is the worst start, two are better than none). The default keeps the top
two layers joint: the re-ranker starts near the sentence encoder's ranking and fine-tuning learns
the query-document interaction there.

``document_cls`` (a stated choice, saved with the model) inserts a [CLS] at the start of the
document segment (token type 1, position 0): with it the document's tokens in the separate layers
see exactly what they see when the document is encoded alone, so with all layers separate the
untrained re-ranker *is* the mean-pooled bi-encoder (to 1e-5; the tests' first DL20 slice: 0.6138 for
both), and with the top layers joint it starts nearer to it (0.560 instead of 0.508 with four of
six separate).

A trained model is saved as an HF ``save_pretrained`` directory (safetensors), its tokenizer, the
head (``irflow_head.safetensors``) and ``irflow_model.json`` (family, head, max length, the key
of the artifact that made it), so any step loads it without flags.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..devices import amp, at_least_fp32
from ..errors import IrflowError
from .resolve import load_error, pretrained

CARD = "irflow_model.json"
HEAD = "irflow_head.safetensors"


def read_card(model: str) -> dict:
    p = Path(model)
    if (p / CARD).is_file():
        return json.loads((p / CARD).read_text())
    return {}


def _default_head(path: str, **kw) -> str:
    """seqcls for a published re-ranker (a sequence-classification checkpoint), else cosine."""
    from transformers import AutoConfig

    archs = AutoConfig.from_pretrained(path, trust_remote_code=False, **kw).architectures or []
    return "seqcls" if any(a.endswith("ForSequenceClassification") for a in archs) else "cosine"


class CrossEncoder(nn.Module):
    def __init__(self, model: str, head: str | None = None, max_length: int = 256,
                 separate_layers: int | None = None, document_cls: bool | None = None):
        super().__init__()
        from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        card = read_card(model)
        self.max_length = max_length
        path, kw = pretrained(model)
        try:
            self.head_type = head or card.get("head") or _default_head(path, **kw)
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, **kw)
            if self.head_type == "seqcls":
                self.backbone = AutoModelForSequenceClassification.from_pretrained(
                    path, num_labels=1, trust_remote_code=False, attn_implementation="sdpa", **kw)
            elif self.head_type in ("mean", "cosine"):
                self.backbone = AutoModel.from_pretrained(path, trust_remote_code=False, attn_implementation="sdpa",
                                                          **kw)
            else:
                raise IrflowError(f"unknown cross-encoder head {self.head_type!r} (cosine, mean or seqcls)")
        except IrflowError:
            raise
        except Exception as e:
            raise load_error(model, e) from e
        if document_cls and self.head_type != "cosine":
            raise IrflowError(f"document_cls applies to the cosine head's late interaction, not head {self.head_type!r}")
        self.separate_layers, self.document_cls = 0, False
        if self.head_type == "cosine":
            if "token_type_ids" not in self.tokenizer.model_input_names:
                raise IrflowError(f"head 'cosine' needs a tokenizer with segment ids; {model!r} has none: use head mean")
            n_layers = self.backbone.config.num_hidden_layers
            if separate_layers is None:  # a saved model keeps its own; a fresh head: all but the top two
                separate_layers = card.get("separate_layers", 0 if card else max(n_layers - 2, 0))
            if not 0 <= separate_layers <= n_layers:
                raise IrflowError(f"separate_layers must be in [0, {n_layers}], got {separate_layers}")
            self.separate_layers = int(separate_layers)
            self.document_cls = bool(card.get("document_cls", False) if document_cls is None else document_cls)
            if self.document_cls and not self.separate_layers:
                raise IrflowError("document_cls gives the document segment its own [CLS] in segment-separate "
                                  "layers: it needs separate_layers > 0")
            self.head = nn.Linear(1, 1)  # score = w * cos(q, d) + b
            nn.init.constant_(self.head.weight, 20.0)
            nn.init.zeros_(self.head.bias)
        elif self.head_type == "mean":
            self.head = nn.Linear(self.backbone.config.hidden_size, 1)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        if self.head_type in ("mean", "cosine"):
            head_file = Path(path) / HEAD
            if head_file.is_file():
                from safetensors.torch import load_file

                self.head.load_state_dict(load_file(str(head_file)))

    def tokenize(self, queries: list[str], docs: list[str]) -> dict:
        return self.tokenizer(queries, docs, truncation="longest_first", max_length=self.max_length,
                              padding=True, return_tensors="pt")

    def forward(self, **enc) -> torch.Tensor:
        if self.head_type == "seqcls":
            return at_least_fp32(self.backbone(**enc).logits.squeeze(-1))
        if self.head_type == "cosine" and self.separate_layers:
            if self.document_cls:
                enc = self.with_document_cls(enc)
            hidden = at_least_fp32(self._late_interaction(enc))
        else:
            hidden = at_least_fp32(self.backbone(**enc).last_hidden_state)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.head_type == "mean":
            return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).squeeze(-1)
        doc = enc["token_type_ids"].unsqueeze(-1).to(hidden.dtype) * mask
        query = mask - doc
        q = (hidden * query).sum(1) / query.sum(1).clamp(min=1)
        d = (hidden * doc).sum(1) / doc.sum(1).clamp(min=1)
        cos = torch.nn.functional.cosine_similarity(q, d, dim=-1)
        return self.head(cos.unsqueeze(-1)).squeeze(-1)

    def with_document_cls(self, enc) -> dict:
        """``[CLS] q [SEP] d [SEP]`` -> ``[CLS] q [SEP] [CLS] d [SEP]``, the second [CLS] in the document
        segment (token type 1): what the document's tokens attend to when it is encoded alone."""
        ids, am, tt = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
        b, n = ids.shape
        qlen = ((tt == 0) & (am == 1)).sum(1, keepdim=True)
        ar = torch.arange(n + 1, device=ids.device)[None, :].expand(b, n + 1)
        src = (ar - (ar > qlen).long()).clamp(max=n - 1)  # column j takes old column j (j < qlen) or j - 1
        at = ar == qlen
        return {**enc, "input_ids": ids.gather(1, src).masked_fill(at, self.tokenizer.cls_token_id),
                "attention_mask": am.gather(1, src).masked_fill(at, 1),
                "token_type_ids": tt.gather(1, src).masked_fill(at, 1)}

    def _late_interaction(self, enc) -> torch.Tensor:
        """Last hidden states with segment-separate attention in the lower ``separate_layers``."""
        bb = self.backbone
        ids, am, tt = enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]
        b, n = ids.shape
        qlen = ((tt == 0) & (am == 1)).sum(1, keepdim=True)  # [CLS] query [SEP]
        ar = torch.arange(n, device=ids.device)[None, :].expand(b, n)
        # the document's tokens at 1.. as if encoded alone (its own [CLS], when given, at 0)
        pos = torch.where(tt == 1, ar - qlen + (0 if self.document_cls else 1), ar)
        h = bb.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(tt), position_ids=pos)
        valid = am.bool()[:, None, None, :]  # [B, 1, 1, N]: keys that exist
        same = (tt[:, :, None] == tt[:, None, :])[:, None]  # [B, 1, N, N]: same segment
        low = torch.finfo(h.dtype).min
        joint = torch.zeros(b, 1, 1, n, dtype=h.dtype, device=h.device).masked_fill(~valid, low)
        apart = torch.zeros(b, 1, n, n, dtype=h.dtype, device=h.device).masked_fill(~(valid & same), low)
        for i, layer in enumerate(bb.encoder.layer):
            out = layer(h, apart if i < self.separate_layers else joint.expand(b, 1, n, n))
            h = out[0] if isinstance(out, tuple) else out
        return h

    def head_parameters(self) -> list[nn.Parameter]:
        if self.head_type == "seqcls":
            return [p for n, p in self.backbone.named_parameters() if n.startswith(("classifier", "score"))]
        return list(self.head.parameters())

    def save(self, out: Path, card: dict) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        if self.head_type in ("mean", "cosine"):
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(out / HEAD))
        (out / CARD).write_text(json.dumps({"family": "cross-encoder", "head": self.head_type,
                                            "separate_layers": self.separate_layers,
                                            "document_cls": self.document_cls,
                                            "max_length": self.max_length, **card}, indent=2, sort_keys=True) + "\n")
        (out / "README.md").write_text(_model_card(self.head_type, self.separate_layers, self.max_length,
                                                   self.document_cls))


def _model_card(head: str, separate_layers: int, max_length: int, document_cls: bool = False) -> str:
    """How to use a saved re-ranker outside irflow: directly with ``seqcls``; the other heads are irflow's own."""
    if head == "seqcls":
        use = """A standard sequence-classification checkpoint with one logit per (query, passage) pair:

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("path/to/this/dir")
tok = AutoTokenizer.from_pretrained("path/to/this/dir")
scores = model(**tok(["a query"], ["a passage"], truncation=True, return_tensors="pt")).logits[:, 0]
# or: sentence_transformers.CrossEncoder("path/to/this/dir").predict([("a query", "a passage")])
```
"""
    else:
        how = ("w * cosine(mean of the query segment's last hidden states, mean of the passage segment's) + b"
               if head == "cosine" else "a linear layer on the mean of all last hidden states")
        late = (f" The lower {separate_layers} layers attend within each segment only (late interaction,"
                " positions restarting at the passage" + (", which has its own [CLS]" if document_cls else "")
                + "), which no standard class reproduces."
                if head == "cosine" and separate_layers else "")
        use = f"""**irflow-only head ({head}).** The score is {how}; the head's weights are in
`{HEAD}`.{late} `AutoModel.from_pretrained` loads the backbone, but scores need irflow:

```python
from irflow.models.crossencoder import CrossEncoder, score_pairs
model = CrossEncoder("path/to/this/dir")
scores = score_pairs(model, ["a query"], ["a passage"], device="cpu")
```
"""
    return f"# irflow cross-encoder ({head} head)\n\nTrained by irflow with inputs of at most {max_length} tokens; " \
           f"`{CARD}` records the training artifact.\n\n{use}"


def score_pairs(model: CrossEncoder, queries: list[str], docs: list[str], *, device: str, autocast_dtype=None,
                max_tokens: int = 16384, max_batch: int = 256, progress=None) -> list[float]:
    """Scores in input order; pairs are batched by a token budget over length-sorted inputs.

    ``progress(n)`` is called after each batch with its number of pairs."""
    import numpy as np

    from .biencoder import length_batches

    lengths = np.array([len(q) + len(d) for q, d in zip(queries, docs)], dtype=np.int64)
    # characters are a cheap proxy for tokens when ordering; the budget is applied in tokens below
    approx_tokens = np.minimum(lengths // 4 + 3, model.max_length)
    out = np.zeros(len(queries), dtype=np.float64)
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    model.eval()
    with torch.inference_mode(), amp(dev_type, autocast_dtype):
        for idx in length_batches(approx_tokens, max_tokens, max_batch):
            enc = model.tokenize([queries[i] for i in idx], [docs[i] for i in idx])
            enc = {k: v.to(device) for k, v in enc.items()}
            out[idx] = at_least_fp32(model(**enc)).cpu().numpy()
            if progress is not None:
                progress(len(idx))
    return out.tolist()
