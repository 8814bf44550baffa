"""Predictions of a tabular checkpoint on new rows (emblab.predict table=FILE): the table read as training read it
(dates into parts, continuous columns checked), the stored codes and normaliser applied (a category training never
saw is code 0, "unknown", counted in the log), then class probabilities or values in the target's own units."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from emblab.analysis.recommend import write_table
from emblab.data.columns import add_dateparts, apply_markers, date_part_names, new_rows_markers
from emblab.data.tabular import TabularProcessor, numeric_column, read_table

log = logging.getLogger(__name__)


def predict_table(model, artifacts: dict, path: str | Path, out: str | Path) -> Path:
    """One output row per input row: the input's id columns (those training left out as ids, e.g. Kaggle's Id),
    then the target column (a value, or the likeliest class) and, for a classification, p_<class> per class."""
    return write_table(predict_frame(model, artifacts, path), out)


def predict_frame(model, artifacts: dict, path: str | Path) -> pd.DataFrame:
    """predict_table's rows, as a DataFrame."""
    proc = TabularProcessor.from_state(artifacts["processor"])
    date_cols = list(artifacts.get("date_cols") or [])
    raw_cats = [c for c in proc.cat_cols if proc.computed(c) is None]
    parts = {p for c in date_cols for names in date_part_names(c) for p in names}
    needed = [*date_cols, *(c for c in (*raw_cats, *proc.cont_cols) if c not in parts)]
    df = read_table(path, needed)  # a missing column: one line naming the file's columns
    for c in date_cols:
        add_dateparts(df, c, path)
    apply_markers(df, new_rows_markers(dict(artifacts.get("markers") or {}), proc.cont_cols), path)
    for c in proc.cont_cols:
        df[c] = numeric_column(df, c, path)
    cats, conts = proc.transform(df, f"{path}")
    pred = model.predict_target(cats, conts).numpy()  # (N,) values or (N, C) probabilities
    target = artifacts["target"]
    frame = pd.DataFrame({c: df[c].to_numpy() for c in artifacts.get("dropped") or [] if c in df.columns})
    if artifacts["task"] == "classification":
        classes = np.asarray(artifacts["target_classes"], dtype=object)
        frame[target] = classes[pred.argmax(1)]
        for j, c in enumerate(classes):
            frame[f"p_{c}"] = pred[:, j]
    else:
        frame[target] = pred
    unseen = proc.unseen.get(f"{path}", {})
    log.info(
        "%s: %d rows predicted%s",
        path,
        len(frame),
        "; values training never saw (code 0): " + ", ".join(f"{c} {n}" for c, n in unseen.items()) if unseen else "",
    )
    return frame
