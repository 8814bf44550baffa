"""Multi-node training kept working: two torchrun "nodes" on this host (one process each, gloo on the CPU) train
into one run folder, give the one-process metric, and resume from its last.ckpt on two nodes again; a Hydra
multirun under an external launcher is refused in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli

# a constant learning rate, so that the run can be extended by an epoch on resume (a one-cycle schedule
# planned for one epoch cannot, and is refused)
RUN = [
    "experiment=collab_ml100k",
    "logger=csv",
    "trainer.max_epochs=1",
    "data.batch_size=256",
    "model.optim.schedule=constant",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(run_dir, *overrides: str) -> list[subprocess.CompletedProcess]:
    """What README's multi-node command runs, with both nodes on 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                # static rendezvous: c10d's non-hosting agent exited 1 here after training, once the hosting agent
                # has closed its store first (its monitor loop's num_nodes_waiting call, as in meta-pytorch/torchx#540)
                "--rdzv-backend=static",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "train.py",
                *RUN,
                "trainer=ddp_cpu",
                "trainer.num_nodes=2",
                "trainer.devices=1",
                f"hydra.run.dir={run_dir}",
                *overrides,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two-node run did not end within 150 s")
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.integration
def test_two_nodes_on_one_host_train_resume_and_match_one_process(tmp_path):
    one = run_cli("train.py", *RUN, f"hydra.run.dir={tmp_path}/one")
    assert one.returncode == 0, one.stderr[-2000:]
    expected = json.loads((tmp_path / "one" / "metrics.json").read_text())

    for p in two_nodes(tmp_path / "mn"):
        assert p.returncode == 0, p.stderr[-6000:]
    runs = [p for p in tmp_path.iterdir() if p.name != "one"]
    assert runs == [tmp_path / "mn"]  # one run folder for both nodes
    got = json.loads((tmp_path / "mn" / "metrics.json").read_text())
    assert got["processes"] == 2 and got["status"] == "finished" and got["epochs"] == 1
    # the same global batches in the same order, split across the nodes: the one-process figure
    assert got["val/rmse"]["final"] == pytest.approx(expected["val/rmse"]["final"], abs=2e-3)
    assert len(list((tmp_path / "mn" / "csv").rglob("metrics.csv"))) == 1  # written by global rank zero only

    for p in two_nodes(tmp_path / "mn", "ckpt_path=last", "trainer.max_epochs=2"):
        assert p.returncode == 0, p.stderr[-6000:]
    resumed = json.loads((tmp_path / "mn" / "metrics.json").read_text())
    assert resumed["epochs"] == 2 and resumed["processes"] == 2
    assert resumed["global_step"] == 2 * got["global_step"]  # it continued from epoch 1, not from scratch


def test_a_multirun_under_torchrun_is_refused_in_one_line(tmp_path):
    r = run_cli(
        "train.py",
        "-m",
        "experiment=collab_ml100k",
        "model.n_factors=10,20",
        f"hydra.sweep.dir={tmp_path}/sweep",
        env={"TORCHELASTIC_RUN_ID": "x", "WORLD_SIZE": "2"},
    )
    assert r.returncode == 2
    assert r.stderr.count("error:") == 1 and "cannot run under torchrun" in r.stderr
    assert not (tmp_path / "sweep").exists()
