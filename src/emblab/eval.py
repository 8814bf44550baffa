"""Evaluate a checkpoint on its validation (or test) split, on the CPU, and write the metrics as JSON
beside it. The data config travels in the checkpoint; override parts of it with data.KEY=VALUE.

    python -m emblab.eval ckpt_path=logs/train/runs/<ts>/checkpoints/last.ckpt [split=test] [data.root=DIR]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emblab import cli
from emblab.errors import EmblabError


@dataclass
class Args:
    ckpt_path: str = "???"
    split: str = "val"  # val | test
    out: str | None = None  # default: <checkpoint>.eval_<split>.json
    data: dict[str, Any] = field(default_factory=dict)
    torch_threads: int | None = None  # as train.py's: 1 is fastest for the small models beside other work


def same_artifacts(saved: dict, rebuilt: dict) -> list[str]:
    """Keys whose values differ: the rebuilt data would feed the model other ids/codes than it learned."""
    differ = []
    for key, value in saved.items():
        other = rebuilt.get(key)
        if isinstance(value, torch.Tensor):
            ok = isinstance(other, torch.Tensor) and value.shape == other.shape and torch.equal(value, other)
        else:
            ok = value == other
        if not ok:
            differ.append(key)
    return differ


def evaluate(args: Args) -> dict:
    import pytorch_lightning as pl

    from emblab.checkpoint import build_datamodule, load_model

    if args.split not in ("val", "test"):
        raise EmblabError(f"split={args.split!r}: expected val or test")
    model, ckpt = load_model(args.ckpt_path)
    meta = ckpt["emblab"]
    dm = build_datamodule(args.ckpt_path, meta, args.data)  # an allow-listed class, plain values: no instantiate
    dm.prepare_data()
    dm.setup("validate" if args.split == "val" else "test")
    differ = same_artifacts(meta["data"], dm.artifacts())
    if differ:
        raise EmblabError(
            f"the data now differs from what {args.ckpt_path} was trained on ({', '.join(differ)}); "
            "point data.KEY=... at the training data"
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
    out = Path(args.out) if args.out else Path(f"{args.ckpt_path}.eval_{args.split}.json")
    counts = dm.unseen_counts()
    unseen = counts.get("validation", {}) if args.split == "val" else counts.get("test", counts.get("validation", {}))
    results = {**results, "unseen_in_training": unseen}  # rows scored with an id or category never trained
    out.write_text(json.dumps({"ckpt_path": str(args.ckpt_path), "split": args.split, **results}, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    cli.main(Args, evaluate)
