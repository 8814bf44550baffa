"""Interpret a collab checkpoint, rating or ranking, on the CPU (fast.ai lesson 4/5): items ranked by learned
bias, the PCA of item embeddings with the items at both ends of each component, the 2-D map, and with `item=ID`
(a raw id of the data file) that item's nearest items by cosine (emblab.analysis.interpret).

    python -m emblab.interpret ckpt_path=logs/train/runs/.../checkpoints/last.ckpt [n=10] [item=ID] [out=DIR]

`wandb_run=ID` logs the map to that (offline or online) W&B run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emblab.analysis.interpret import ItemTable, nearest_items, plot_pca, report
from emblab.analysis.recommend import IdMap
from emblab.core import cli
from emblab.core.errors import EmblabError
from emblab.core.settings import setting
from emblab.training.loading import load_model


@dataclass
class Args:
    ckpt_path: str = "???"
    n: int = setting(10, ge=1)
    min_count: int = setting(20, ge=1)
    top_n: int = setting(1000, ge=2)
    item: str | None = None  # a raw item id: its nearest items by cosine into nearest_items.csv
    out: str | None = None  # default: a folder `interpret/` beside the checkpoint's run folder
    wandb_run: str | None = None
    torch_threads: int | None = setting(None, ge=1)


def interpret(args: Args) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    model, ckpt = load_model(args.ckpt_path, expect_kind=("ratings", "interactions"))
    artifacts = ckpt["emblab"]["data"]
    items = ItemTable.from_model(model, artifacts)
    text, p = report(items, args.n, args.min_count, args.top_n)
    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parent.parent / "interpret"
    out.mkdir(parents=True, exist_ok=True)
    if args.item is not None:
        ids = IdMap(artifacts["item_ids"])
        idx, known = ids.lookup([args.item])
        if not bool(known[0]):
            raise EmblabError(f"item={args.item}: the model knows no such item ({len(ids)} items)")
        near = nearest_items(items, int(idx[0]), args.n)
        table = pd.DataFrame(
            {
                "item": [ids.ids[i] for i, _ in near],
                "title": [items.titles[i] for i, _ in near],
                "cosine": [c for _, c in near],
            }
        )
        table.to_csv(out / "nearest_items.csv", index=False)
        title = items.titles[int(idx[0])]
        text += f"\n## Nearest items to {title} (cosine of embeddings)\n"
        text += "".join(f"- {t}: {c:.3f}\n" for t, c in zip(table["title"], table["cosine"], strict=True))
    (out / "interpretation.md").write_text(text)
    png = plot_pca(p, items.titles, out / "pca_items.png")
    Console().print(Markdown(text))
    print(f"wrote {out / 'interpretation.md'} and {png}")
    if args.wandb_run:
        import wandb

        with wandb.init(id=args.wandb_run, resume="allow", project="emblab") as run:
            run.log({"plots/pca_items": wandb.Image(str(png))})


if __name__ == "__main__":
    cli.main(Args, interpret)
