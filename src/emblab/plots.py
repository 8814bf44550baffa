"""Figures written into a run's output directory after training."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs write PNGs, never open windows
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def loss_curves(metrics_csv: Path, out: Path, steps_per_call: int = 1) -> Path | None:
    """train/loss per logged step and val/loss per epoch from the CSV logger's metrics.csv, against
    optimizer steps (the CSV's step counts Lightning batches: steps_per_call optimizer steps each)."""
    if not metrics_csv.is_file():
        return None
    df = pd.read_csv(metrics_csv)
    fig, ax = plt.subplots(figsize=(7, 4))
    for col in ("train/loss", "train/loss_step", "val/loss"):
        if col in df and df[col].notna().any():
            d = df[["step", col]].dropna()
            ax.plot((d["step"] + 1) * steps_per_call, d[col], marker="o" if col.startswith("val") else None, label=col)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def training_plots(model, datamodule, out_dir: Path) -> dict[str, Path]:
    plots_dir = Path(out_dir) / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    images = {}
    curves = loss_curves(
        Path(out_dir) / "csv" / "metrics.csv", plots_dir / "loss_curves.png", getattr(model, "steps_per_call", 1)
    )
    if curves:
        images["loss_curves"] = curves
    figures = family_figures(datamodule.kind)
    if figures is not None:
        images.update(figures(model, datamodule.artifacts(), plots_dir))
    return images


def family_figures(kind: str):
    """The figures a family draws after training, by the kind of data it trains on: collab's bias
    ranking and PCA map (emblab.interpret), the tabular embeddings' maps (emblab.embeddings)."""
    if kind == "ratings":
        from emblab.interpret import collab_figures

        return collab_figures
    if kind == "tabular":
        from emblab.embeddings import embedding_figures

        return embedding_figures
    return None
