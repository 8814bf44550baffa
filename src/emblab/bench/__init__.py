"""Benchmarks: `python -m emblab.bench` (Lightning against a hand-written loop, per family),
`python -m emblab.bench.surprise` (the collab recipes against Surprise's SVD on any MovieLens split),
`python -m emblab.bench.collab_size` (does a collab recipe hold as the data grows),
`python -m emblab.bench.scale` (1M..25M generated ratings: epoch time, memory, CSV load),
`python -m emblab.bench.topn` (top-N lists: the ranker beside EASE, ALS, BPR and most popular, tuned alike),
`python -m emblab.bench.peers` (fastai side by side), src/emblab/bench/gpu.sh (every GPU measurement),
`python -m emblab.bench.rossmann_gap` (a Rossmann checkpoint's train/validation gap, by window).
Each writes JSON and a Markdown table into its `out` folder; BENCHMARKS.md holds the measured tables."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from emblab.core.errors import ConfigError
from emblab.training.config import CONF

ROOT = CONF.parent


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pytorch_lightning": pl.__version__,
    }


def choose(names: str, known, what: str) -> list[str]:
    """A comma-separated choice, checked against the known names."""
    chosen = [n for n in names.split(",") if n]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ConfigError(f"{what}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def prepare(out: str, threads: int) -> Path:
    torch.set_num_threads(threads)
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_result(command: str, threads: int, **extra) -> dict:
    return {
        "command": f"python -m {command} " + " ".join(sys.argv[1:]),
        "threads": threads,
        "machine": machine(),
        **extra,
    }


def seed_summary(runs: list[dict], metrics=None) -> dict:
    """One model's runs over seeds ({test: {metric: value}, fit_s, params} each): each metric's mean, population sd
    and values, the median fit seconds, and the settings each seed chose. metrics: all of the first run's."""
    out = {}
    for metric in metrics or runs[0]["test"]:
        values = [r["test"][metric] for r in runs if metric in r["test"]]
        out[metric] = {"mean": statistics.mean(values), "sd": statistics.pstdev(values), "runs": values}
    out["fit_s"] = statistics.median(r["fit_s"] for r in runs)
    out["params"] = [r["params"] for r in runs]
    return out


def markdown_table(result: dict, details: str, header: list[str], rows: list[list[str]]) -> str:
    """A bench's Markdown: the command, machine and wall time in one line, then its table."""
    m = result["machine"]
    lines = [
        f"`{result['command']}` — {m['cpus']} CPUs ({m['processor']}), torch {m['torch']} on "
        f"{result['threads']} thread(s), {details}; {result['wall_seconds']:.0f} s in all.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_result(out: Path, stem: str, result: dict, table: str, update_md: str | None) -> None:
    """out/<stem>.json and out/<stem>.md; with update_md, the table also replaces its section there."""
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(table)
    if update_md:
        update_markdown(Path(update_md), table, stem)
    print(table)


def update_markdown(path: Path, table: str, section: str) -> None:
    """Replace the table between <!-- bench:SECTION --> and <!-- /bench:SECTION --> in a Markdown file."""
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise ConfigError(f"{path} has no {start} ... {end} section for the table")
    head, rest = text.split(start, 1)
    path.write_text(head + start + "\n" + table + end + rest.split(end, 1)[1])


def compose(overrides: list[str], out_dir: Path):
    """The config `python train.py <overrides>` would run, writing into out_dir (no Hydra run folder):
    how the benchmarks (and the tests) build a run without a process of its own."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)  # what train.py would see (the chosen groups, ${hydra:...} values)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.output_dir = str(out_dir)
        cfg.paths.log_dir = str(out_dir / "logs")
        del cfg["hydra"]
    return cfg


# a fit and nothing else: no validation, no checkpoints, summary, progress bar or learning-rate monitor,
# for the benchmarks that time trainer.fit against another library's fit
FIT_ONLY = [
    "logger=csv",
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "~callbacks.model_checkpoint",
    "~callbacks.lr_monitor",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "+trainer.enable_checkpointing=false",
]


def fit_and_predict(cfg):
    """Fit a collab config (seeded, as configured) and predict its validation ratings:
    (DataModule, predictions (N,), true ratings (N,), fit seconds)."""
    import time

    from emblab.training.build import build

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer, dm, model, _ = build(cfg)
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - start
    users, items, ratings = dm.val_ds.tensors
    model.eval()
    with torch.no_grad():
        pred = model(users, items)
    return dm, pred, ratings, fit_s
