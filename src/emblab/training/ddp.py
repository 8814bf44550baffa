"""Lightning's DDP inside Hydra: what emblab does so that `python train.py -m ... trainer=ddp` works.

Lightning starts ranks 1..N-1 by re-running `sys.argv` (its subprocess script launcher), which under a
Hydra multirun holds `-m` and the whole sweep, so every rank would start a sweep of its own; and it
leaves its rendezvous variables set, so the next job of the sweep would think an outside launcher made
its ranks. Upstream: facebookresearch/hydra#2070 ("Improving Hydra + PL + DDP experience", open) and
Lightning-AI/pytorch-lightning#18175 ("Hydra + DDP improvements", open, after #11617). Remove this
module when one of them lands.
"""

from __future__ import annotations

import os
import sys

import torch
from omegaconf import read_write

# set by Lightning's launcher in the rank-zero process; left set, the next job of a multirun would
# think an outside launcher (torchrun, SLURM) made its ranks and never start them
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def external_launcher() -> str | None:
    """What started this process as one of several ranks, if something did: torchrun, SLURM's srun (or another
    launcher that sets WORLD_SIZE); None for a plain `python train.py`."""
    if os.environ.get("TORCHELASTIC_RUN_ID"):
        return "torchrun"
    if int(os.environ.get("SLURM_NTASKS") or 1) > 1:
        return "SLURM (SLURM_NTASKS > 1)"
    if int(os.environ.get("WORLD_SIZE") or 1) > 1:
        return "an external launcher (WORLD_SIZE > 1)"
    return None


def end_ddp(env_before: dict[str, str | None]) -> None:
    """Leave the process as it was before a DDP run, so a multirun's next job can start its own."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    for key, value in env_before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def prepare_ddp_relaunch() -> dict[str, str | None]:
    """Let Lightning's DDP relaunch work inside a Hydra multirun; returns the DDP environment as it was, for
    end_ddp.

    Lightning starts ranks 1..N-1 by re-running `sys.argv` with hydra.run.dir set to
    HydraConfig's run.dir. In a multirun sys.argv holds `-m` and the whole sweep, so every rank
    would start a sweep of its own. Point both at this one job: its overrides and its folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    env_before = {k: os.environ.get(k) for k in DDP_ENV}
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return env_before
    hc = HydraConfig.get()
    # hydra.mode=RUN: an hparams_search config among the overrides would otherwise set MULTIRUN again
    sys.argv = [sys.argv[0], *hc.overrides.task, "hydra.mode=RUN"]
    with read_write(hc.run):
        hc.run.dir = hc.runtime.output_dir
    return env_before
