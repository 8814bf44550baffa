"""Evaluate a checkpoint on its validation (or test) split, on the CPU, and write the metrics as JSON beside it.
The data settings travel in the checkpoint; data.KEY=VALUE overrides them. Data that would give the model other
ids, codes or another split than it trained with is refused, unless other_data=true says it is meant.

    python -m emblab.eval ckpt_path=logs/train/runs/<ts>/checkpoints/last.ckpt [split=test] [data.root=DIR]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emblab.core import cli
from emblab.core.errors import EmblabError
from emblab.core.settings import setting
from emblab.training.loading import build_datamodule, differing_artifacts, load_model


@dataclass
class Args:
    ckpt_path: str = "???"
    split: str = setting("val", choices=("val", "test"))
    out: str | None = None  # default: <checkpoint>.eval_<split>.json
    data: dict[str, Any] = field(default_factory=dict)
    other_data: bool = False  # score data other than the training run's (another file, split or mapping)
    torch_threads: int | None = setting(None, ge=1)


def evaluate(args: Args) -> dict:
    import pytorch_lightning as pl

    model, ckpt = load_model(args.ckpt_path)
    meta = ckpt["emblab"]
    dm = build_datamodule(args.ckpt_path, meta, args.data)
    dm.prepare_data()
    dm.setup("validate" if args.split == "val" else "test")
    differ = differing_artifacts(meta["data"], dm.artifacts())
    if differ and not args.other_data:
        raise EmblabError(
            f"the data now differs from what {args.ckpt_path} was trained on ({', '.join(differ)}); "
            "point data.KEY=... at the training data, or pass other_data=true to score it anyway"
        )
    if args.split == "test" and dm.test_ds is None:
        raise EmblabError(
            f"{args.ckpt_path}: its data has no test split; evaluate split=val (or give the data a "
            "test part: a test fraction or a test file)"
        )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    run = trainer.validate if args.split == "val" else trainer.test
    (results,) = run(model, datamodule=dm, weights_only=True)
    if not all(math.isfinite(v) for v in results.values()):
        raise EmblabError(f"{args.ckpt_path}: a metric is not finite ({results}); the model predicts NaN or inf")
    counts = dm.unseen_counts().get("validation" if args.split == "val" else "test", {})
    results = {**results, "unseen_in_training": counts}  # rows scored with an id or category never trained
    out = Path(args.out) if args.out else Path(f"{args.ckpt_path}.eval_{args.split}.json")
    out.write_text(json.dumps({"ckpt_path": str(args.ckpt_path), "split": args.split, **results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    cli.main(Args, evaluate)
