"""emblab beside fastai on the same data, split, batch and epochs, in one run: time and metric.

    python -m emblab.bench.peers [device=cpu|cuda] [families=collab,tabular] [quick=true] [threads=1]
                                 [epochs=N] ['overrides=[experiment=rossmann_kaggle]']
                                 [out=logs/bench/peers] [update_md=BENCHMARKS.md]

collab: embedded MovieLens 100K, the seeded 80/20 split of MovieLensDataModule, batch 64, 5 epochs of one
cycle, 50 factors, y_range (0, 5.5). fastai's `collab_learner` (its book's recipe: lr 5e-3, wd 0.1) gets
the very (user, item, rating) rows emblab trains and validates on; emblab runs `experiment=collab_ml100k`
unchanged. tabular: the Rossmann DataModule's own codes and normalised columns (generated sales unless
data.root says otherwise) for both, fastai's `tabular_learner` with the model's layers, dropouts,
embedding sizes, y_range, learning rate and decoupled weight decay, at the same batch and epochs
(`overrides=[experiment=rossmann_kaggle]` with EMBLAB_SHARED_DIR: the real Kaggle files and the
recipe's batch, lr and weight decay). Seconds are each fit's wall time. Needs the bench extra (fastai).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emblab.bench import choose, compose, markdown_table, new_result, prepare, write_result
from emblab.core import cli
from emblab.core.errors import ConfigError

FAMILIES = ("collab", "tabular")


@dataclass
class Args:
    device: str = "cpu"  # cpu | cuda
    families: str = ",".join(FAMILIES)
    quick: bool = False  # one epoch each (a smoke run of the command)
    epochs: int | None = None  # both sides; default collab 5, tabular 3
    threads: int = 1
    out: str = "logs/bench/peers"
    overrides: list[str] = field(default_factory=list)  # for emblab's side of every family
    update_md: str | None = None


def _fastai():
    try:
        import fastai  # noqa: F401
    except ImportError:
        raise ConfigError("fastai is not installed: pip install -e '.[bench]' (fastai is a bench extra)") from None


def _device_overrides(device: str) -> list[str]:
    return ["trainer.accelerator=gpu", "trainer.devices=1"] if device == "cuda" else ["trainer.accelerator=cpu"]


def run_emblab(overrides: list[str], out: Path, metric: str) -> dict:
    from emblab.train import train

    metrics = train(compose([*overrides, "logger=csv", "~callbacks.progress_bar", "~callbacks.model_summary"], out))
    return {"seconds": metrics["train_wall_seconds"], metric: metrics[f"val/{metric}"]["final"]}


def collab(args: Args, out: Path) -> dict:
    from fastai.collab import TabularCollab, collab_learner
    from fastai.data.block import TransformBlock
    from fastai.tabular.core import Categorify

    from emblab.training.build import build

    epochs = 1 if args.quick else args.epochs or 5
    base = [
        "experiment=collab_ml100k",
        f"trainer.max_epochs={epochs}",
        *_device_overrides(args.device),
        *args.overrides,
    ]
    _, dm, model, _ = build(compose(base, out / "split"))
    rows = [
        pd.DataFrame({"user": t[0].numpy(), "item": t[1].numpy(), "rating": t[2].numpy()})
        for t in (dm.train_ds.tensors, dm.val_ds.tensors)
    ]
    df = pd.concat(rows, ignore_index=True)
    n_train = len(rows[0])
    splits = (list(range(n_train)), list(range(n_train, len(df))))
    to = TabularCollab(
        df, [Categorify], cat_names=["user", "item"], y_names=["rating"], y_block=TransformBlock(), splits=splits
    )
    dls = to.dataloaders(path=str(out), bs=dm.batch_size, device=torch.device(args.device))
    learn = collab_learner(dls, n_factors=model.hparams.n_factors, y_range=tuple(model.net.y_range))
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(epochs, 5e-3, wd=0.1)
    seconds = time.perf_counter() - start
    with learn.no_bar():
        mse = float(learn.validate()[0])
    return {
        "data": f"embedded MovieLens 100K, seeded 80/20 ({n_train} / {len(df) - n_train} ratings), "
        f"batch {dm.batch_size}, {epochs} epochs",
        "emblab": run_emblab(base, out / "emblab", "rmse"),
        "fastai collab_learner": {"seconds": round(seconds, 2), "rmse": math.sqrt(mse)},
    }


def tabular(args: Args, out: Path) -> dict:
    from fastai.data.block import RegressionBlock
    from fastai.tabular.all import Categorify, TabularPandas, tabular_config, tabular_learner

    from emblab.training.build import build

    epochs = 1 if args.quick else args.epochs or 3
    base = ["model=mixed_input", f"trainer.max_epochs={epochs}", *_device_overrides(args.device), *args.overrides]
    _, dm, model, _ = build(compose(base, out / "split"))
    cat_names, n_cont = model.hparams.cat_names, model.hparams.n_cont

    def frame(ds):
        cats, conts, y = ds.tensors
        df = pd.DataFrame(cats.numpy(), columns=cat_names)
        for j in range(n_cont):
            df[f"cont{j}"] = conts[:, j].numpy()
        df["y"] = y.numpy()
        return df

    parts = [frame(dm.train_ds), frame(dm.val_ds)]
    df = pd.concat(parts, ignore_index=True)  # emblab's codes are the values fastai's Categorify sees
    splits = (list(range(len(parts[0]))), list(range(len(parts[0]), len(df))))
    to = TabularPandas(
        df,
        procs=[Categorify],
        cat_names=cat_names,
        cont_names=[f"cont{j}" for j in range(n_cont)],
        y_names="y",
        y_block=RegressionBlock(),
        splits=splits,
    )
    dls = to.dataloaders(bs=dm.batch_size, device=torch.device(args.device))
    h = model.hparams
    emb_szs = {c: e.embedding_dim for c, e in zip(cat_names, model.net.embs, strict=False)}
    learn = tabular_learner(
        dls,
        layers=list(h.layers),
        emb_szs=emb_szs,
        n_out=1,
        config=tabular_config(ps=list(h.ps), embed_p=h.emb_drop),
        y_range=tuple(h.y_range) if h.y_range else None,
    )
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        optim = model.optim_config()
        learn.fit_one_cycle(epochs, optim["lr"], wd=optim["weight_decay"])  # decoupled, as AdamW
    seconds = time.perf_counter() - start
    with learn.no_bar():
        pred, truth = learn.get_preds(dl=dls.valid)
    p, t = np.exp(pred.squeeze(1).double().numpy()), np.exp(truth.squeeze(-1).double().numpy())
    exp_rmspe = float(np.sqrt(np.mean(((t - p) / t) ** 2)))
    return {
        "data": f"Rossmann DataModule as configured, {len(parts[0])} / {len(parts[1])} rows, "
        f"batch {dm.batch_size}, {epochs} epochs",
        "emblab": run_emblab(base, out / "emblab", "exp_rmspe"),
        "fastai tabular_learner": {"seconds": round(seconds, 2), "exp_rmspe": exp_rmspe},
    }


def markdown(result: dict) -> str:
    rows = []
    for fam, r in result["families"].items():
        for who, v in r.items():
            if who == "data":
                continue
            metric = next(k for k in v if k != "seconds")
            rows.append([fam, who, f"{v['seconds']:.1f}", f"{metric} {v[metric]:.4f}", r["data"]])
    return markdown_table(
        result, f"device {result['device']}", ["family", "who", "fit seconds", "validation", "data"], rows
    )


def main(args: Args) -> dict:
    _fastai()
    if args.device not in ("cpu", "cuda"):
        raise ConfigError(f"device={args.device!r}: expected cpu or cuda")
    names = choose(args.families, FAMILIES, "families")
    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    result = new_result("emblab.bench.peers", args.threads, device=args.device, families={})
    for name in names:
        result["families"][name] = {"collab": collab, "tabular": tabular}[name](args, out / name)
        print(name, result["families"][name], flush=True)
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_result(out, "peers", result, markdown(result), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
