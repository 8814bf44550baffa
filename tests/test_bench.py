"""The benchmark commands run, write what they promise, and their guards trip. The figures themselves
are measured by `make bench*` on a quiet machine (BENCHMARKS.md), not here."""

from __future__ import annotations

import json

import pytest

from conftest import SHARED, run_cli, shared_path
from emblab.bench import throughput, update_markdown
from emblab.errors import ConfigError


def test_throughput_writes_json_and_table(tmp_path):
    args = throughput.Args(out=str(tmp_path), quick=True, families="EmbeddingDotBias,char_seq_rnn", reps=1)
    result = throughput.main(args)
    saved = json.loads((tmp_path / "throughput.json").read_text())
    assert saved["families"].keys() == {"EmbeddingDotBias", "char_seq_rnn"} == result["families"].keys()
    for r in saved["families"].values():
        assert r["lightning_samples_per_s"] > 0 and r["loop_samples_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["lightning_samples_per_s"] / r["loop_samples_per_s"], rel=1e-2)
    assert saved["families"]["EmbeddingDotBias"]["batch_size"] == 64  # the family's default batch
    assert "| EmbeddingDotBias | 64 |" in (tmp_path / "throughput.md").read_text()


def test_both_paths_count_the_same_samples(tmp_path):
    """Same steps, same data: the Lightning path and the loop see the same number of targets."""
    from emblab.train import build_data_and_model

    fam = throughput.FAMILIES["stateful_lstm"]
    cfg = throughput.compose([*fam.overrides, "logger=csv", "trainer.max_steps=3", "trainer.max_epochs=-1",
                              "trainer.limit_val_batches=0", "trainer.num_sanity_val_steps=0",
                              "model.n_hidden=32", "model.n_layers=1"], tmp_path)
    dm, _ = build_data_and_model(cfg)
    # both time the steps after a warm-up of one call (here one step)
    assert throughput.lightning_run(cfg, dm)[1] == throughput.loop_run(cfg, dm, fam, 3, warm=1)[1] == 2 * 512 * 8


@pytest.mark.integration
def test_min_ratio_guard_and_unknown_family(tmp_path):
    r = run_cli("-m", "emblab.bench", "quick=true", "families=EmbeddingDotBias", "reps=1", f"out={tmp_path}",
                "min_ratio=100", timeout=300)
    assert r.returncode == 1 and "below min_ratio=100" in r.stderr, r.stderr[-2000:]
    with pytest.raises(ConfigError, match="unknown nope"):
        throughput.main(throughput.Args(out=str(tmp_path), families="nope"))


def test_update_markdown_replaces_only_its_section(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("intro\n<!-- bench:throughput -->\nold\n<!-- /bench:throughput -->\nafter\n")
    update_markdown(md, "| new |\n", "throughput")
    assert md.read_text() == "intro\n<!-- bench:throughput -->\n| new |\n<!-- /bench:throughput -->\nafter\n"
    with pytest.raises(ConfigError, match="no <!-- bench:surprise -->"):
        update_markdown(md, "x", "surprise")


def test_surprise_side_by_side_on_u1(tmp_path):
    pytest.importorskip("surprise", reason="scikit-surprise (the bench extra) is not installed")
    root = shared_path("movielens", "ml-100k")
    from emblab.bench import surprise

    result = surprise.main(surprise.Args(root=str(root), folds="u1", out=str(tmp_path), reps=1))
    row = result["folds"]["u1"]
    assert row["emblab"]["rmse"] < row["svd"]["rmse"] < 1.0
    assert row["emblab"]["fit_s"] > 0 and row["svd"]["fit_s"] > 0
    assert "| u1 |" in (tmp_path / "surprise.md").read_text()


def test_scale_generates_movielens_25m_style_data_and_measures_it(tmp_path):
    from emblab.bench import scale
    from emblab.data.movielens import RATINGS_CSV, read_ratings

    result = scale.main(scale.Args(sizes="100K", out=str(tmp_path / "out"), data_dir=str(tmp_path / "data")))
    r = result["sizes"]["100K"]
    assert r["ratings"] == 100_000 and r["train_ratings"] == 80_000
    assert r["epoch_s"] > 0 and 0.1 < r["peak_rss_gb"] < 8
    df = read_ratings(tmp_path / "data" / "100K" / "ratings.csv", RATINGS_CSV)
    assert len(df) == 100_000 and not df.duplicated(["user", "item"]).any()
    assert set(df["rating"].unique()) <= {x / 2 for x in range(1, 11)}
    assert df["user"].max() <= scale.N_USERS and df["item"].max() <= scale.N_ITEMS
    assert (tmp_path / "data" / "100K" / "ratings.csv").read_text().startswith("userId,movieId,rating,timestamp\n")


@pytest.mark.slow
@pytest.mark.integration
def test_lightning_keeps_pace_with_a_hand_written_loop(tmp_path):
    """The regression guard (make test-slow): every family within 15% of the loop even in a quick,
    noisy run (the full benchmark's medians are in BENCHMARKS.md)."""
    r = run_cli("-m", "emblab.bench", "quick=true", f"out={tmp_path}", "min_ratio=0.85", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
