"""Does a collab recipe hold as the data grows? A grid of regularisation strength x epochs at several
sizes of one rating set, and where the recipe lands against each size's best grid point.

    python -m emblab.bench.collab_size root=DIR [source=ml-100k] [split=random]
        [sizes=r25,r50,r100,u25,u50] [variants=reg,wd] [seeds=42] [out=logs/bench/collab_size]
        [threads=1] ['overrides=[model.reg_power=1]'] [update_md=BENCHMARKS.md]

Sizes: rNN keeps NN % of the ratings, uNN NN % of the users with all their ratings (data.subsample,
data.subsample_users; seeded, before the split, so every grid point of a size sees the same ratings).
Variants are recipes with the knob their grid varies:
  reg  experiment=collab_ml100k as it is: the per-rating penalty model.reg (x0.5, x1, x2), epochs
       (0.6x, 1x, 1.6x, 2.4x of the recipe's);
  wd   the recipe before it (AdamW lr 5e-3, decoupled weight decay 0.2, no reg, 5 epochs):
       model.optim.weight_decay and epochs over the same multiples of its own values.
Every fit runs the normal Trainer with validation off and is scored once at the end on the split's
validation ratings (RMSE), mean over `seeds`. A variant holds at a size when its recipe point is
within `tolerance` of that size's best grid point.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from emblab.bench import FIT_ONLY, choose, compose, fit_and_predict, markdown_table, new_result, prepare, write_result
from emblab.core import cli
from emblab.core.errors import ConfigError

# the knob each variant's grid varies, and the overrides that make the variant from the recipe
VARIANTS = {
    "reg": ("model.reg", []),
    "wd": (
        "model.optim.weight_decay",
        [
            "model.reg=0",
            "model.optim.name=adamw",
            "model.optim.lr=5e-3",
            "model.optim.weight_decay=0.2",
            "trainer.max_epochs=5",
        ],
    ),
}


@dataclass
class Args:
    root: str | None = None  # the rating set's folder (or zip); None: data/movielens/<source>
    source: str = "ml-100k"
    split: str = "random"
    experiment: str = "collab_ml100k"
    overrides: list[str] = field(default_factory=list)  # on the recipe, e.g. [model.reg_power=1,model.reg=2]
    sizes: str = "r25,r50,r100,u25,u50"
    variants: str = "reg,wd"
    seeds: str = "42"
    knob_multiples: str = "0.5,1,2"  # the grid: these multiples of the recipe's knob ...
    epoch_multiples: str = "0.6,1,1.6,2.4"  # ... and of its epochs (rounded); 1 keeps the recipe in the grid
    tolerance: float = 0.005
    out: str = "logs/bench/collab_size"
    threads: int = 1
    update_md: str | None = None


def size_overrides(size: str) -> list[str]:
    """r25 -> 25 % of the ratings; u50 -> 50 % of the users."""
    kind, pct = size[:1], size[1:]
    if kind not in ("r", "u") or not pct.isdigit() or not 0 < int(pct) <= 100:
        raise ConfigError(f"sizes: {size!r} is not rNN (NN % of the ratings) or uNN (NN % of the users)")
    key = "data.subsample" if kind == "r" else "data.subsample_users"
    return [f"{key}={int(pct) / 100}"]


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def fit_and_score(overrides: list[str], out: Path) -> dict:
    """Fit the config the overrides describe (validation off) and score it on its validation ratings."""
    cfg = compose([*overrides, *FIT_ONLY], out)
    if cfg.get("torch_threads"):
        torch.set_num_threads(cfg.torch_threads)
    dm, pred, ratings, fit_s = fit_and_predict(cfg)
    return {
        "rmse": float(((pred - ratings) ** 2).mean().sqrt()),
        "fit_s": fit_s,
        "n_train": len(dm.train_ds),
        "n_users": len(dm.user_ids),
        "n_items": len(dm.item_ids),
    }


def grid(recipe_knob: float, recipe_epochs: int, knob_multiples, epoch_multiples) -> tuple[list[float], list[int]]:
    knobs = sorted({round(recipe_knob * m, 6) for m in {1.0, *knob_multiples}})
    epochs = sorted({max(1, round(recipe_epochs * m)) for m in {1.0, *epoch_multiples}})
    return knobs, epochs


def run_variant(name: str, base: list[str], sizes: list[str], seeds: list[int], out: Path, args: Args) -> dict:
    knob, extra = VARIANTS[name]
    cfg = compose([*base, *extra], out / "compose")
    recipe_knob, recipe_epochs = float(OmegaConf.select(cfg, knob)), int(cfg.trainer.max_epochs)
    knobs, epochs = grid(recipe_knob, recipe_epochs, floats(args.knob_multiples), floats(args.epoch_multiples))
    result = {
        "knob": knob,
        "overrides": extra,
        "recipe": {"knob": recipe_knob, "epochs": recipe_epochs},
        "knobs": knobs,
        "epochs": epochs,
        "sizes": {},
    }
    for size in sizes:
        cells, info = {}, {}
        for k in knobs:
            for e in epochs:
                runs = [
                    fit_and_score(
                        [*base, *extra, *size_overrides(size), f"{knob}={k}", f"trainer.max_epochs={e}", f"seed={s}"],
                        out / name / size,
                    )
                    for s in seeds
                ]
                cells[f"{k}|{e}"] = {
                    "rmse": statistics.mean(r["rmse"] for r in runs),
                    "fit_s": statistics.median(r["fit_s"] for r in runs),
                }
                info = {key: runs[0][key] for key in ("n_train", "n_users", "n_items")}
        best_key = min(cells, key=lambda c: cells[c]["rmse"])
        recipe = cells[f"{recipe_knob}|{recipe_epochs}"]
        bk, be = best_key.split("|")
        row = {
            **info,
            "cells": cells,
            "best": {"knob": float(bk), "epochs": int(be), "rmse": cells[best_key]["rmse"]},
            "recipe_rmse": recipe["rmse"],
            "gap": recipe["rmse"] - cells[best_key]["rmse"],
        }
        row["holds"] = row["gap"] <= args.tolerance
        result["sizes"][size] = row
        print(
            f"{name} {size}: {info['n_train']} train ratings; best {knob}={bk} at {be} epochs "
            f"{row['best']['rmse']:.4f}; recipe {recipe['rmse']:.4f} (+{row['gap']:.4f})",
            flush=True,
        )
    return result


def markdown(result: dict) -> str:
    rows = []
    for name, v in result["variants"].items():
        for size, r in v["sizes"].items():
            grid_text = " ".join(f"{r['cells'][f'{k}|{e}']['rmse']:.4f}" for k in v["knobs"] for e in v["epochs"])
            rows.append(
                [
                    name,
                    size,
                    f"{r['n_train']:,}",
                    f"{r['best']['knob']:g} / {r['best']['epochs']}",
                    f"{r['best']['rmse']:.4f}",
                    f"{r['recipe_rmse']:.4f}",
                    f"+{r['gap']:.4f}",
                    "yes" if r["holds"] else "no",
                    grid_text,
                ]
            )
    names = "; ".join(
        f"{n}: {v['knob']} in {v['knobs']} x epochs {v['epochs']} (recipe {v['recipe']['knob']:g} / "
        f"{v['recipe']['epochs']})"
        for n, v in result["variants"].items()
    )
    return markdown_table(
        result,
        f"seeds {result['seeds']}; {names}; grid cells knob-major",
        [
            "variant",
            "size",
            "train ratings",
            "best knob / epochs",
            "best RMSE",
            "recipe RMSE",
            "gap",
            f"within {result['tolerance']}",
            "grid RMSE",
        ],
        rows,
    )


def main(args: Args) -> dict:
    sizes = [s for s in args.sizes.split(",") if s]
    for s in sizes:
        size_overrides(s)
    variants = choose(args.variants, tuple(VARIANTS), "variants")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = prepare(args.out, args.threads)
    if args.experiment != "collab_ml100k" and "wd" in variants:
        raise ConfigError("variants=wd is the collab_ml100k recipe before the per-rating penalty: use variants=reg")
    base = [
        f"experiment={args.experiment}",
        f"data.source={args.source}",
        f"data.split={args.split}",
        *([f"data.root={args.root}"] if args.root else []),
        f"torch_threads={args.threads}",
        *args.overrides,
    ]
    start = time.perf_counter()
    result = new_result("emblab.bench.collab_size", args.threads, seeds=seeds, tolerance=args.tolerance, variants={})
    for name in variants:
        result["variants"][name] = run_variant(name, base, sizes, seeds, out, args)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["holds"] = {n: all(r["holds"] for r in v["sizes"].values()) for n, v in result["variants"].items()}
    write_result(out, "collab_size", result, markdown(result), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
