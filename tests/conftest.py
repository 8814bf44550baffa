"""Shared test helpers: compose the real Hydra config in-process (no subprocess per test) and point
its outputs at a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from emblab.bench import compose as compose_config

# The suite's models are tiny: one thread each is as fast, and it stays fast when the CPU is shared
# (2 threads beside another process made a collab run 45x slower; BENCHMARKS.md).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# the reference data: EMBLAB_SHARED_DIR (what paths.shared_dir reads), else the workplace's ../shared/data
SHARED = Path(os.environ.get("EMBLAB_SHARED_DIR") or ROOT.parent / "shared" / "data")


def compose_cfg(overrides: list[str], out_dir: Path) -> DictConfig:
    """The config `python train.py <overrides>` would run, writing into out_dir."""
    return compose_config(overrides, out_dir)


def model_names() -> list[str]:
    return sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def shared_path(*parts: str) -> Path:
    """A file of ../shared/data, or a skip with the reason printed."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (only the workplace's ../shared/data has it)")
    return path


def run_cli(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command as a user would (python train.py ..., python -m emblab.x ...) from the repo root."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", **(env or {})},
    )


FAST = ["debug=fast_dev_run", "logger=csv"]
