"""A Kaggle Rossmann submission (Id,Sales) from a MixedInputModel checkpoint, on the CPU.

    python -m emblab.rossmann_submit ckpt_path=logs/.../checkpoints/last.ckpt out=submission.csv
    python -m emblab.rossmann_submit ckpt_path=... test_csv=$EMBLAB_SHARED_DIR/rossmann/kaggle/test.csv \
        store_csv=$EMBLAB_SHARED_DIR/rossmann/kaggle/store.csv

The test rows go through the same features as training (joined with train.csv's history under
`root`, so "days since the last promo" knows July), then the checkpoint's codes and mapper. One row
per test Id; closed days get 0; blank Open (store 622) counts as open, see emblab.data.rossmann.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emblab.core import cli
from emblab.core.errors import EmblabError
from emblab.training.loading import load_model

log = logging.getLogger(__name__)


def predict_test(
    model,
    artifacts: dict,
    root: str | None = None,
    extras: str | None = None,
    test_csv: str | None = None,
    store_csv: str | None = None,
) -> pd.DataFrame:
    """DataFrame(Id, Sales) in Id order."""
    from emblab.data.rossmann import RossmannDataModule
    from emblab.data.tabular import TabularProcessor

    cfg = artifacts.get("rossmann")
    if cfg is None:
        raise EmblabError("not a Rossmann checkpoint (trained with data=rossmann)")
    dm = RossmannDataModule.from_settings({**cfg, "root": root or cfg["root"], "extras": extras or cfg["extras"]})
    joined, is_test, _ = dm.load_frames(test_csv, store_csv)
    test = joined[is_test]
    proc = TabularProcessor.from_state(artifacts["processor"])
    missing = [c for c in proc.cont_cols + [c for c in proc.cat_cols if not c.endswith("_na")] if c not in test]
    if missing:
        raise EmblabError(
            f"the model was trained with columns {missing} that these files do not give "
            "(store_states.csv, googletrend/ or weather/ missing? set extras=DIR)"
        )
    cats, conts = proc.transform(test, "test")  # logs the rows of stores (or other values) never trained on
    sales = model.predict_target(cats, conts).double().numpy()  # exp of the predicted log sales
    sales = np.where(test.Open.to_numpy() == 0, 0.0, np.clip(sales, 0, None))
    out = pd.DataFrame({"Id": test.Id.astype("int64").to_numpy(), "Sales": sales}).sort_values("Id")
    if out.Id.duplicated().any():
        raise EmblabError(f"test file repeats Id {int(out.Id[out.Id.duplicated()].iloc[0])}")
    if not np.isfinite(out.Sales).all():
        raise EmblabError("a prediction is not finite; the checkpoint may be broken")
    log.info(
        "predicted %d test rows: %d closed (0), %d blank Open read as open; unseen in training: %s",
        len(out),
        int((test.Open == 0).sum()),
        dm.blank_open,
        ", ".join(f"{c} {n} rows" for c, n in proc.unseen["test"].items()) or "none",
    )
    return out.reset_index(drop=True)


@dataclass
class Args:
    ckpt_path: str = "???"
    out: str = "submission.csv"
    # defaults: the folders the checkpoint was trained from
    root: str | None = None
    extras: str | None = None
    test_csv: str | None = None
    store_csv: str | None = None


def run(args: Args) -> None:
    model, ckpt = load_model(args.ckpt_path, expect_kind="tabular")
    sub = predict_test(model, ckpt["emblab"]["data"], args.root, args.extras, args.test_csv, args.store_csv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sub.to_csv(args.out, index=False, float_format="%.2f")
    print(f"wrote {args.out}: {len(sub)} rows, mean predicted Sales {sub.Sales.mean():.0f}")


if __name__ == "__main__":
    cli.main(Args, run)
