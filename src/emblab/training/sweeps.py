"""After a Hydra multirun (grid or Optuna): one table of parameters -> metrics for the whole sweep,
written as sweep_summary.csv and sweep_summary.md into the sweep folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from emblab.core.errors import ConfigError

log = logging.getLogger(__name__)


def summarize(sweep_dir: str | Path, metric: str | None = None) -> pd.DataFrame | None:
    """Rows: one per finished job (its overrides and the best of each val/ metric)."""
    sweep_dir, rows = Path(sweep_dir), []
    for metrics_path in sorted(
        sweep_dir.glob("*/metrics.json"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0
    ):
        job = metrics_path.parent
        overrides_path = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.exists() else []
        row: dict = {"job": job.name}
        row.update(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("hydra.", "~")))
        metrics = json.loads(metrics_path.read_text())
        row.update({name: v["best"] for name, v in metrics.items() if isinstance(v, dict) and name.startswith("val/")})
        row["wall_seconds"] = metrics.get("wall_seconds")
        rows.append(row)
    if not rows:
        return None
    df = pd.DataFrame(rows)
    if metric and metric in df:
        df = df.sort_values(metric, kind="stable")
    df.to_csv(sweep_dir / "sweep_summary.csv", index=False)
    (sweep_dir / "sweep_summary.md").write_text(
        df.to_markdown(index=False) + "\n" if _has_tabulate() else _markdown(df)
    )
    return df


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _markdown(df: pd.DataFrame) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells]) + "\n"


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml) that writes the sweep table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        df = summarize(config.hydra.sweep.dir, config.get("optimized_metric"))
        if df is not None:
            log.info("sweep summary: %s/sweep_summary.md (%d runs)", config.hydra.sweep.dir, len(df))


def name_sweep(cfg: DictConfig) -> None:
    """In a multirun, W&B groups the trials under sweep_name, by default the sweep folder's name."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.get("sweep_name") is None and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        with open_dict(cfg):
            cfg.sweep_name = f"{cfg.task_name}/{Path(HydraConfig.get().sweep.dir).name}"


def metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value Hydra sweepers optimise: the best of `name` over the run. A name never logged is an error."""
    if not name:
        return None
    if name not in metrics:
        known = sorted(k for k, v in metrics.items() if isinstance(v, dict))
        raise ConfigError(f"optimized_metric={name!r} was never logged; logged metrics: {', '.join(known) or 'none'}")
    return metrics[name]["best"]
