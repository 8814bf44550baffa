"""What a run draws into its plots/ folder after training: the loss curves, and its family's own figures."""

from __future__ import annotations

from pathlib import Path

from emblab.analysis.embeddings import embedding_figures
from emblab.analysis.interpret import collab_figures
from emblab.analysis.plots import loss_curves


def training_plots(out_dir: Path, kind: str, model, artifacts: dict, steps_per_call: int = 1) -> dict[str, Path]:
    """The loss curves, and the family's figures (collab: bias ranking and the item map; tabular: the embeddings'
    maps); {name: png}."""
    plots_dir = Path(out_dir) / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    curves = loss_curves(Path(out_dir) / "csv" / "metrics.csv", plots_dir / "loss_curves.png", steps_per_call)
    images = {"loss_curves": curves} if curves else {}
    if kind == "ratings":
        images.update(collab_figures(model, artifacts, plots_dir))
    elif kind == "tabular":
        images.update(embedding_figures(model, artifacts, plots_dir))
    return images
