"""Interpreting a collaborative-filtering model, rating or ranking, as in fast.ai lesson 4/5: items ranked by
learned bias, PCA of item embeddings to 3 components with the items at both ends of each, a 2-D map, and an
item's nearest items by the cosine of their embeddings (emblab.interpret)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from emblab.analysis.plots import labelled_scatter
from emblab.core.errors import EmblabError

log = logging.getLogger(__name__)


@dataclass
class ItemTable:
    """What interpretation needs from a trained collab model and its data artifacts."""

    titles: list[str]
    counts: np.ndarray  # ratings per item
    bias: np.ndarray  # (n_items,)
    weights: np.ndarray  # (n_items, n_factors)

    @classmethod
    def from_model(cls, model, artifacts: dict) -> ItemTable:
        net = model.net
        with torch.no_grad():
            if hasattr(net, "item_rows"):  # dot product: vectors and biases, side features included
                weights, bias = (t.cpu().numpy() for t in net.item_rows())
            else:  # the neural variant has no bias; the ranker's is a vector (or None)
                weights, bias = net.i_weight.weight.cpu().numpy(), getattr(net, "i_bias", None)
                bias = np.zeros(len(weights)) if bias is None else bias.cpu().numpy().reshape(-1)
        return cls(list(artifacts["item_titles"]), artifacts["item_counts"].cpu().numpy(), bias, weights)

    def most_rated(self, n: int) -> np.ndarray:
        return np.argsort(-self.counts, kind="stable")[:n]


def bias_ranking(items: ItemTable, n: int = 10, min_count: int = 20) -> tuple[list, list]:
    """(top n, bottom n) items by learned bias among those with >= min_count ratings: [(title, bias)]."""
    idx = np.flatnonzero(items.counts >= min_count)
    order = idx[np.argsort(items.bias[idx], kind="stable")]
    pairs = lambda ix: [(items.titles[i], float(items.bias[i])) for i in ix]  # noqa: E731
    return pairs(order[::-1][:n]), pairs(order[:n])


@dataclass
class ItemPCA:
    pca: PCA
    items: np.ndarray  # indices of the items the PCA was fitted on
    coords: np.ndarray  # (len(items), 3)

    def extremes(self, titles: list[str], component: int, n: int = 10) -> tuple[list, list]:
        order = np.argsort(self.coords[:, component], kind="stable")
        pick = lambda ix: [(titles[self.items[i]], float(self.coords[i, component])) for i in ix]  # noqa: E731
        return pick(order[::-1][:n]), pick(order[:n])


def item_pca(items: ItemTable, top_n: int = 1000, n_components: int = 3, seed: int = 42) -> ItemPCA:
    """PCA of the embeddings of the top_n most-rated items (the lesson's choice: well-estimated ones)."""
    idx = items.most_rated(top_n)
    n_components = min(n_components, len(idx), items.weights.shape[1])
    if n_components < 2:
        raise EmblabError(
            f"a PCA map needs at least 2 items and 2 factors; the model has {len(idx)} items, "
            f"{items.weights.shape[1]} factors"
        )
    pca = PCA(n_components=n_components, random_state=seed).fit(items.weights[idx])
    return ItemPCA(pca, idx, pca.transform(items.weights[idx]))


def plot_pca(p: ItemPCA, titles: list[str], out: Path, n_labels: int = 50, x: int = 0, y: int = 1) -> Path:
    """Components x, y of the n_labels most-rated items, each labelled with its title."""
    ratio = p.pca.explained_variance_ratio_
    return labelled_scatter(
        p.coords[:n_labels][:, [x, y]],
        [titles[i] for i in p.items[:n_labels]],
        out,
        f"Item embeddings, PCA: the {min(n_labels, len(p.items))} most-rated items",
        (f"component {x} ({ratio[x]:.1%} of variance)", f"component {y} ({ratio[y]:.1%} of variance)"),
        size=12,
        fontsize=8,
    )


def nearest_items(items: ItemTable, item: int, n: int = 10) -> list[tuple[int, float]]:
    """The n items whose embeddings have the highest cosine with item's (itself excluded): [(index, cosine)]."""
    w = items.weights / np.maximum(np.linalg.norm(items.weights, axis=1, keepdims=True), 1e-12)  # (n_items, F)
    cos = w @ w[item]  # (n_items,)
    cos[item] = -np.inf
    order = np.argsort(-cos, kind="stable")[:n]
    return [(int(i), float(cos[i])) for i in order]


def report(items: ItemTable, n: int = 10, min_count: int = 20, top_n: int = 1000) -> tuple[str, ItemPCA]:
    """The whole interpretation as Markdown text (also printed by the command)."""
    lines = ["## Most rated", *[f"- {items.titles[i]} ({items.counts[i]})" for i in items.most_rated(n)]]
    top, bottom = bias_ranking(items, n, min_count)
    lines += [
        f"\n## Highest item bias (>= {min_count} ratings)",
        *[f"- {t}: {b:+.3f}" for t, b in top],
        f"\n## Lowest item bias (>= {min_count} ratings)",
        *[f"- {t}: {b:+.3f}" for t, b in bottom],
    ]
    p = item_pca(items, top_n)
    ratios = ", ".join(f"{r:.1%}" for r in p.pca.explained_variance_ratio_)
    lines.append(f"\n## PCA of item embeddings ({len(p.items)} most-rated items; explained variance {ratios})")
    for comp in range(p.coords.shape[1]):
        hi, lo = p.extremes(items.titles, comp, n)
        lines += [
            f"\n### Component {comp}: highest",
            *[f"- {t}: {v:+.3f}" for t, v in hi],
            f"\n### Component {comp}: lowest",
            *[f"- {t}: {v:+.3f}" for t, v in lo],
        ]
    return "\n".join(lines) + "\n", p


def collab_figures(model, artifacts: dict, out_dir: Path) -> dict[str, Path]:
    """Written after training and by the command: interpretation.md and pca_items.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = ItemTable.from_model(model, artifacts)
    try:
        text, p = report(items)
    except EmblabError as e:  # a toy data set: the run is fine, its map is not drawable
        log.warning("no interpretation figures: %s", e)
        return {}
    (out_dir / "interpretation.md").write_text(text)
    return {"pca_items": plot_pca(p, items.titles, out_dir / "pca_items.png")}
