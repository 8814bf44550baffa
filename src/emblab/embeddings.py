"""Entity embeddings beyond the network, from a tabular checkpoint (emblab.analysis.embeddings):

python -m emblab.embeddings ckpt_path=... action=export out=DIR   # one table per column: Parquet + CSV
python -m emblab.embeddings ckpt_path=... action=plots out=DIR    # PCA maps + State vs geography
python -m emblab.embeddings ckpt_path=... action=compare out=DIR  # KNN / RF / LightGBM, codes vs embeddings
python -m emblab.embeddings ckpt_path=... action=all out=DIR
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from emblab.analysis.embeddings import compare, embedding_figures, export_tables, markdown_table
from emblab.core import cli
from emblab.core.settings import setting
from emblab.training.loading import load_model


@dataclass
class Args:
    ckpt_path: str = "???"
    action: str = setting("all", choices=("export", "plots", "compare", "all"))
    out: str | None = None  # default: <checkpoint's run dir>/embeddings
    max_train: int = setting(200_000, ge=1)
    knn_max_train: int = setting(50_000, ge=1)
    lgb_max_train: int = setting(0, ge=0)  # LightGBM's training rows: 0 = all (the network's whole training set)
    lgb_trees: int = setting(400, ge=1)
    seed: int = setting(0, ge=0)
    n_jobs: int = setting(2, ge=1)
    torch_threads: int | None = setting(None, ge=1)


def run(args: Args) -> None:
    model, ckpt = load_model(args.ckpt_path, expect_kind="tabular")
    artifacts = ckpt["emblab"]["data"]
    out = Path(args.out) if args.out else Path(args.ckpt_path).resolve().parent.parent / "embeddings"
    out.mkdir(parents=True, exist_ok=True)
    if args.action in ("export", "all"):
        paths = export_tables(model, artifacts, out)
        print(f"wrote {len(paths) // 2} embedding tables (Parquet + CSV) to {out}")
    if args.action in ("plots", "all"):
        images = embedding_figures(model, artifacts, out)
        print("\n".join(f"wrote {p}" for p in images.values()))
        if (out / "state_geo.json").is_file():
            corr = json.loads((out / "state_geo.json").read_text())
            print(
                f"State embedding distance vs geographic distance ({corr['pairs']} pairs of {len(corr['states'])} "
                f"states): Pearson {corr['pearson']:.3f}, Spearman {corr['spearman']:.3f}"
            )
    if args.action in ("compare", "all"):
        table = compare(
            model,
            artifacts,
            args.max_train,
            args.knn_max_train,
            args.seed,
            args.n_jobs,
            args.lgb_max_train,
            args.lgb_trees,
        )
        table.to_csv(out / "comparison.csv", index=False)
        md = markdown_table(table)
        (out / "comparison.md").write_text(md + "\n")
        print("validation exp_rmspe over the whole window (in brackets: the lesson's mean over 256-row batches)\n" + md)


if __name__ == "__main__":
    cli.main(Args, run)
