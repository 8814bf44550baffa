"""emblab's collab recipes against Surprise's SVD (default and tuned) on the same MovieLens split, side by side.

    python -m emblab.bench.surprise data.root=DIR [data.source=ml-100k] [data.split=u1,u2,u3,u4,u5,random]
        [experiments=collab_surprise,collab_ml100k,collab_ml100k_side] [seeds=42,43,44]
        [out=logs/bench/surprise] [threads=1] [update_md=BENCHMARKS.md]

Any rating set the DataModule reads (data.source: ml-100k, ml-latest-small, ml-25m, ...; data.root: its
folder or zip) and any of its splits: `random` (a seeded 80/20) for every source, GroupLens's canonical
u1..u5 for ml-100k. Every model trains on the DataModule's training tensors and is scored on its
validation tensors (the split's test part), so all see exactly the same ratings. emblab runs each
experiment through the normal Trainer with validation off (neither side looks at the test part while
fitting); Surprise runs SVD() with its defaults (100 factors, 20 epochs) and SVD tuned as
`tuned_factors`, `tuned_epochs`, `tuned_reg`. Every model is fitted once per seed (Surprise's
random_state, emblab's seed), the models taking turns seed by seed so that a change in the machine's
speed hits all alike: RMSE as mean and standard deviation over the seeds, fit seconds (trainer.fit's
wall time against SVD.fit's) as their median, after one untimed warm-up fit of each kind. Needs the
bench extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emblab.bench import FIT_ONLY, choose, compose, fit_and_predict, markdown_table, new_result, prepare, write_result
from emblab.core import cli
from emblab.core.errors import ConfigError
from emblab.data.movielens import CANONICAL_SPLITS, SOURCES


@dataclass
class DataArgs:
    source: str = "ml-100k"
    root: str | None = None  # the rating set's folder (or zip); None: data/movielens/<source>
    split: str = "u1,u2,u3,u4,u5,random"  # one or more, comma-separated


@dataclass
class Args:
    data: DataArgs = field(default_factory=DataArgs)
    experiments: str = "collab_surprise,collab_ml100k,collab_ml100k_side"
    seeds: str = "42,43,44"
    tuned_factors: int = 50
    tuned_epochs: int = 40
    tuned_reg: float = 0.05
    out: str = "logs/bench/surprise"
    threads: int = 1
    update_md: str | None = None


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    err = pred - truth
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def data_overrides(data: DataArgs, split: str) -> list[str]:
    split_args = (
        ["data.split=random", "data.val_frac=0.2", "data.split_seed=42"]
        if split == "random"
        else [f"data.split={split}"]
    )
    return [f"data.source={data.source}", *([f"data.root={data.root}"] if data.root else []), *split_args]


def run_emblab(experiment: str, data: DataArgs, split: str, seed: int, threads: int, out: Path):

    cfg = compose(
        [
            f"experiment={experiment}",
            *data_overrides(data, split),
            f"seed={seed}",
            f"torch_threads={threads}",
            *FIT_ONLY,
        ],
        out / experiment / split,
    )
    torch.set_num_threads(threads)
    dm, pred, ratings, fit_s = fit_and_predict(cfg)
    return dm, {**scores(pred.numpy(), ratings.numpy()), "fit_s": fit_s}


def run_svd(dm, rating_range, seed: int, **params) -> dict:
    try:
        import pandas as pd
        from surprise import SVD, Dataset, Reader
    except ImportError:
        raise ConfigError("the Surprise benchmark needs scikit-surprise: pip install -e '.[bench]'") from None
    users, items, ratings = (t.numpy() for t in dm.train_ds.tensors)
    df = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    trainset = Dataset.load_from_df(df, Reader(rating_scale=tuple(rating_range))).build_full_trainset()
    algo = SVD(random_state=seed, **params)
    start = time.perf_counter()
    algo.fit(trainset)
    fit_s = time.perf_counter() - start
    vu, vi, vr = (t.numpy() for t in dm.val_ds.tensors)
    pred = np.array([algo.predict(int(u), int(i)).est for u, i in zip(vu, vi, strict=False)])
    return {**scores(pred, vr), "fit_s": fit_s}


def summary(runs: list[dict]) -> dict:
    rmse = [r["rmse"] for r in runs]
    return {
        "rmse": statistics.mean(rmse),
        "rmse_sd": statistics.stdev(rmse) if len(rmse) > 1 else 0.0,
        "rmse_runs": rmse,
        "mae": statistics.mean(r["mae"] for r in runs),
        "fit_s": statistics.median(r["fit_s"] for r in runs),
        "fit_s_runs": [r["fit_s"] for r in runs],
    }


def fmt(s: dict) -> str:
    return f"{s['rmse']:.4f} ± {s['rmse_sd']:.4f}"


def markdown(result: dict) -> str:
    rows = []
    for split, r in result["splits"].items():
        d, t = r["svd"], r["svd_tuned"]
        for exp, e in r["emblab"].items():
            rows.append(
                [
                    split,
                    exp,
                    fmt(e),
                    fmt(d),
                    fmt(t),
                    f"{e['fit_s']:.2f}",
                    f"{d['fit_s']:.2f}",
                    f"{t['fit_s']:.2f}",
                    "yes" if e["rmse"] < t["rmse"] else "no",
                    "yes" if e["fit_s"] <= d["fit_s"] else "no",
                ]
            )
    for exp, m in result["mean_over_splits"].items():
        rows.append(
            [
                f"mean of {m['splits']}",
                exp,
                f"{m['rmse']:.4f}",
                f"{m['svd']:.4f}",
                f"{m['svd_tuned']:.4f}",
                "",
                "",
                "",
                "",
                "",
            ]
        )
    tuned = result["svd_tuned_params"]
    return markdown_table(
        result,
        f"scikit-surprise {result['surprise_version']}, data.source={result['source']}, "
        f"seeds {result['seeds']}; RMSE mean ± sd over the seeds, fit s their median; SVD tuned: "
        f"{tuned['n_factors']} factors, {tuned['n_epochs']} epochs, reg_all {tuned['reg_all']}",
        [
            "split",
            "emblab experiment",
            "emblab RMSE",
            "SVD RMSE",
            "SVD tuned RMSE",
            "emblab fit s",
            "SVD fit s",
            "SVD tuned fit s",
            "below tuned SVD",
            "fit ≤ SVD's",
        ],
        rows,
    )


def main(args: Args) -> dict:
    data = args.data
    if data.source not in SOURCES:
        raise ConfigError(f"data.source={data.source!r}: expected one of {', '.join(SOURCES)}")
    known = ("random", *CANONICAL_SPLITS) if data.source == "ml-100k" else ("random",)
    splits = choose(data.split, known, f"data.split (data.source={data.source})")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    experiments = [e for e in args.experiments.split(",") if e]
    if not seeds or not experiments:
        raise ConfigError("seeds and experiments each need at least one value")
    out = prepare(args.out, args.threads)
    import surprise

    tuned = {"n_factors": args.tuned_factors, "n_epochs": args.tuned_epochs, "reg_all": args.tuned_reg}
    rating_range = SOURCES[data.source].rating_range
    start = time.perf_counter()
    result = new_result(
        "emblab.bench.surprise",
        args.threads,
        surprise_version=surprise.__version__,
        source=data.source,
        seeds=seeds,
        svd_tuned_params=tuned,
        splits={},
    )
    # untimed warm-up: the first Trainer and the first SVD of a process pay one-time costs (lazy
    # imports, first kernels, allocator growth) that no later fit pays
    dm, _ = run_emblab(experiments[0], data, splits[0], seeds[0], args.threads, out / "warmup")
    run_svd(dm, rating_range, seeds[0])
    for split in splits:
        runs = {exp: [] for exp in experiments} | {"svd": [], "svd_tuned": []}
        for s in seeds:  # one seed of every model after another: a change in the machine's speed hits all alike
            for exp in experiments:
                dm, r = run_emblab(exp, data, split, s, args.threads, out)
                runs[exp].append(r)
            runs["svd"].append(run_svd(dm, rating_range, s))
            runs["svd_tuned"].append(run_svd(dm, rating_range, s, **tuned))
        row = {
            "emblab": {exp: summary(runs[exp]) for exp in experiments},
            "svd": summary(runs["svd"]),
            "svd_tuned": summary(runs["svd_tuned"]),
        }
        row["n_train"], row["n_test"] = len(dm.train_ds), len(dm.val_ds)
        result["splits"][split] = row
        line = " | ".join(f"{exp} {fmt(e)} in {e['fit_s']:.2f} s" for exp, e in row["emblab"].items())
        print(
            f"{split}: {line} | SVD {fmt(row['svd'])} in {row['svd']['fit_s']:.2f} s | SVD tuned "
            f"{fmt(row['svd_tuned'])} in {row['svd_tuned']['fit_s']:.2f} s",
            flush=True,
        )
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    canon = [s for s in splits if s != "random"]
    if len(canon) > 1:
        rows = [result["splits"][s] for s in canon]
        result["mean_over_splits"] = {
            exp: {
                "splits": ",".join(canon),
                "rmse": statistics.mean(r["emblab"][exp]["rmse"] for r in rows),
                "svd": statistics.mean(r["svd"]["rmse"] for r in rows),
                "svd_tuned": statistics.mean(r["svd_tuned"]["rmse"] for r in rows),
            }
            for exp in experiments
        }
    else:
        result["mean_over_splits"] = {}
    rows = result["splits"].values()
    result["lower_rmse_than_tuned_svd"] = {
        exp: all(r["emblab"][exp]["rmse"] < r["svd_tuned"]["rmse"] for r in rows) for exp in experiments
    }
    result["max_fit_ratio"] = {
        exp: max(r["emblab"][exp]["fit_s"] / r["svd"]["fit_s"] for r in rows) for exp in experiments
    }
    write_result(out, "surprise", result, markdown(result), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
