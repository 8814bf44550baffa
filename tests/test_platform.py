"""Platform: DDP on CPU, sweeps (grid, Optuna, grid under DDP), resume after kill -9, evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from emblab.core.errors import ConfigError
from emblab.train import train
from emblab.training.runs import checkpoint_file

from conftest import ROOT, compose_cfg, run_cli

TINY = [
    "~callbacks.progress_bar",
    "~callbacks.model_summary",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=40",
    "data.batch_size=256",
]


def metrics_of(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


@pytest.mark.integration
def test_ddp_cpu_matches_one_process(tmp_path):
    """2 processes x 128 per rank == 1 process x 256: same samples per step, same averaged gradient."""
    results = {}
    for trainer in ("cpu", "ddp_cpu"):
        out = tmp_path / trainer
        wandb = ["logger=wandb"] if trainer == "ddp_cpu" else []
        res = run_cli(
            "train.py",
            f"trainer={trainer}",
            *TINY,
            *wandb,
            f"hydra.run.dir={out}",
            env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"},
        )
        assert res.returncode == 0, res.stderr[-3000:]
        results[trainer] = metrics_of(out)["val/rmse"]["final"]
        assert not list(out.glob("**/.pr_*"))  # one output folder per run, not per rank
    assert len(list((tmp_path / "ddp_cpu" / "wandb").glob("offline-run-*"))) == 1  # one W&B run, not one per rank
    print(f"val/rmse 1 process {results['cpu']:.6f}, 2-process DDP {results['ddp_cpu']:.6f}")
    assert results["ddp_cpu"] == pytest.approx(results["cpu"], abs=1e-4)


def sweep_jobs(sweep_dir):
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())


@pytest.mark.integration
def test_optuna_sweep_three_trials(tmp_path):
    sweep = tmp_path / "optuna"
    res = run_cli(
        "train.py",
        "hparams_search=collab_optuna",
        "hydra.sweeper.n_trials=3",
        *TINY,
        "trainer.limit_train_batches=5",
        f"hydra.sweep.dir={sweep}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(sweep_jobs(sweep)) == 3
    best = (sweep / "optimization_results.yaml").read_text()
    rmses = [metrics_of(job)["val/rmse"]["best"] for job in sweep_jobs(sweep)]
    assert f"best_value: {min(rmses)}" in best


@pytest.mark.integration
def test_grid_sweep_under_ddp_cpu(tmp_path):
    sweep = tmp_path / "ddp_grid"
    res = run_cli(
        "train.py",
        "-m",
        "trainer=ddp_cpu",
        "model.n_factors=5,10",
        *TINY,
        "trainer.limit_train_batches=5",
        f"hydra.sweep.dir={sweep}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = sweep_jobs(sweep)
    assert len(jobs) == 2 and all((job / "metrics.json").is_file() for job in jobs)
    assert not (sweep / "2").exists()  # the ranks did not start sweeps of their own


@pytest.mark.integration
def test_wrong_optimized_metric_is_one_line(tmp_path):
    res = run_cli(
        "train.py", "optimized_metric=val/rmsee", *TINY, "trainer.limit_train_batches=2", f"hydra.run.dir={tmp_path}"
    )
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]  # one line, before any training
    assert res.stderr.startswith(
        "error: optimized_metric='val/rmsee': CollabModel logs no such metric (did you mean val/rmse"
    )
    assert not (tmp_path / "checkpoints").exists()


def test_ckpt_path_last_without_checkpoint_says_how(tmp_path):
    with pytest.raises(ConfigError, match="hydra.run.dir=<its folder> with ckpt_path=last"):
        checkpoint_file("last", tmp_path)


@pytest.mark.integration
def test_resume_after_kill_9_matches_uninterrupted_run(tmp_path):
    # epochs long enough (batch 128) that the kill lands while training goes on, on a fast machine too
    args = [
        "train.py",
        "~callbacks.progress_bar",
        "~callbacks.model_summary",
        "trainer.max_epochs=5",
        "data.batch_size=128",
        "trainer.deterministic=true",
    ]
    straight = tmp_path / "straight"
    res = run_cli(*args, f"hydra.run.dir={straight}")
    assert res.returncode == 0, res.stderr[-3000:]

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(
        [sys.executable, *args, f"hydra.run.dir={crashed}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = crashed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 600
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # into the next epoch
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = torch.load(last, map_location="cpu", weights_only=True)  # a whole file, never a truncated one
    done_epochs = saved["epoch"] + 1
    assert 1 <= done_epochs < 5, "the kill came after the last epoch: nothing left to resume"

    res = run_cli(*args, f"hydra.run.dir={crashed}", "ckpt_path=last")
    assert res.returncode == 0, res.stderr[-3000:]
    resumed, uninterrupted = metrics_of(crashed), metrics_of(straight)
    assert resumed["global_step"] == uninterrupted["global_step"]  # no completed epoch lost or redone
    # the whole history survives the resume in place: every epoch's validation row, from step 0
    import pandas as pd

    rows = pd.read_csv(crashed / "csv" / "metrics.csv")
    assert rows["val/loss"].notna().sum() == 5 and rows["step"].min() == 0
    assert resumed["val/rmse"]["best_epoch"] == uninterrupted["val/rmse"]["best_epoch"]
    assert resumed["val/rmse"]["final"] == pytest.approx(uninterrupted["val/rmse"]["final"], abs=1e-4)


@pytest.mark.integration
def test_eval_command_writes_metrics_beside_checkpoint(tmp_path):
    cfg = compose_cfg(TINY, tmp_path)
    metrics = train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    res = run_cli("-m", "emblab.eval", f"ckpt_path={ckpt}")
    assert res.returncode == 0, res.stderr[-3000:]
    written = json.loads((tmp_path / "checkpoints" / "last.ckpt.eval_val.json").read_text())
    assert written["val/rmse"] == pytest.approx(metrics["val/rmse"]["final"], rel=1e-5)
    res = run_cli("-m", "emblab.eval", f"ckpt_path={ckpt}", "data.split_seed=7")
    assert res.returncode == 2 and "(split)" in res.stderr  # another split would score rows the model trained on
    res = run_cli("-m", "emblab.eval", f"ckpt_path={ckpt}", "data.split_seed=7", "other_data=true")
    assert res.returncode == 0, res.stderr[-2000:]  # unless asked for explicitly
    res = run_cli(
        "-m",
        "emblab.eval",
        f"ckpt_path={ckpt}",
        "data.source=ml-latest-small",
        "data.download=false",
        f"data.root={tmp_path}",
    )
    assert res.returncode == 2 and res.stderr.startswith("error:")


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=4", "trainer=ddp", "trainer.devices=4"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.nodes == 1  # one rank per GPU, as Lightning's SLURM env expects


@pytest.mark.integration
def test_local_parallel_launcher_runs_trials_in_processes(tmp_path):
    """A grid in processes of their own, and the summary of its trials."""
    sweep = tmp_path / "parallel"
    res = run_cli(
        "train.py",
        "-m",
        "hydra/launcher=local_parallel",
        "model.n_factors=5,10,20",
        *TINY,
        "trainer.limit_train_batches=5",
        f"hydra.sweep.dir={sweep}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(sweep_jobs(sweep)) == 3
    summary = (sweep / "sweep_summary.csv").read_text().splitlines()
    assert len(summary) == 4 and "model.n_factors" in summary[0] and "val/loss" in summary[0]
    assert (sweep / "sweep_summary.md").read_text().startswith("| job")


@pytest.mark.integration
def test_resume_refuses_a_malicious_checkpoint(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "x": Exploit()}, bad)
    res = run_cli("train.py", f"ckpt_path={bad}", *TINY, f"hydra.run.dir={tmp_path / 'run'}")
    assert res.returncode == 2 and "pwned" not in res.stdout
    assert res.stderr.strip().splitlines()[-1].startswith("error: refusing to load")


@pytest.mark.parametrize(
    "model, sweep", [("char_rnn", "model.n_hidden=16,32"), ("mixed_input", "model.emb_drop=0.0,0.1")]
)
@pytest.mark.integration
def test_grid_sweep_works_for_every_family(model, sweep, tmp_path):
    out = tmp_path / "sweep"
    res = run_cli("train.py", "-m", f"model={model}", sweep, "debug=fast_dev_run", f"hydra.sweep.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(sweep_jobs(out)) == 2
    rows = (out / "sweep_summary.csv").read_text().splitlines()
    assert len(rows) == 3 and sweep.split("=")[0] in rows[0]
