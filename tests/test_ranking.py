"""Top-N: the TopK metric against a hand count and against torchmetrics, the ranker learning planted tastes
far beyond popularity, its test part scored once on the best checkpoint, DDP giving the metric of one process,
recommendations and interpretation from its checkpoint, and the side-by-side benchmark."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from emblab.models.metrics import TopK

from conftest import compose_cfg, run_cli

QUIET = ["logger=csv", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]


def test_topk_by_hand():
    # user 0: seen item 0 (never a candidate though scored highest); relevant 1 and 4. Ranking of the
    # candidates: 3, 1, 2, 4 -> hits at ranks 2 and 4.  user 1: nothing relevant -> not counted.
    scores = torch.tensor([[9.0, 7.0, 1.0, 8.0, 0.5], [1.0, 2.0, 3.0, 4.0, 5.0]])
    seen = (torch.tensor([0]), torch.tensor([0]))
    relevant = (torch.tensor([0, 0]), torch.tensor([1, 4]))
    m = TopK(k=2)
    m.update(scores, seen, relevant)
    r = {k: float(v) for k, v in m.compute().items()}
    ideal2 = 1 + 1 / math.log2(3)
    assert r["ndcg@2"] == pytest.approx((1 / math.log2(3)) / ideal2)  # one hit, at rank 2
    assert r["recall@2"] == pytest.approx(0.5) and r["mrr@2"] == pytest.approx(0.5) and r["hit@2"] == 1.0
    m = TopK(k=4)
    m.update(scores, seen, relevant)
    r = {k: float(v) for k, v in m.compute().items()}
    assert r["ndcg@4"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal2)
    assert r["recall@4"] == 1.0 and r["mrr@4"] == pytest.approx(0.5)
    assert int(m.users) == 1


def test_topk_agrees_with_torchmetrics_retrieval_metrics():
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalMRR, RetrievalNormalizedDCG, RetrievalRecall

    g = torch.Generator().manual_seed(0)
    U, n_items, k = 40, 30, 10
    scores = torch.randn(U, n_items, generator=g)
    target = torch.rand(U, n_items, generator=g) < 0.15
    # at most k relevant per user, so the two forms of Recall agree; users with none are skipped by both
    target &= torch.rand(U, n_items, generator=g).argsort(1).argsort(1) < k
    m = TopK(k)
    m.update(scores, (torch.tensor([], dtype=torch.long),) * 2, target.nonzero(as_tuple=True))
    ours = {k: float(v) for k, v in m.compute().items()}
    idx = torch.arange(U)[:, None].expand(U, n_items).reshape(-1)
    for name, cls in (("ndcg", RetrievalNormalizedDCG), ("recall", RetrievalRecall), ("mrr", RetrievalMRR)):
        theirs = float(cls(top_k=k, empty_target_action="skip")(scores.reshape(-1), target.reshape(-1), indexes=idx))
        assert ours[f"{name}@{k}"] == pytest.approx(theirs, abs=1e-6), name
    theirs = float(
        RetrievalHitRate(top_k=k, empty_target_action="skip")(scores.reshape(-1), target.reshape(-1), indexes=idx)
    )
    assert ours[f"hit@{k}"] == pytest.approx(theirs, abs=1e-6)


def planted(path, n_users=240, n_items=120, groups=6, per_user=14, seed=0):
    """Users of a group interact only with their group's items, with text ids: a taste the ranker must find."""
    rng = np.random.default_rng(seed)
    size = n_items // groups
    rows = []
    for u in range(n_users):
        g = u % groups
        for i in rng.choice(size, per_user, replace=False):
            rows.append((f"user{u}", f"item{g * size + i}", int(rng.integers(1, 50))))
    pd.DataFrame(rows, columns=["who", "what", "plays"]).to_csv(path, index=False)
    return path


def planted_data(data, frac: float = 0.15) -> list[str]:
    """The overrides that read a planted file, split per user into train, validation and test."""
    return [
        "data=interactions",
        f"data.path={data}",
        "data.user_col=who",
        "data.item_col=what",
        "data.rating_col=null",
        "data.split=user_random",
        f"data.val_frac={frac}",
        f"data.test_frac={frac}",
    ]


def ranker_cfg(data, tmp_path, *extra):
    return compose_cfg(
        [
            "model=collab_rank",
            *planted_data(data),
            "data.batch_size=64",
            "trainer.max_epochs=40",
            "trainer.min_epochs=5",
            "callbacks.early_stopping.patience=5",
            "seed=0",
            *QUIET,
            *extra,
        ],
        tmp_path,
    )


@pytest.fixture(scope="module")
def trained_ranker(tmp_path_factory):
    from emblab.train import train

    tmp = tmp_path_factory.mktemp("rank")
    data = planted(tmp / "plays.csv")
    metrics = train(ranker_cfg(data, tmp / "run"))
    return data, tmp / "run", metrics


def test_the_ranker_finds_planted_tastes_and_scores_its_test_part_on_the_best_checkpoint(trained_ranker):
    _, run, metrics = trained_ranker
    # a group's 20 items among 120: popularity cannot tell them apart, a taste model finds them
    assert metrics["test/hit@10"]["final"] > 0.9
    assert metrics["test/ndcg@10"]["final"] > 0.5
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["status"] == "finished" and "test/ndcg@10" in saved
    assert saved["best_checkpoint"].endswith(".ckpt")
    # the checkpoint monitored and restored is the best validation NDCG
    best = saved["val/ndcg@10"]["best"]
    ckpt = torch.load(saved["best_checkpoint"], map_location="cpu", weights_only=True)
    scores = [v for k, v in ckpt["callbacks"].items() if "ModelCheckpoint" in k]
    assert any(abs(float(s["best_model_score"]) - best) < 1e-5 for s in scores)


def test_popularity_misses_the_planted_tastes(trained_ranker):
    """The same split scored with item counts, as the benchmark's `popular` row: the ranker's margin is real."""
    from emblab.bench.topn import Split

    data, run, metrics = trained_ranker
    split = Split(ranker_cfg(data, run.parent / "split"))
    counts = torch.from_numpy(np.asarray(split.X.sum(0)).ravel())
    pop = split.score(lambda u: counts.expand(len(u), -1), "test", 10)
    assert pop["ndcg@10"] < metrics["test/ndcg@10"]["final"] - 0.3


def test_recommend_and_interpret_from_the_ranking_checkpoint(trained_ranker, tmp_path):
    _, run, metrics = trained_ranker
    ckpt = metrics["best_checkpoint"]
    r = run_cli("-m", "emblab.predict", f"ckpt_path={ckpt}", "user=user7", "k=5")
    assert r.returncode == 0, r.stderr
    picked = [line.split()[1] for line in r.stdout.splitlines()[1:] if line.strip()]
    # user 7 is in group 1 (items 20..39); its list comes from there and never repeats what it played
    assert len(picked) == 5 and all(20 <= int(x.removeprefix("item")) <= 39 for x in picked)
    played = set(pd.read_csv(run.parent / "plays.csv").query("who == 'user7'")["what"])
    assert not played & set(picked)
    r = run_cli("-m", "emblab.predict", f"ckpt_path={ckpt}", "user=nobody", "k=3", "fallback=popular")
    assert r.returncode == 0 and "unknown user" in r.stdout, r.stderr
    r = run_cli("-m", "emblab.predict", f"ckpt_path={ckpt}", "user=nobody", "k=3")
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "unknown user nobody" in r.stderr
    r = run_cli("-m", "emblab.interpret", f"ckpt_path={ckpt}", f"out={tmp_path}/interp", "item=item0")
    assert r.returncode == 0, r.stderr
    near = pd.read_csv(tmp_path / "interp" / "nearest_items.csv")
    # item0's nearest items by cosine are its own group's (items 0..19)
    assert near["item"].astype(str).str.removeprefix("item").astype(int).head(5).between(0, 19).all()
    assert (tmp_path / "interp" / "pca_items.png").stat().st_size > 0


def test_ddp_scores_what_one_process_scores(tmp_path):
    """Two processes split the validation users and sum the metric's sums: the same NDCG as one process."""
    data = planted(tmp_path / "plays.csv", n_users=120, n_items=60, groups=3)
    common = [
        "model=collab_rank",
        *planted_data(data, 0.2),
        "trainer.max_epochs=2",
        "trainer.min_epochs=1",
        "seed=0",
        "logger=csv",
    ]
    r = run_cli("train.py", *common, "trainer=ddp_cpu", "trainer.devices=2", f"hydra.run.dir={tmp_path}/ddp")
    assert r.returncode == 0, r.stderr[-2000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    r = run_cli("-m", "emblab.eval", f"ckpt_path={ddp['last_checkpoint']}", "split=test", f"out={tmp_path}/one.json")
    assert r.returncode == 0, r.stderr[-2000:]
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["test/ndcg@10"] == pytest.approx(ddp["test/ndcg@10"]["final"], abs=1e-5)


def test_topn_bench_writes_its_table(tmp_path):
    from emblab.bench import topn

    data = planted(tmp_path / "plays.csv", n_users=90, n_items=60, groups=3)
    result = topn.main(
        topn.Args(
            overrides=[*planted_data(data), "trainer.max_epochs=3", "trainer.min_epochs=1"],
            seeds="0",
            models="collab_rank,ease,popular",
            ease_lambdas=[10.0, 100.0],
            out=str(tmp_path / "bench"),
        )
    )
    assert set(result["models"]) == {"collab_rank", "ease", "popular"}
    ease = result["models"]["ease"]
    assert ease["params"] == [{"lambda": 10.0}] or ease["params"] == [{"lambda": 100.0}]
    assert result["models"]["ease"]["ndcg@10"]["mean"] > result["models"]["popular"]["ndcg@10"]["mean"]
    table = (tmp_path / "bench" / "topn-topn.md").read_text()
    assert "| ease |" in table and "x EASE" in table
