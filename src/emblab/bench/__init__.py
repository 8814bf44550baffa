"""Benchmarks: `python -m emblab.bench` (Lightning against a hand-written loop, per family),
`python -m emblab.bench.surprise` (EmbeddingDotBias against Surprise's SVD on MovieLens 100K folds),
`python -m emblab.bench.scale` (1M..25M generated ratings: epoch time, memory, CSV load),
`python -m emblab.bench.rossmann_gap` (a Rossmann checkpoint's train/validation gap, by window).
Each writes JSON and a Markdown table into its `out` folder; BENCHMARKS.md holds the measured tables."""

from __future__ import annotations

import os
import platform
import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch

from emblab.errors import ConfigError
from emblab.train import compose_config as compose  # noqa: F401  (the benchmarks' way to a config)

def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "pytorch_lightning": pl.__version__}


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
    return {"command": f"python -m {command} " + " ".join(sys.argv[1:]), "threads": threads, "machine": machine(),
            **extra}


def markdown_table(result: dict, details: str, header: list[str], rows: list[list[str]]) -> str:
    """A bench's Markdown: the command, machine and wall time in one line, then its table."""
    m = result["machine"]
    lines = [f"`{result['command']}` — {m['cpus']} CPUs ({m['processor']}), torch {m['torch']} on "
             f"{result['threads']} thread(s), {details}; {result['wall_seconds']:.0f} s in all.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
