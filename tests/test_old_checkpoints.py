"""Checkpoints written before the layout of layers (commit 6d855e5: models/char_rnn.py, data/movielens.py's
MovieLensDataModule, flat hyperparameters with steps_per_call) still load: each family is trained with that
commit's own code, from git, and its checkpoint is used by today's commands."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest

from emblab.core import cli

from conftest import ROOT

OLD = "6d855e5"
SHORT = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "logger=csv",
    "~callbacks.progress_bar",
]


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("old")
    archive = out / "old.tar"
    res = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), OLD, "src", "conf", "train.py"],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"commit {OLD} is not in this checkout's history (a shallow clone?): {res.stderr.strip()[:200]}")
    with tarfile.open(archive) as t:
        t.extractall(out, filter="data")
    return out


def old_checkpoint(tree, name: str, overrides: list[str]):
    run = tree / "runs" / name
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [sys.executable, "train.py", *overrides, *SHORT, f"hydra.run.dir={run}"],
        cwd=tree,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.integration
def test_every_family_of_the_old_layout_loads(old_tree, tmp_path, capsys):
    from emblab import embeddings, eval, generate, interpret, predict

    collab = old_checkpoint(old_tree, "collab", [])
    tabular = old_checkpoint(old_tree, "tabular", ["model=mixed_input"])
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 300)
    char = old_checkpoint(old_tree, "char", ["model=char_rnn", "data=text", f"data.path={corpus}", "model.samples=0"])
    cli.main(eval.Args, eval.evaluate, [f"ckpt_path={collab}", f"out={tmp_path / 'e.json'}"])
    cli.main(predict.Args, predict.run, [f"ckpt_path={collab}", "user=196", "k=3"])
    cli.main(interpret.Args, interpret.interpret, [f"ckpt_path={collab}", f"out={tmp_path / 'i'}"])
    cli.main(eval.Args, eval.evaluate, [f"ckpt_path={tabular}", f"out={tmp_path / 't.json'}"])
    cli.main(embeddings.Args, embeddings.run, [f"ckpt_path={tabular}", "action=export", f"out={tmp_path / 'emb'}"])
    cli.main(generate.Args, generate.run, [f"ckpt_path={char}", "prompt=the", "n=20"])
    said = capsys.readouterr().out
    assert "top 3 unseen items for user 196" in said and "val/rmse" in (tmp_path / "e.json").read_text()
    assert (tmp_path / "i" / "pca_items.png").is_file() and any((tmp_path / "emb").glob("*.parquet"))
    last = said.splitlines()[-1]
    assert last.startswith("the") and len(last) == 23  # the prompt and 20 characters
