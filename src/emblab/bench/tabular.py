"""Tabular nets beside gradient boosting, on any table, in one run: emblab's `model=tabular` and `model=mixed_input`,
LightGBM with its defaults (on the training rows; lightgbm_all: on training + validation) and tuned on validation,
CatBoost with its defaults (bench extra) and fastai's tabular_learner (peers extra). Every model sees the same rows:
per seed, a seeded test part is set aside (or the table's own test file is used), the rest is split into training
and validation exactly as emblab splits it (data.val_frac, data.split_seed), and every model takes the columns
emblab's data found (data.cat_cols / cont_cols, auto unless named); validation chooses emblab's epochs, the tuned
LightGBM's settings and trees and fastai's rate and epochs, never test.

    python -m emblab.bench.tabular path=FILE target=COL [drop=[duration]] [log_target=true] [test_frac=0.2]
        [test_path=FILE] [overrides=[data.date_cols=[saledate]]] [seeds=0,1,2] [name=bank]
        [models=tabular,mixed_input,lightgbm,lightgbm_all,lightgbm_tuned,catboost,fastai] [out=logs/bench/tabular]

Scores, on the test part: accuracy, AUC and log-loss (classification) or RMSE (of the log target with log_target).
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from emblab.bench import choose, compose, markdown_table, new_result, prepare, seed_summary, write_result
from emblab.core import cli
from emblab.core.errors import ConfigError

log = logging.getLogger(__name__)

MODELS = ("tabular", "mixed_input", "lightgbm", "lightgbm_all", "lightgbm_tuned", "catboost", "fastai")
QUIET = ["logger=csv", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]
LGBM_MODES = {"lightgbm": "default", "lightgbm_all": "all", "lightgbm_tuned": "tuned"}  # run_lightgbm's modes
FASTAI_LRS = (1e-3, 1e-2)  # fastai's default peak rate and the one its tabular lessons use
# the tuned LightGBM's grid, each with up to 2000 trees stopped on validation (100 rounds without improvement)
LGBM_GRID = {"num_leaves": [15, 31, 63, 127], "learning_rate": [0.03, 0.1], "min_child_samples": [10, 20, 50]}


@dataclass
class Args:
    path: str = "???"
    target: str = "???"
    drop: list[str] = field(default_factory=list)  # columns no model may see (e.g. bank marketing's duration)
    log_target: bool = False
    test_frac: float = 0.2
    test_path: str | None = None  # the table's own test file (with the target) instead of a test fraction
    overrides: list[str] = field(default_factory=list)  # data.* settings for every model's columns, model.* for ours
    seeds: str = "0,1,2"
    models: str = ",".join(MODELS)
    name: str = "table"
    epochs_fastai: list[int] = field(default_factory=lambda: [5, 10, 20])  # chosen on validation
    out: str = "logs/bench/tabular"
    threads: int = 1
    update_md: str | None = None


def labelled(df: pd.DataFrame, target: str, path) -> pd.DataFrame:
    """The rows with a target (emblab's data leaves the others out too: a blank, or NA in a numeric target)."""
    from emblab.data.columns import apply_markers, missing_markers

    if target in df.columns:
        apply_markers(df, missing_markers(df, [target]), path)
        if df[target].isna().any():
            log.warning("%s: %d rows without a target left out", path, df[target].isna().sum())
            df = df[df[target].notna()]
    return df


class Split:
    """One seed's rows: test set aside, the rest training + validation as emblab's data splits it, and the columns
    emblab's data found; frames for the peers with categories typed from the training rows."""

    def __init__(self, args: Args, seed: int, out: Path):
        from emblab.data.tabular import category_values, read_table

        df = labelled(read_table(args.path).drop(columns=args.drop), args.target, args.path)
        if args.test_path:
            trainval, test = (
                df,
                labelled(read_table(args.test_path).drop(columns=args.drop), args.target, args.test_path),
            )
        else:
            perm = np.random.default_rng(seed).permutation(len(df))
            n_test = int(round(args.test_frac * len(df)))
            trainval, test = df.iloc[perm[n_test:]], df.iloc[perm[:n_test]]
        out.mkdir(parents=True, exist_ok=True)
        self.trainval, self.test = out / "trainval.parquet", out / "test.parquet"
        trainval.reset_index(drop=True).to_parquet(self.trainval)
        test.reset_index(drop=True).to_parquet(self.test)
        self.base = [
            "data=tabular",
            f"data.path={self.trainval}",
            f"data.test_path={self.test}",
            f"data.target={args.target}",
            f"data.log_target={str(args.log_target).lower()}",
            f"data.split_seed={seed}",
            f"seed={seed}",
            f"torch_threads={args.threads}",
            *QUIET,
            *args.overrides,
        ]
        self.dm = self.datamodule(out)
        self.target, self.task = args.target, self.dm.task
        if self.task == "classification":  # a class only in the test rows has no output to score (as in train)
            known = category_values(test[args.target]).isin(self.dm.target_classes).to_numpy()
            if not known.all():
                log.warning("%s: %d test rows of classes training never holds: left out", args.path, (~known).sum())
                test.iloc[known].reset_index(drop=True).to_parquet(self.test)
        self.frames = self.peer_frames()

    def datamodule(self, out: Path):
        from emblab.data.tabular import TabularDataModule
        from emblab.training.config import check_config

        s = check_config(compose(["model=mixed_input", *self.base], out / "check"))
        dm = TabularDataModule(s["data"], "tabular")
        dm.setup()
        return dm

    def peer_frames(self) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
        """{train, val, test: (X, y)} as a peer takes them: the columns emblab uses, text categories as pandas
        categories (those of the training rows; others missing), missing values left missing."""
        from emblab.data.columns import add_dateparts, apply_markers, new_rows_markers
        from emblab.data.tabular import category_values, codes_in, numeric_column, read_table, split_mask

        dm = self.dm
        out, is_val = {}, None
        for part, path in (("trainval", self.trainval), ("test", self.test)):
            df = read_table(path)
            if part == "trainval":
                is_val = split_mask(df, path, **dm.split_args)
            for c in dm.date_cols:
                add_dateparts(df, c, path)
            apply_markers(df, new_rows_markers(dm.markers, dm.cont_cols), path)
            X = pd.DataFrame(index=df.index)
            for c in dm.cat_cols:
                values = category_values(df[c])
                classes = dm.proc.classes[c]
                X[c] = pd.Categorical(values.where(values.isin(classes)), categories=classes)
            for c in dm.cont_cols:
                X[c] = numeric_column(df, c, path)
            y = df[self.target]
            if self.task == "classification":
                y = codes_in(category_values(y), dm.target_classes)
            else:
                y = np.log(y.to_numpy(dtype="float64")) if self.dm.log_target else y.to_numpy(dtype="float64")
            if part == "trainval":
                out["train"], out["val"] = (X[~is_val], y[~is_val]), (X[is_val], y[is_val])
            else:
                out["test"] = (X, y)
        return out


def scores(task: str, y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Classification: pred is (N, C) probabilities; regression: (N,) values (on the log scale for a log target)."""
    if task == "regression":
        return {"rmse": float(np.sqrt(np.mean((pred - y) ** 2)))}
    labels = list(range(pred.shape[1]))
    out = {"acc": float(np.mean(pred.argmax(1) == y)), "logloss": float(skm.log_loss(y, pred, labels=labels))}
    if len(np.unique(y)) > 1:
        out["auc"] = float(
            skm.roc_auc_score(y, pred[:, 1]) if pred.shape[1] == 2 else skm.roc_auc_score(y, pred, multi_class="ovr")
        )
    return out


def run_emblab(model: str, split: Split, out: Path) -> tuple[dict, dict]:
    from emblab.analysis.tables import predict_frame
    from emblab.train import train
    from emblab.training.loading import load_model

    metrics = train(compose([f"model={model}", *split.base], out))
    net, ckpt = load_model(metrics["best_checkpoint"] or metrics["last_checkpoint"])
    frame = predict_frame(net, ckpt["emblab"]["data"], split.test)
    _, y = split.frames["test"]
    if split.task == "classification":
        pred = frame[[f"p_{c}" for c in split.dm.target_classes]].to_numpy()
    else:
        pred = frame[split.target].to_numpy(dtype="float64")
        pred = np.log(pred) if split.dm.log_target else pred
    best = next((v.get("best_epoch") for k, v in metrics.items() if k.startswith("val/") and isinstance(v, dict)), None)
    return scores(split.task, y, pred), {"epochs": metrics["epochs"], "best_epoch": best}


def lgbm(task: str, seed: int, threads: int, **params):
    import lightgbm as lgb

    cls = lgb.LGBMClassifier if task == "classification" else lgb.LGBMRegressor
    return cls(random_state=seed, n_jobs=threads, verbose=-1, **params)


def predict_peer(task: str, m, X) -> np.ndarray:
    return m.predict_proba(X) if task == "classification" else m.predict(X)


def run_lightgbm(split: Split, frames: dict, seed: int, threads: int, mode: str) -> tuple[dict, dict]:
    """mode: default (the training rows), all (defaults on training + validation rows: LightGBM needs no
    validation, so a user of its defaults fits every row they have) or tuned (the grid, stopped on validation)."""
    import lightgbm as lgb

    (Xtr, ytr), (Xva, yva), (Xte, yte) = frames["train"], frames["val"], frames["test"]
    if mode == "all":
        Xtr, ytr = pd.concat([Xtr, Xva]), np.concatenate([ytr, yva])
    if mode != "tuned":
        m = lgbm(split.task, seed, threads).fit(Xtr, ytr)
        return scores(split.task, yte, predict_peer(split.task, m, Xte)), {"rows": len(Xtr)}
    best = None
    for values in itertools.product(*LGBM_GRID.values()):
        params = dict(zip(LGBM_GRID, values, strict=True))
        m = lgbm(split.task, seed, threads, n_estimators=2000, **params)
        with warnings.catch_warnings():  # eval_set: every LightGBM 4.x takes it (4.7 prefers eval_X / eval_y)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            m.fit(Xtr, ytr, eval_set=[(Xva, yva)], callbacks=[lgb.early_stopping(100, verbose=False)])
        val = scores(split.task, yva, predict_peer(split.task, m, Xva))
        loss = val["rmse"] if split.task == "regression" else val["logloss"]
        if best is None or loss < best[0]:
            best = (loss, {**params, "trees": m.best_iteration_}, m)
    _, params, m = best
    return scores(split.task, yte, predict_peer(split.task, m, Xte)), params


def run_catboost(split: Split, frames: dict, seed: int, threads: int) -> tuple[dict, dict]:
    import catboost

    def text_cats(X):  # CatBoost takes categories as text, a missing one as its own value
        X = X.copy()
        for c in X.columns:
            if isinstance(X[c].dtype, pd.CategoricalDtype):
                X[c] = X[c].astype(object).where(X[c].notna(), "(missing)").astype(str)
        return X

    (Xtr, ytr), (Xte, yte) = frames["train"], frames["test"]
    cats = [c for c in Xtr.columns if isinstance(Xtr[c].dtype, pd.CategoricalDtype)]
    cls = catboost.CatBoostClassifier if split.task == "classification" else catboost.CatBoostRegressor
    m = cls(random_seed=seed, thread_count=threads, verbose=0, cat_features=cats, allow_writing_files=False)
    m.fit(text_cats(Xtr), ytr)
    return scores(split.task, yte, predict_peer(split.task, m, text_cats(Xte))), {"iterations": m.tree_count_}


def run_fastai(split: Split, frames: dict, seed: int, epochs_grid: list[int]) -> tuple[dict, dict]:
    """fastai's tabular_learner with its defaults (layers [200, 100], batch 64) and y_range for regression (the
    lesson's rule, as model=mixed_input), one cycle; the peak rate and the epochs chosen on validation."""
    from fastai.data.block import CategoryBlock, RegressionBlock
    from fastai.tabular.all import Categorify, FillMissing, Normalize, TabularPandas, set_seed, tabular_learner

    from emblab.data.tabular import auto_y_range

    (Xtr, ytr), (Xva, yva), (Xte, yte) = frames["train"], frames["val"], frames["test"]
    df = pd.concat([Xtr.assign(y=ytr), Xva.assign(y=yva)], ignore_index=True)
    cats = [c for c in Xtr.columns if isinstance(Xtr[c].dtype, pd.CategoricalDtype)]
    conts = [c for c in Xtr.columns if c not in cats]
    classify = split.task == "classification"
    to = TabularPandas(
        df,
        procs=[Categorify, FillMissing, Normalize],
        cat_names=cats,
        cont_names=conts,
        y_names="y",
        y_block=CategoryBlock() if classify else RegressionBlock(),
        splits=(list(range(len(Xtr))), list(range(len(Xtr), len(df)))),
    )
    y_range = None if classify else tuple(auto_y_range(np.asarray(ytr)))
    best = None
    for lr, epochs in itertools.product(FASTAI_LRS, epochs_grid):
        set_seed(seed)
        learn = tabular_learner(to.dataloaders(bs=64), y_range=y_range)
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, lr)
            val_loss = float(learn.validate()[0])
        if best is None or val_loss < best[0]:
            best = (val_loss, learn, {"epochs": epochs, "lr": lr})
    _, learn, params = best
    with learn.no_bar():
        pred, _ = learn.get_preds(dl=learn.dls.test_dl(Xte.assign(y=yte)))
    pred = pred.numpy()
    return scores(split.task, yte, pred if classify else pred.reshape(-1)), params


def markdown(result: dict) -> str:
    names = ["rmse"] if result["task"] == "regression" else ["acc", "auc", "logloss"]
    rows = []
    for name, r in result["models"].items():
        cells = [f"{r[m]['mean']:.4f} ± {r[m]['sd']:.4f}" if m in r else "—" for m in names]
        rows.append([name, *cells, f"{r['fit_s']:.1f}", "; ".join(str(p) for p in r["params"])])
    header = ["model", *(("RMSE" + (" (log)" if result["log_target"] else "")) if m == "rmse" else m for m in names)]
    return markdown_table(
        result,
        f"{result['name']}: {result['data']}; seeds {result['seeds']}, test mean ± sd over the seeds (population sd), "
        "fit s their median",
        [*header, "fit s", "chosen on validation / settings (per seed)"],
        rows,
    )


def main(args: Args) -> dict:
    models = choose(args.models, MODELS, "models")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    runs: dict[str, list] = {m: [] for m in models}
    result = new_result("emblab.bench.tabular", args.threads, name=args.name, seeds=seeds, log_target=args.log_target)
    for seed in seeds:
        split = Split(args, seed, out / args.name / "data" / str(seed))
        frames = split.frames
        result["task"] = split.task
        result["data"] = (
            f"{args.path}, {len(frames['train'][0])} train / {len(frames['val'][0])} validation / "
            f"{len(frames['test'][0])} test rows, {len(split.dm.cat_cols)} categorical and {len(split.dm.cont_cols)} "
            f"continuous columns, {split.task}"
        )
        for m in models:
            t = time.perf_counter()
            try:
                if m in ("tabular", "mixed_input"):
                    test, params = run_emblab(m, split, out / args.name / m / str(seed))
                elif m in LGBM_MODES:
                    test, params = run_lightgbm(split, frames, seed, args.threads, LGBM_MODES[m])
                elif m == "catboost":
                    test, params = run_catboost(split, frames, seed, args.threads)
                else:
                    test, params = run_fastai(split, frames, seed, args.epochs_fastai)
            except ImportError as e:
                print(f"{m}: skipped, {e.name} is not installed (the bench / peers extras)", flush=True)
                continue
            runs[m].append({"test": test, "fit_s": time.perf_counter() - t, "params": params})
            print(f"seed {seed} {m}: {test} ({time.perf_counter() - t:.1f} s) {params}", flush=True)
    if not any(runs.values()):
        raise ConfigError("no model ran")
    result["models"] = {m: seed_summary(r) for m, r in runs.items() if r}
    result["wall_seconds"] = time.perf_counter() - start
    write_result(out, f"tabular-{args.name}", result, markdown(result), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
