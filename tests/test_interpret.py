"""Interpretation, prediction and recommendation from a checkpoint trained on embedded ml-100k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emblab.analysis.interpret import ItemTable, bias_ranking, item_pca
from emblab.core.errors import EmblabError
from emblab.predict import load_recommender
from emblab.train import train
from emblab.training.loading import load_checkpoint, load_model

from conftest import compose_cfg, run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (short) training run: 4 epochs at batch 256 on the 80/20 split."""
    out = tmp_path_factory.mktemp("collab")
    cfg = compose_cfg(["data.batch_size=256", "trainer.max_epochs=4", "~callbacks.progress_bar"], out)
    metrics = train(cfg)
    assert metrics["val/rmse"]["final"] < 0.95, metrics["val/rmse"]
    dm_cfg = cfg.data
    from emblab.data.interactions import InteractionsDataModule

    dm = InteractionsDataModule.of(source=dm_cfg.source, split_seed=dm_cfg.split_seed)
    dm.setup()
    return out / "checkpoints" / "last.ckpt", dm


def observed_means(dm) -> np.ndarray:
    items = torch.cat([dm.train_ds.tensors[1], dm.val_ds.tensors[1]])
    ratings = torch.cat([dm.train_ds.tensors[2], dm.val_ds.tensors[2]])
    sums = torch.zeros(len(dm.item_ids)).index_add_(0, items, ratings)
    return (sums / torch.bincount(items, minlength=len(dm.item_ids)).clamp(min=1)).numpy()


def test_item_biases_rank_good_and_bad_films(trained):
    ckpt, dm = trained
    model, c = load_model(ckpt)
    items = ItemTable.from_model(model, c["emblab"]["data"])
    top, bottom = bias_ranking(items, n=10, min_count=20)
    means = dict(zip(items.titles, observed_means(dm), strict=False))
    top_mean = np.mean([means[t] for t, _ in top])
    bottom_mean = np.mean([means[t] for t, _ in bottom])
    print(f"top-10 by bias: mean observed rating {top_mean:.2f}; bottom-10: {bottom_mean:.2f}")
    assert top_mean > 4.0 and bottom_mean < 2.5
    assert all(items.counts[items.titles.index(t)] >= 20 for t, _ in top + bottom)


def test_pca_components_are_orthonormal(trained):
    ckpt, _ = trained
    model, c = load_model(ckpt)
    items = ItemTable.from_model(model, c["emblab"]["data"])
    p = item_pca(items, top_n=1000)
    comps = p.pca.components_
    assert comps.shape == (3, 50)
    np.testing.assert_allclose(comps @ comps.T, np.eye(3), atol=1e-5)
    ratio = p.pca.explained_variance_ratio_
    print(f"explained variance of 3 components: {ratio.round(4).tolist()} (total {ratio.sum():.1%})")
    assert np.all(np.diff(ratio) <= 0) and 0 < ratio.sum() < 1
    hi, lo = p.extremes(items.titles, 0, 5)
    assert hi[0][1] > lo[0][1]


def test_id_maps_and_titles_round_trip_through_checkpoint(trained):
    ckpt, dm = trained
    data = load_checkpoint(ckpt)["emblab"]["data"]
    assert torch.equal(data["user_ids"], dm.user_ids) and torch.equal(data["item_ids"], dm.item_ids)
    assert data["item_titles"] == dm.titles


def test_predict_and_recommend(trained):
    ckpt, dm = trained
    rec = load_recommender(ckpt)
    users, items, ratings = dm.val_ds.tensors
    raw_u, raw_i = int(dm.user_ids[users[0]]), int(dm.item_ids[items[0]])
    model, _ = load_model(ckpt)
    assert rec.predict(raw_u, raw_i) == pytest.approx(float(model(users[:1], items[:1])[0]))
    top = rec.recommend(raw_u, k=10)
    assert len(top) == 10 and [s for *_, s in top] == sorted([s for *_, s in top], reverse=True)
    u = users[0]
    indptr, seen_items = dm.seen
    seen = set(dm.item_ids[seen_items[indptr[u] : indptr[u + 1]]].tolist())
    assert not seen & {item for item, *_ in top}
    with pytest.raises(EmblabError, match="unknown user 999999"):
        rec.predict(999999, raw_i)
    with pytest.raises(EmblabError, match="unknown item 999999"):
        rec.predict(raw_u, 999999)


@pytest.mark.integration
def test_commands_on_cpu(trained, tmp_path):
    ckpt, _ = trained
    res = run_cli("-m", "emblab.interpret", f"ckpt_path={ckpt}", f"out={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "pca_items.png").stat().st_size > 10_000
    assert "Highest item bias" in (tmp_path / "interpretation.md").read_text()
    res = run_cli("-m", "emblab.predict", f"ckpt_path={ckpt}", "user=196", "k=3")
    assert res.returncode == 0 and len(res.stdout.strip().splitlines()) == 4, res.stderr[-2000:]
    res = run_cli("-m", "emblab.predict", f"ckpt_path={ckpt}", "user=196", "item=99999")
    assert res.returncode == 2 and res.stderr.strip() == "error: unknown item 99999: the model knows 1682 items"


@pytest.mark.integration
def test_malicious_checkpoint_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("this ran while loading",))

    bad = tmp_path / "bad.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}, "emblab": {"x": Exploit()}}, bad)
    with pytest.raises(EmblabError, match="refusing to load .*bad.ckpt: it holds the global print"):
        load_checkpoint(bad)
    res = run_cli("-m", "emblab.interpret", f"ckpt_path={bad}")
    assert res.returncode == 2 and "this ran while loading" not in res.stdout
    assert res.stderr.startswith("error: refusing to load")
