"""Runs that lose no work: last.ckpt is the last completed epoch, a signal leaves a checkpoint to resume from
and the conventional exit status, one training at a time writes a run folder, a resume or an evaluation never
uses another split, model or broken weights, and generation is bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from emblab.core import cli
from emblab.train import main, train

from conftest import ROOT, compose_cfg

QUIET = ["logger=csv", "~callbacks.progress_bar", "~callbacks.model_summary"]
SHORT = [*QUIET, "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def one_error(capsys, fn) -> str:
    with pytest.raises(SystemExit) as e:
        fn()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def run3(tmp_path_factory):
    """A 3-epoch run whose best epoch (mode=max: the highest val/loss) comes first."""
    out = tmp_path_factory.mktemp("run3")
    over = [*SHORT, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=max", "model.optim.lr=1e-2"]
    metrics = train(compose_cfg(over, out))
    return out, metrics


def test_last_ckpt_is_the_last_completed_epoch(run3):
    out, metrics = run3
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == metrics["global_step"]
    best = torch.load(metrics["best_checkpoint"], weights_only=True)
    assert best["epoch"] < last["epoch"]  # the best is an older epoch, last.ckpt is not
    assert metrics["status"] == "finished"


def test_last_ckpt_follows_every_n_train_steps(tmp_path):
    over = [
        *QUIET,
        "model.steps_per_call=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=10",
        "trainer.limit_val_batches=1",
        "callbacks.model_checkpoint.every_n_train_steps=4",
    ]
    seen = []
    from emblab.training.callbacks import ModelCheckpoint

    real = ModelCheckpoint.save_last_now

    def spy(self, trainer):
        real(self, trainer)
        seen.append(torch.load(self.last_model_path, weights_only=True)["global_step"])

    mp = pytest.MonkeyPatch()
    mp.setattr(ModelCheckpoint, "save_last_now", spy)
    try:
        train(compose_cfg(over, tmp_path))
    finally:
        mp.undo()
    assert seen[:2] == [4, 8] and seen[-1] == 10  # every 4 optimizer steps, and the epoch's end


def start(args: list[str], out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", *args, f"hydra.run.dir={out}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
    )


def wait_for(path, proc, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"


LONG = [*QUIET, "trainer.max_epochs=30", "data.batch_size=256", "model.steps_per_call=8", "torch_threads=1"]


@pytest.mark.integration
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_leaves_a_checkpoint_and_a_way_back(tmp_path, sig, status):
    out = tmp_path / "run"
    proc = start(LONG, out)
    wait_for(out / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    name = signal.Signals(sig).name
    assert lines[-1].startswith(f"stopped by {name} at epoch ") and "ckpt_path=last" in lines[-1], err[-2000:]
    assert f"hydra.run.dir={out}" in lines[-1] and "Traceback" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["signal"] == name
    stopped = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert stopped["emblab"]["optimizer_steps"] == metrics["optimizer_steps"] > 0  # where the run was, not before
    if sig == signal.SIGTERM:  # the line's command resumes it (2 epochs in all, to end soon)
        resume = lines[-1].split("resume with ", 1)[1].split()[2:]
        res = subprocess.run(
            [sys.executable, "train.py", *resume, "trainer.max_epochs=30"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        assert res.returncode == 0, res.stderr[-2000:]
        done = json.loads((out / "metrics.json").read_text())
        assert done["status"] == "finished" and done["epochs"] == 30


@pytest.mark.integration
def test_one_training_at_a_time_in_a_run_folder(tmp_path):
    out = tmp_path / "run"
    first = start(LONG, out)
    wait_for(out / ".lock", first)
    second = subprocess.run(
        [sys.executable, "train.py", *SHORT, f"hydra.run.dir={out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1].startswith(f"error: hydra.run.dir={out}: another training")
    assert not (out / ".lock").exists()  # released when the first ended


def test_a_stale_lock_is_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / ".lock").write_text(f"{dead.stdout.strip()} {socket.gethostname()}")
    with caplog.at_level("WARNING"):
        train(compose_cfg([*SHORT, "trainer.max_epochs=1"], out))
    assert "stale lock" in caplog.text and not (out / ".lock").exists()


def test_resume_with_another_split_or_model_is_refused(run3, tmp_path, capsys):
    out, _ = run3
    last = out / "checkpoints" / "last.ckpt"
    for over, says in (
        (["data.split_seed=7"], "the data now differs from the run's (split)"),
        (["model=collab_nn"], "its weight net.u_bias.weight is (943, 1), this model's is no such weight"),
        (["model.n_factors=20"], "the settings differ: {'n_factors': (50, 20)}"),
        (["trainer.max_epochs=5"], "one-cycle schedule spans"),
    ):
        cfg = compose_cfg([*SHORT, "trainer.max_epochs=3", f"ckpt_path={last}", *over], tmp_path / "r")
        assert says in one_error(capsys, lambda cfg=cfg: main(cfg)), over


def test_non_finite_weights_are_refused_naming_the_tensor(run3, tmp_path, capsys):
    ckpt = torch.load(run3[0] / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["state_dict"]["net.i_bias.weight"][3, 0] = float("nan")
    bad = tmp_path / "nan.ckpt"
    torch.save(ckpt, bad)
    from emblab import eval as eval_cmd
    from emblab import predict

    for mod, body, extra in ((predict, predict.run, ["user=196", "k=5"]), (eval_cmd, eval_cmd.evaluate, [])):
        line = one_error(
            capsys, lambda mod=mod, body=body, extra=extra: cli.main(mod.Args, body, [f"ckpt_path={bad}", *extra])
        )
        assert "weight net.i_bias.weight holds 1 non-finite values" in line


def test_eval_of_a_split_the_data_does_not_have(run3, capsys):
    from emblab.eval import Args, evaluate

    line = one_error(
        capsys, lambda: cli.main(Args, evaluate, [f"ckpt_path={run3[0] / 'checkpoints' / 'last.ckpt'}", "split=test"])
    )
    assert "its data has no test split" in line


def test_a_list_column_is_not_a_number(tmp_path, capsys):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": list("pqrs") * 30, "x": [[1.0, 2.0]] * 120, "y": range(120)}).to_parquet(path)
    over = [
        *SHORT,
        "model=mixed_input",
        "data=tabular",
        f"data.path={path}",
        "data.target=y",
        "data.cat_cols=[a]",
        "data.cont_cols=[x]",
    ]
    line = one_error(capsys, lambda: main(compose_cfg(over, tmp_path / "r")))
    assert "column 'x': holds ndarrays, not numbers" in line


def test_generation_is_bounded_and_streams(run_char):
    from emblab.analysis.generate import stream
    from emblab.generate import MAX_CHARS, Args

    with pytest.raises(SystemExit):
        cli.main(Args, lambda a: None, [f"ckpt_path={run_char}", f"n={MAX_CHARS + 1}"])
    from emblab.generate import load

    model, itos, lower = load(run_char)
    seen = []
    real = model.next_log_probs

    def spy(ids, state=None):
        seen.append(len(ids))
        return real(ids, state)

    model.next_log_probs = spy
    gen = stream(model, itos, "the quick brown fox jumps", 500, seed=0, lower=lower)
    first = next(gen)  # a character before the rest is generated
    assert isinstance(first, str) and seen == [25]  # the prompt read once; the rest is not generated yet
    rest = list(gen)
    assert len(rest) == 499 and max(seen[1:]) <= model.cfg.cs  # each step reads a window, not the whole text


@pytest.fixture(scope="module")
def run_char(tmp_path_factory):
    out = tmp_path_factory.mktemp("char")
    corpus = out / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    over = [
        *SHORT,
        "model=char_rnn",
        "data=text",
        f"data.path={corpus}",
        "model.n_hidden=16",
        "model.samples=0",
        "trainer.max_epochs=1",
    ]
    return train(compose_cfg(over, out))["last_checkpoint"]


def test_each_epoch_has_its_own_order(tmp_path):
    """Lightning tells a batch sampler's `sampler` the epoch: each epoch is shuffled anew (seed + epoch)."""
    import pytorch_lightning as pl

    from emblab.training.build import build

    over = [*QUIET, "trainer.max_epochs=3", "trainer.limit_val_batches=1", "trainer.limit_train_batches=2"]
    trainer, dm, model, _ = build(compose_cfg([*over, "model.steps_per_call=1"], tmp_path))
    firsts = []

    class Spy(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                firsts.append(batch[0].clone())

    trainer.callbacks.append(Spy())
    trainer.fit(model, datamodule=dm)
    assert len(firsts) == 3 and not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[1], firsts[2])


def test_a_mid_epoch_checkpoint_resumes_after_the_rows_it_trained_on(tmp_path):
    """Stopped after 5 of an epoch's calls (a checkpoint every 40 optimizer steps), the resumed run trains on the
    epoch's other batches only: the same steps and weights as the run that was never stopped."""
    over = [
        *QUIET,
        "trainer.max_epochs=2",
        "data.batch_size=512",
        "model.steps_per_call=8",
        "callbacks.model_checkpoint.every_n_train_steps=40",
        "trainer.limit_val_batches=2",
    ]
    straight = train(compose_cfg(over, tmp_path / "straight"))
    out = tmp_path / "stopped"

    from emblab.training.callbacks import ModelCheckpoint

    class Stop(Exception):
        pass

    real = ModelCheckpoint.save_last_now

    def stop_after_first(self, trainer):  # the first mid-epoch save of epoch 1, then a crash
        real(self, trainer)
        if trainer.current_epoch == 1 and 0 < trainer.fit_loop.epoch_loop.batch_progress.current.completed < 10:
            raise Stop

    mp = pytest.MonkeyPatch()
    mp.setattr(ModelCheckpoint, "save_last_now", stop_after_first)
    with pytest.raises(Stop):
        train(compose_cfg(over, out))
    mp.undo()
    saved = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert 0 < saved["emblab"]["optimizer_steps"] - straight["optimizer_steps"] // 2 < 80  # mid-epoch 1
    resumed = train(compose_cfg([*over, "ckpt_path=last"], out))
    assert resumed["optimizer_steps"] == straight["optimizer_steps"]
    a = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ctrl_c_waits_for_a_batch_boundary_and_a_second_stops_at_once():
    from emblab.training.callbacks import DeferredInterrupt

    cb = DeferredInterrupt()
    cb.handler(signal.SIGINT, None)  # inside a checkpoint save, say: nothing raised there
    assert cb.pending
    with pytest.raises(KeyboardInterrupt):
        cb.on_train_batch_end(None, None, None, None, 0)  # the next batch boundary stops the fit
    assert not cb.pending
    cb.handler(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        cb.handler(signal.SIGINT, None)  # pressed twice: at once
