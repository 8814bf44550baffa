"""Figures: the loss curves of a run, and a labelled scatter (the PCA maps of every family draw with it)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs write PNGs, never open windows
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def loss_curves(metrics_csv: Path, out: Path, steps_per_call: int = 1) -> Path | None:
    """train/loss per logged step and val/loss per epoch from the CSV logger's metrics.csv, against optimizer
    steps (the CSV's step counts Lightning batches: steps_per_call optimizer steps each)."""
    if not metrics_csv.is_file():
        return None
    df = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(7, 4))
    for col in ("train/loss", "train/loss_step", "val/loss"):
        if col in df and df[col].notna().any():
            d = df[["step", col]].dropna()
            ax.plot((d["step"] + 1) * steps_per_call, d[col], marker="o" if col.startswith("val") else None, label=col)
    if not ax.lines:  # nothing logged yet (a run shorter than log_every_n_steps)
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def labelled_scatter(
    xy: np.ndarray, labels: list[str], out: Path, title: str, axes: tuple[str, str], size: float = 6, fontsize: int = 9
) -> Path:
    """Points (N, 2), each with its label, placed so no label covers another (adjustText)."""
    from adjustText import adjust_text

    fig, ax = plt.subplots(figsize=(size, size * 5 / 6 if size < 10 else size))
    ax.scatter(xy[:, 0], xy[:, 1], s=20, color="tab:blue")
    texts = [ax.text(x, y, label, fontsize=fontsize, alpha=0.85) for (x, y), label in zip(xy, labels, strict=True)]
    adjust_text(texts, ax=ax, arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5})
    ax.set_title(title)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
