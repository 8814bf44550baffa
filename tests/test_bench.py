"""The benchmark commands run, write what they promise, and their guards trip. The figures themselves
are measured by `make bench*` on a quiet machine (BENCHMARKS.md), not here."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emblab.bench import throughput, update_markdown
from emblab.core.errors import ConfigError

from conftest import run_cli, shared_path


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
    from emblab.training.build import build

    fam = throughput.FAMILIES["stateful_lstm"]
    cfg = throughput.compose(
        [
            *fam.overrides,
            "logger=csv",
            "trainer.max_steps=3",
            "trainer.max_epochs=-1",
            "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0",
            "model.n_hidden=32",
            "model.n_layers=1",
        ],
        tmp_path,
    )
    _, dm, model, s = build(cfg)
    # both time the steps after a warm-up of one call (here one step)
    n = throughput.lightning_run(type(model), s, dm)[1]
    assert n == throughput.loop_run(s, dm, fam, 3, warm=1)[1] == 2 * 512 * 8


@pytest.mark.integration
def test_min_ratio_guard_and_unknown_family(tmp_path):
    r = run_cli(
        "-m",
        "emblab.bench",
        "quick=true",
        "families=EmbeddingDotBias",
        "reps=1",
        f"out={tmp_path}",
        "min_ratio=100",
        timeout=300,
    )
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

    args = surprise.Args(
        data=surprise.DataArgs(root=str(root), split="u1"),
        experiments="collab_surprise",
        seeds="42,43",
        out=str(tmp_path),
    )
    result = surprise.main(args)
    row = result["splits"]["u1"]
    e = row["emblab"]["collab_surprise"]
    assert e["rmse"] < row["svd_tuned"]["rmse"] < row["svd"]["rmse"] < 1.0
    assert len(e["rmse_runs"]) == 2 and e["rmse_sd"] > 0  # one fit per seed, the seeds differ
    assert e["fit_s"] > 0 and row["svd"]["fit_s"] > 0 and row["n_test"] == 20_000
    assert "| u1 | collab_surprise |" in (tmp_path / "surprise.md").read_text()


def test_surprise_takes_any_rating_file_and_split(tmp_path):
    """A ratings.csv of another source (half stars, ml-latest-small's format) with its random split."""
    pytest.importorskip("surprise", reason="scikit-surprise (the bench extra) is not installed")
    from emblab.bench import surprise

    root = tmp_path / "ml-latest-small"
    root.mkdir()
    g = np.random.default_rng(0)
    users, items = g.integers(1, 60, 3000), g.integers(1, 80, 3000)
    ratings = np.clip(np.round((1 + (users % 5) / 2 + (items % 3) / 2 + g.normal(0, 0.5, 3000)) * 2) / 2, 0.5, 5)
    pairs = {(u, i): r for u, i, r in zip(users, items, ratings, strict=False)}
    (root / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},0\n" for (u, i), r in pairs.items())
    )
    (root / "movies.csv").write_text("movieId,title,genres\n" + "".join(f"{i},Film {i},Drama\n" for i in range(1, 80)))
    args = surprise.Args(
        data=surprise.DataArgs(source="ml-latest-small", root=str(root), split="random"),
        experiments="collab_surprise",
        seeds="1",
        out=str(tmp_path / "out"),
    )
    row = surprise.main(args)["splits"]["random"]
    assert row["n_test"] == round(len(pairs) * 0.2) and row["svd"]["rmse"] < 1.5
    assert row["emblab"]["collab_surprise"]["rmse"] < 1.5
    with pytest.raises(ConfigError, match=r"data.split \(data.source=ml-latest-small\): unknown u1"):
        surprise.main(surprise.Args(data=surprise.DataArgs(source="ml-latest-small", root=str(root), split="u1")))


def test_scale_generates_movielens_25m_style_data_and_measures_it(tmp_path):
    from emblab.bench import scale
    from emblab.data.movielens import RATINGS_CSV
    from emblab.data.reader import read_frame

    result = scale.main(scale.Args(sizes="100K", out=str(tmp_path / "out"), data_dir=str(tmp_path / "data")))
    r = result["sizes"]["100K"]
    assert r["ratings"] == 100_000 and r["train_ratings"] == 80_000
    assert r["epoch_s"] > 0 and 0.1 < r["peak_rss_gb"] < 8
    df = read_frame(tmp_path / "data" / "100K" / "ratings.csv", RATINGS_CSV)
    assert len(df) == 100_000 and not df.duplicated(["user", "item"]).any()
    assert set(df["rating"].unique()) <= {x / 2 for x in range(1, 11)}
    assert df["user"].max() <= scale.N_USERS and df["item"].max() <= scale.N_ITEMS
    assert (tmp_path / "data" / "100K" / "ratings.csv").read_text().startswith("userId,movieId,rating,timestamp\n")
    # the same rows with 10-character text ids, through the same reader (the ranker's epoch: make test-slow)
    text = scale.main(scale.Args(sizes="100K", ids="text", out=str(tmp_path / "out"), data_dir=str(tmp_path / "data")))
    t = text["sizes"]["100K"]
    assert t["ratings"] == 100_000 and t["epoch_s"] > 0
    lines = (tmp_path / "data" / "100K" / "ratings_text.csv").read_text().splitlines()
    first, again = lines[1].split(","), (tmp_path / "data" / "100K" / "ratings.csv").read_text().splitlines()[1]
    assert first[0] == f"U{int(again.split(',')[0]):09d}" and len(first[0]) == len(first[1]) == 10
    assert (tmp_path / "out" / "scale-collab-text.md").exists()


@pytest.mark.slow
def test_scale_measures_the_rankers_epoch(tmp_path):
    from emblab.bench import scale

    args = scale.Args(sizes="100K", model="collab_rank", batch_size=256, out=str(tmp_path), data_dir=str(tmp_path))
    r = scale.main(args)["sizes"]["100K"]
    assert r["epoch_s"] > 0 and (tmp_path / "scale-collab_rank-int.md").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_lightning_keeps_pace_with_a_hand_written_loop(tmp_path):
    """The regression guard (make test-slow): every family within 15% of the loop even in a quick,
    noisy run (the full benchmark's medians are in BENCHMARKS.md)."""
    r = run_cli("-m", "emblab.bench", "quick=true", f"out={tmp_path}", "min_ratio=0.85", timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_collab_size_sweep_finds_each_sizes_best_and_the_recipes_gap(tmp_path):
    from emblab.bench import collab_size

    args = collab_size.Args(
        source="embedded",
        sizes="r25,u25",
        variants="reg",
        knob_multiples="2",
        epoch_multiples="0.4",
        out=str(tmp_path),
        update_md=None,
    )
    result = collab_size.main(args)
    v = result["variants"]["reg"]
    assert v["knobs"] == [v["recipe"]["knob"], 2 * v["recipe"]["knob"]] and len(v["epochs"]) == 2
    for r in v["sizes"].values():
        assert len(r["cells"]) == 4 and 15_000 < r["n_train"] < 25_000
        best = min(c["rmse"] for c in r["cells"].values())
        assert r["best"]["rmse"] == best and r["gap"] == pytest.approx(r["recipe_rmse"] - best)
        assert r["holds"] == (r["gap"] <= 0.005)
    assert v["sizes"]["u25"]["n_users"] < 300 < v["sizes"]["r25"]["n_users"]  # users sampled, or ratings
    assert "| reg | r25 |" in (tmp_path / "collab_size.md").read_text()
    with pytest.raises(ConfigError, match="rNN"):
        collab_size.main(collab_size.Args(sizes="x10", out=str(tmp_path)))


def test_scale_generates_any_shape(tmp_path):
    """users= items=: the same generator among ML-1M's (or any) numbers of users and films."""
    from emblab.bench import scale
    from emblab.data.movielens import RATINGS_CSV
    from emblab.data.reader import read_frame

    args = scale.Args(users=60, items=40, data_dir=str(tmp_path))
    folder = scale.generate(1000, scale.data_folder(args, "100K"), n_users=60, n_items=40)
    assert folder.name == "100K-60x40"
    df = read_frame(folder / "ratings.csv", RATINGS_CSV)
    assert len(df) == 1000 and df["user"].max() <= 60 and df["item"].max() <= 40
    assert not df.duplicated(["user", "item"]).any()
