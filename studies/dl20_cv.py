"""Fine-tuning recipes for the bi-encoder, compared by 4-fold cross-validation on msmarco-dl20.

Eight validation queries cannot tell a recipe that generalises from noise, so this study trains on
24 of the 32 non-test queries and evaluates on the other 8, four times (every non-test query is
evaluated once). The 22 test queries choose nothing: their nDCG@10 is printed as the mean over the
four folds' models, for the README's table ("Cross-validated recipe search"). The measure is
nDCG@10 of re-ranking ``dense-zeroshot``'s top 30 with the trained model's cosine, which agrees with
the full search for the zero-shot model (0.6787 against 0.6792 on the test queries).

Run from the workflow root after ``snakemake --cores 2 results/msmarco-dl20/ndcg.tsv``, with
``IR_DATASETS_HOME`` as for the run; each recipe is a JSON object (loss: infonce | ranknet | lce;
lr; bq: queries per step; G: passages per query; optional wise: a list of weights a, each also
evaluated as the weight-space mix (1 - a) * start + a * trained, WiSE-FT, Wortsman et al. 2022)::

    python studies/dl20_cv.py '{"loss": "infonce", "lr": 1e-5, "bq": 4, "G": 8}' \\
                              '{"loss": "ranknet", "lr": 1e-5, "bq": 4, "G": 16}'

About 10 minutes per recipe on 2 CPU cores. Not a test: it measures a research question.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

EXPERIMENT, DEPTH = "msmarco-dl20", 30


def _walk(node, step):
    """The first node of ``step`` upstream of ``node`` (breadth first)."""
    todo = [node]
    while todo:
        n = todo.pop(0)
        if n.step == step:
            return n
        todo += list(n.inputs.values())
    raise SystemExit(f"no {step} step upstream of {node.step}")


def checkpoints(text: str) -> list[int]:
    """``--steps`` ("10,20,40") as the sorted distinct step counts to evaluate after."""
    return sorted({int(x) for x in text.split(",")})


class Study:
    def __init__(self, config: str):
        import yaml

        from irflow.config import validate
        from irflow.data.sources import iter_qrels
        from irflow.models.dense import DenseModel
        from irflow.plan import build
        from irflow.prepare import load_texts
        from irflow.preprocess import load_examples
        from irflow.rerank import DocTexts
        from irflow.trec import dedupe_qrels, read_run

        cfg = validate(yaml.safe_load(Path(config).read_text()), source=config)
        self.plan = plan = build(cfg, store="results/store")  # the hybrid study walks it too
        systems = plan.systems[EXPERIMENT]
        train = _walk(systems["dense"], "train")  # a stage of the trained dense system
        pre = plan.path(_walk(train, "preprocess"))
        self.examples = {e.qid: e for part in ("train", "valid") for e in load_examples(pre, part)}
        qrels, _ = dedupe_qrels(iter_qrels(cfg.experiments[EXPERIMENT].queries))
        self.qrels = qrels
        self.test = sorted(set(qrels) - set(self.examples))
        run, _ = read_run(plan.path(systems["dense-zeroshot"]) + "/run.trec")
        self.run = {q: [d for d, _ in docs[:DEPTH]] for q, docs in run.items() if q in qrels}
        qids, texts = load_texts(plan.path(train.inputs["queries"]))
        self.queries = dict(zip(qids, texts))
        ids = sorted({d for ds in self.run.values() for d in ds} | {d for e in self.examples.values()
                                                                     for d in e.grades})
        self.docs = dict(zip(ids, DocTexts(plan.path(train.inputs["docs"]), ids=ids).texts(ids)))
        self.zeroshot = DenseModel("all-MiniLM-L6-v2").eval()  # mean pooling, cosine, scale 20

    @staticmethod
    def embed(model, texts: list[str], max_length: int, grad: bool = False) -> torch.Tensor:
        """The bi-encoder's vectors under bf16 autocast (as irflow encodes on this CPU)."""
        b = model.tokenize(texts, max_length)
        with torch.inference_mode(not grad), torch.autocast("cpu", dtype=torch.bfloat16):
            return model.encode(b["input_ids"], b["attention_mask"])

    def ndcg(self, model, qids) -> dict[str, float]:
        import ir_measures

        model.eval()
        docs = sorted({d for q in qids for d in self.run[q]})
        dv = torch.cat([self.embed(model, [self.docs[d] for d in docs[i:i + 64]], 200)
                        for i in range(0, len(docs), 64)])
        qv = self.embed(model, [self.queries[q] for q in qids], 64)
        row = {d: i for i, d in enumerate(docs)}
        scored = [ir_measures.ScoredDoc(q, d, float(qv[i] @ dv[row[d]])) for i, q in enumerate(qids)
                  for d in self.run[q]]
        qrels = [ir_measures.Qrel(q, d, g) for q in qids for d, g in self.qrels[q].items()]
        return {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, scored)}

    def train(self, model, qids: list[str], recipe: dict, steps: int, rng: random.Random, opt) -> None:
        from irflow.train.losses import make_loss

        model.train()
        loss_fn = None if recipe["loss"] == "infonce" else make_loss(recipe["loss"])
        for _ in range(steps):
            batch = rng.sample(qids, recipe["bq"])
            groups = []
            for q in batch:
                g = self.examples[q].grades
                pos = sorted(d for d in g if g[d] >= 2)
                if recipe["loss"] == "infonce":  # one positive against judged grade-0 passages
                    neg = sorted(d for d in g if g[d] == 0)
                    groups.append([rng.choice(pos)] + rng.sample(neg, min(recipe["G"] - 1, len(neg))))
                else:  # judged passages of every grade, at least one positive
                    group = rng.sample(sorted(g), min(recipe["G"], len(g)))
                    if not any(g[d] >= 2 for d in group):
                        group[0] = rng.choice(pos)
                    groups.append(group)
            qv = self.embed(model, [self.queries[q] for q in batch], 30, grad=True)
            dv = self.embed(model, [self.docs[d] for grp in groups for d in grp], 200, grad=True)
            s = model.inbatch_scores(qv, None, dv, None)
            starts = np.cumsum([0] + [len(grp) for grp in groups])
            if loss_fn is None:
                loss = torch.nn.functional.cross_entropy(s, torch.as_tensor(starts[:-1]))
            else:
                width = max(len(grp) for grp in groups)
                scores = torch.zeros(len(batch), width)
                target = torch.zeros(len(batch), width)
                mask = torch.zeros(len(batch), width, dtype=torch.bool)
                for i, (q, grp) in enumerate(zip(batch, groups)):
                    scores[i, :len(grp)] = s[i, starts[i]:starts[i + 1]]
                    target[i, :len(grp)] = torch.tensor([float(self.examples[q].grades[d]) for d in grp])
                    mask[i, :len(grp)] = True
                loss = loss_fn(scores, target, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def mix(self, model, a: float):
        """WiSE-FT: the weights (1 - a) * start + a * trained, a model between the two."""
        mixed = copy.deepcopy(self.zeroshot)
        start, trained = self.zeroshot.state_dict(), model.state_dict()
        mixed.load_state_dict({k: (1 - a) * v + a * trained[k] if v.is_floating_point() else v
                               for k, v in start.items()})
        return mixed

    def cross_validate(self, recipe: dict, steps: list[int], folds: int = 4, seed: int = 7) -> None:
        order = sorted(self.examples)
        random.Random(seed).shuffle(order)
        parts = [sorted(order[i::folds]) for i in range(folds)]
        rows = defaultdict(list)
        for held in parts:
            model = copy.deepcopy(self.zeroshot)
            opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=0.01)
            rng, done = random.Random(42), 0
            for c in steps:
                self.train(model, sorted(set(order) - set(held)), recipe, c - done, rng, opt)
                done = c
                rows[c].append((self.ndcg(model, held), self.ndcg(model, self.test)))
                for a in recipe.get("wise", []):
                    mixed = self.mix(model, a)
                    rows[f"{c}, wise {a}"].append((self.ndcg(mixed, held), self.ndcg(mixed, self.test)))
        for c, r in rows.items():
            cv = np.mean([v for fold, _ in r for v in fold.values()])
            test = np.mean([np.mean(list(t.values())) for _, t in r])
            print(json.dumps(recipe), f"steps {c}: CV {cv:.4f}, test (mean of the fold models) {test:.4f}",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipes", nargs="+", type=json.loads, help="JSON recipes (see the module docstring)")
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--steps", default="10,20,40", help="evaluate after these many steps (comma-separated)")
    args = ap.parse_args()
    torch.manual_seed(0)
    study = Study(args.config)
    nontest = sorted(study.examples)
    cv = np.mean(list(study.ndcg(study.zeroshot, nontest).values()))
    test = np.mean(list(study.ndcg(study.zeroshot, study.test).values()))
    print(f"zero-shot: CV {cv:.4f}, test {test:.4f} ({len(nontest)} non-test, {len(study.test)} test queries)",
          flush=True)
    for recipe in args.recipes:
        study.cross_validate(recipe, checkpoints(args.steps))


if __name__ == "__main__":
    main()
