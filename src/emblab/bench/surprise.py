"""EmbeddingDotBias against Surprise's SVD on the same MovieLens 100K folds, side by side.

    python -m emblab.bench.surprise [root=../shared/data/movielens/ml-100k] [folds=u1,u2,u3,u4,u5,random]
                                    [out=logs/bench/surprise] [threads=1] [update_md=BENCHMARKS.md]

Folds: GroupLens's canonical u1..u5 (.base / .test) and a seeded random 80/20 of u.data. Both models
train on the DataModule's training tensors and are scored on its validation tensors (the fold's test
part), so they see exactly the same ratings. emblab runs `experiment=collab_surprise` through the
normal Trainer (validation off: neither side validates while fitting); its fit seconds are
trainer.fit's wall time, Surprise's are SVD().fit's (defaults: 100 factors, 20 epochs), each the median
of `reps` fits. Needs the
bench extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from emblab import cli
from emblab.bench import choose, compose, markdown_table, new_result, prepare, write_result
from emblab.errors import ConfigError


@dataclass
class Args:
    root: str = "../shared/data/movielens/ml-100k"  # the GroupLens ml-100k folder (or zip)
    folds: str = "u1,u2,u3,u4,u5,random"
    out: str = "logs/bench/surprise"
    threads: int = 1
    reps: int = 3  # fits per model and fold; fit seconds are their median (the scores do not change)
    update_md: str | None = None


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = pred - truth
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def run_emblab(fold: str, root: str, out: Path):
    from emblab.train import build_data_and_model, build_trainer

    split = ["data.split=random", "data.val_frac=0.2", "data.split_seed=42"] if fold == "random" else [f"data.split={fold}"]
    cfg = compose(["experiment=collab_surprise", "data.source=ml-100k", f"data.root={root}", *split, "logger=csv",
                   "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0", "~callbacks.progress_bar",
                   "~callbacks.model_summary"], out / fold)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm, model = build_data_and_model(cfg)
    trainer, _ = build_trainer(cfg, model=model)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - start
    users, items, ratings = dm.val_ds.tensors
    model.eval()
    with torch.no_grad():
        pred = model(users, items).numpy()
    return dm, {**scores(pred, ratings.numpy()), "fit_s": fit_s}


def run_svd(dm) -> dict:
    try:
        import pandas as pd
        from surprise import SVD, Dataset, Reader
    except ImportError:
        raise ConfigError("the Surprise benchmark needs scikit-surprise: pip install -e '.[bench]'") from None
    users, items, ratings = (t.numpy() for t in dm.train_ds.tensors)
    df = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    trainset = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
    algo = SVD(random_state=0)
    start = time.perf_counter()
    algo.fit(trainset)
    fit_s = time.perf_counter() - start
    vu, vi, vr = (t.numpy() for t in dm.val_ds.tensors)
    pred = np.array([algo.predict(int(u), int(i)).est for u, i in zip(vu, vi)])
    return {**scores(pred, vr), "fit_s": fit_s}


def markdown(result: dict) -> str:
    rows = []
    for fold, r in result["folds"].items():
        e, s = r["emblab"], r["svd"]
        rows.append([fold, f"{e['rmse']:.4f}", f"{s['rmse']:.4f}", f"{e['mae']:.4f}", f"{s['mae']:.4f}",
                     f"{e['fit_s']:.2f}", f"{s['fit_s']:.2f}", f"{e['fit_s'] / s['fit_s']:.2f}x",
                     "yes" if e["rmse"] < s["rmse"] else "no"])
    return markdown_table(result, f"scikit-surprise {result['surprise_version']}",
                          ["fold", "emblab RMSE", "SVD RMSE", "emblab MAE", "SVD MAE", "emblab fit s", "SVD fit s",
                           "fit ratio", "lower RMSE"], rows)


def main(args: Args) -> dict:
    folds = choose(args.folds, ("u1", "u2", "u3", "u4", "u5", "random"), "folds")
    out = prepare(args.out, args.threads)
    import surprise

    start = time.perf_counter()
    result = new_result("emblab.bench.surprise", args.threads, surprise_version=surprise.__version__, folds={})
    for fold in folds:
        embs = [run_emblab(fold, args.root, out) for _ in range(args.reps)]
        dm = embs[0][0]
        emb = {**embs[0][1], "fit_s": statistics.median(e["fit_s"] for _, e in embs)}
        svds = [run_svd(dm) for _ in range(args.reps)]
        svd = {**svds[0], "fit_s": statistics.median(s["fit_s"] for s in svds)}
        result["folds"][fold] = {"emblab": emb, "svd": svd}
        print(f"{fold}: emblab RMSE {emb['rmse']:.4f} in {emb['fit_s']:.2f} s | SVD RMSE {svd['rmse']:.4f} "
              f"in {svd['fit_s']:.2f} s", flush=True)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    rows = result["folds"].values()
    result["lower_rmse_on_every_fold"] = all(r["emblab"]["rmse"] < r["svd"]["rmse"] for r in rows)
    result["max_fit_ratio"] = max(r["emblab"]["fit_s"] / r["svd"]["fit_s"] for r in rows)
    write_result(out, "surprise", result, markdown(result), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
