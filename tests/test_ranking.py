"""Recall@k and NDCG@k on held-out ratings: against a hand count on a toy case, training items never
ranked, the callback logs them (and optimized_metric may name them), the popular baseline scores."""

from __future__ import annotations

import pytest
import torch

from emblab.models.metrics import popularity, ranking_scores, seen_mask_rows

from conftest import compose_cfg


def test_recall_and_ndcg_by_hand():
    # 1 user, 5 items; trained on item 0; validation: item 1 (rating 5, relevant), item 2 (rating 2, not)
    train = (torch.tensor([0]), torch.tensor([0]))
    val = (torch.tensor([0, 0]), torch.tensor([1, 2]), torch.tensor([5.0, 2.0]))
    # scores rank: item 0 (seen: excluded), then 3, then 1 -> relevant item 1 is 2nd among candidates
    scores = torch.tensor([9.0, 7.0, 1.0, 8.0, 0.0])
    r = ranking_scores(lambda u, i: scores[i], train, val, n_items=5, k=1)
    assert r == {"recall": 0.0, "ndcg": 0.0, "users": 1}  # top-1 is item 3
    r = ranking_scores(lambda u, i: scores[i], train, val, n_items=5, k=2)
    assert r["recall"] == pytest.approx(1.0) and r["ndcg"] == pytest.approx(1 / torch.log2(torch.tensor(3.0)).item())


def test_seen_items_are_masked_per_user():
    mask = seen_mask_rows(torch.tensor([0, 0, 2, 5]), torch.tensor([1, 3, 0, 2]), torch.tensor([2, 0, 7]), 4)
    assert mask.tolist() == [[True, False, False, False], [False, True, False, True], [False] * 4]


def test_popularity_baseline_and_the_callback_on_ml100k(tmp_path):
    from emblab.train import train

    metrics = train(
        compose_cfg(
            [
                "logger=csv",
                "~callbacks.progress_bar",
                "~callbacks.model_summary",
                "trainer.max_epochs=2",
                "data.batch_size=512",
                "callbacks.ranking.k=10",
                "callbacks.ranking.max_users=300",
                "optimized_metric=val/ndcg@10",
            ],
            tmp_path,
        )
    )
    recall, ndcg = metrics["val/recall@10"]["final"], metrics["val/ndcg@10"]["final"]
    assert 0 < recall < 1 and 0 < ndcg < 1
    from emblab.data.interactions import InteractionsDataModule

    dm = InteractionsDataModule.of(source="embedded")
    dm.setup()
    tr, va = dm.train_ds.tensors, dm.val_ds.tensors
    pop = ranking_scores(popularity(tr[1], len(dm.item_ids)), tr[:2], va, len(dm.item_ids), k=10, max_users=300)
    assert 0 < pop["recall"] < 1 and pop["users"] == 300


def test_ranking_bench_writes_its_table(tmp_path):
    from emblab.bench import ranking

    result = ranking.main(
        ranking.Args(out=str(tmp_path), overrides=["trainer.max_epochs=1", "trainer.limit_train_batches=5"])
    )
    assert len(result["rows"]) == 3 and result["users"] > 900
    assert all(0 <= r["recall"] <= 1 and 0 <= r["ndcg"] <= 1 for r in result["rows"].values())
    assert "most popular" in (tmp_path / "ranking.md").read_text()
