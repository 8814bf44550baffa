"""Ranking quality beside rating error: Recall@k and NDCG@k on the validation split for the dot product,
EmbeddingNN and a most-popular baseline, in one run on the same split (emblab.models.metrics's protocol: each
validation user's candidates are the items they did not rate in training, relevant = rated >= 4).

    python -m emblab.bench.ranking [k=10] [split=random|time] [out=logs/bench/ranking] [threads=1]
                                   [overrides=[...]] [update_md=BENCHMARKS.md]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from emblab.bench import compose, markdown_table, new_result, prepare, write_result
from emblab.core import cli


@dataclass
class Args:
    k: int = 10
    split: str = "random"  # random (seeded 80/20) | time (each user's last 5 ratings)
    relevant: float = 4.0
    out: str = "logs/bench/ranking"
    threads: int = 1
    overrides: list[str] = field(default_factory=list)  # for both models, e.g. [data.source=ml-100k, ...]
    update_md: str | None = None


MODELS = {
    "EmbeddingDotBias (experiment=collab_ml100k)": ["experiment=collab_ml100k"],
    "EmbeddingNN (experiment=collab_ml100k model=collab_nn)": ["experiment=collab_ml100k", "model=collab_nn"],
}


def main(args: Args) -> dict:
    from emblab.models.metrics import popularity, ranking_scores
    from emblab.train import train
    from emblab.training.build import build

    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    result = new_result("emblab.bench.ranking", args.threads, k=args.k, split=args.split, rows={})
    common = [
        f"data.split={args.split}",
        *args.overrides,
        "logger=csv",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        f"callbacks.ranking.k={args.k}",
        f"callbacks.ranking.relevant={args.relevant}",
        "callbacks.ranking.max_users=null",
    ]
    for i, (name, overrides) in enumerate(MODELS.items()):
        m = train(compose([*overrides, *common], out / f"model{i}"))
        result["rows"][name] = {
            "recall": m[f"val/recall@{args.k}"]["final"],
            "ndcg": m[f"val/ndcg@{args.k}"]["final"],
            "rmse": m["val/rmse"]["final"],
            "seconds": m["train_wall_seconds"],
        }
        print(name, result["rows"][name], flush=True)
    _, dm, _, _ = build(compose(["experiment=collab_ml100k", *common], out / "popular"))
    tr, va = dm.train_ds.tensors, dm.val_ds.tensors
    pop = ranking_scores(
        popularity(tr[1], len(dm.item_ids)), tr[:2], va, len(dm.item_ids), args.k, args.relevant, max_users=None
    )
    result["rows"]["most popular (training counts)"] = {
        "recall": pop["recall"],
        "ndcg": pop["ndcg"],
        "rmse": None,
        "seconds": None,
    }
    result["users"] = pop["users"]
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    rows = [
        [
            name,
            f"{r['recall']:.4f}",
            f"{r['ndcg']:.4f}",
            "—" if r["rmse"] is None else f"{r['rmse']:.4f}",
            "—" if r["seconds"] is None else f"{r['seconds']:.1f}",
        ]
        for name, r in result["rows"].items()
    ]
    table = markdown_table(
        result,
        f"split={args.split}, {pop['users']} validation users with a rating >= {args.relevant:g}",
        ["model", f"Recall@{args.k}", f"NDCG@{args.k}", "val RMSE", "fit s"],
        rows,
    )
    write_result(out, "ranking", result, table, args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
