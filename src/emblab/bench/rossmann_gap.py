"""Where a Rossmann network's train/validation gap comes from: the same checkpoint scored on the
validation window and on two windows of its own training days (the same weeks a year earlier, and
the last seven weeks before the test), each as whole-window exp_rmspe, without its 10 worst days, and
the lesson's mean over 256-row batches; and how far the window's inputs lie from training's
(categorical values training never saw, continuous means in training standard deviations).

    python -m emblab.bench.rossmann_gap ckpt_path=logs/.../checkpoints/last.ckpt [out=DIR]

If the training windows fit much better than the validation window while the window's inputs are
of the kinds training saw, the gap is the network fitting its own days (overfitting), not the
inputs differing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from emblab.core.errors import EmblabError

log = logging.getLogger(__name__)


def window_scores(model, proc, rows: pd.DataFrame) -> dict[str, float]:
    from emblab.analysis.embeddings import exp_rmspe_lesson

    if not len(rows):  # a window before the data begin
        nan = float("nan")
        return {
            "rows": 0,
            "mse_log": nan,
            "exp_rmspe": nan,
            "exp_rmspe_without_10_worst": nan,
            "exp_rmspe_lesson_batches": nan,
            "mean_log_residual": nan,
        }
    cats, conts = proc.transform(rows)
    with torch.no_grad():
        pred = torch.cat([model(cats[i : i + 65536], conts[i : i + 65536]) for i in range(0, len(cats), 65536)]).numpy()
    y = np.log(rows.Sales.to_numpy(np.float64))
    sq = ((np.exp(y) - np.exp(pred)) / np.exp(y)) ** 2
    return {
        "rows": int(len(rows)),
        "mse_log": float(np.mean((y - pred) ** 2)),
        "exp_rmspe": float(np.sqrt(sq.mean())),
        "exp_rmspe_without_10_worst": float(np.sqrt(np.sort(sq)[:-10].mean())) if len(sq) > 10 else float("nan"),
        "exp_rmspe_lesson_batches": exp_rmspe_lesson(pred, y),
        "mean_log_residual": float(np.mean(y - pred)),
    }


def gap(model, artifacts: dict) -> dict:
    from emblab.data.rossmann import RossmannDataModule
    from emblab.data.tabular import TabularProcessor

    cfg = artifacts.get("rossmann")
    if cfg is None:
        raise EmblabError("not a Rossmann checkpoint (trained with data=rossmann)")
    dm = RossmannDataModule.from_settings(cfg)
    joined, is_test, _ = dm.load_frames()
    proc = TabularProcessor.from_state(artifacts["processor"])
    sold = joined[~is_test & (joined.Open == 1) & (joined.Sales > 0)]
    start, end = pd.Timestamp(cfg["val_start"]), pd.Timestamp(cfg["val_end"])
    year = pd.DateOffset(years=1)
    windows = {
        "validation": (start, end),
        "training, one year earlier": (start - year, end - year),
        "training, last 48 days": (sold.Date.max() - pd.Timedelta(days=47), sold.Date.max()),
    }
    out = {"windows": {}}
    for name, (a, b) in windows.items():
        rows = sold[sold.Date.between(a, b)]
        if name != "validation" and sold.Date.between(start, end).loc[rows.index].any():
            raise EmblabError(f"window {name} overlaps the validation window")
        out["windows"][name] = {"from": str(a.date()), "to": str(b.date()), **window_scores(model, proc, rows)}
    trn, val = sold[~sold.Date.between(start, end)], sold[sold.Date.between(start, end)]
    (tc, tx), (vc, vx) = proc.transform(trn), proc.transform(val)
    unseen = {
        c: float((vc[:, j] == 0).float().mean() - (tc[:, j] == 0).float().mean()) for j, c in enumerate(proc.cat_cols)
    }
    out["unknown_code_share_val_minus_train"] = {c: round(v, 4) for c, v in unseen.items() if abs(v) > 1e-4}
    out["val_cont_mean_in_train_sd"] = {c: round(float(vx[:, j].mean()), 2) for j, c in enumerate(proc.cont_cols)}
    out["val_cont_outside_train_range"] = {
        c: float(((vx[:, j] < tx[:, j].min()) | (vx[:, j] > tx[:, j].max())).float().mean())
        for j, c in enumerate(proc.cont_cols)
    }
    return out


@dataclass
class Args:
    ckpt_path: str = "???"
    out: str | None = None  # default: <checkpoint's run dir>/gap.json


def run(args: Args) -> None:
    from emblab.training.loading import load_model

    model, ckpt = load_model(args.ckpt_path, expect_kind="tabular")
    model.eval()
    res = gap(model, ckpt["emblab"]["data"])
    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parent.parent / "gap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print("| window | days | MSE (log) | exp_rmspe | without 10 worst | lesson's batches | mean log residual |")
    print("|---|---|---|---|---|---|---|")
    for name, w in res["windows"].items():
        print(
            f"| {name} ({w['from']}..{w['to']}) | {w['rows']:,} | {w['mse_log']:.4f} | {w['exp_rmspe']:.4f} | "
            f"{w['exp_rmspe_without_10_worst']:.4f} | {w['exp_rmspe_lesson_batches']:.4f} | "
            f"{w['mean_log_residual']:+.4f} |"
        )
    print(
        "categorical codes unknown in validation beyond training's share: "
        f"{res['unknown_code_share_val_minus_train'] or 'none'}"
    )
    outside = {c: v for c, v in res["val_cont_outside_train_range"].items() if v > 0}
    print(f"continuous values outside training's range: {outside or 'none'}; wrote {out}")


if __name__ == "__main__":
    from emblab.core import cli

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cli.main(Args, run)
