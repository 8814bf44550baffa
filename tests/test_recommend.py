"""Batch work from a collab checkpoint on the CPU: every (user, item) pair of a file, the top-k unseen
items of every user, the popular fallback for unknown users only when asked, one-line errors."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from emblab.analysis.recommend import Recommender
from emblab.core import cli
from emblab.core.errors import EmblabError
from emblab.predict import Args, load_recommender, run

from conftest import compose_cfg


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from emblab.train import train

    out = tmp_path_factory.mktemp("rec")
    train(
        compose_cfg(
            [
                "logger=csv",
                "~callbacks.progress_bar",
                "~callbacks.model_summary",
                "trainer.max_epochs=1",
                "data.batch_size=512",
            ],
            out,
        )
    )
    return out / "checkpoints" / "last.ckpt"


def predict(argv, capsys=None):
    cli.main(Args, run, argv)


def test_pairs_of_a_file_match_one_by_one_predictions(ckpt, tmp_path):
    rec = load_recommender(ckpt)
    pairs = pd.DataFrame({"userId": [196, 186, 22, 196], "movieId": [242, 302, 377, 1]})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    predict([f"ckpt_path={ckpt}", f"pairs={tmp_path / 'pairs.csv'}", f"out={tmp_path / 'p.parquet'}"])
    got = pd.read_parquet(tmp_path / "p.parquet")
    assert list(got.columns) == ["user", "item", "prediction"] and len(got) == 4
    want = [rec.predict(u, i) for u, i in zip(pairs.userId, pairs.movieId, strict=False)]
    assert np.allclose(got.prediction, want, atol=1e-5)


def test_top_k_for_every_user_skips_what_each_has_seen(ckpt, tmp_path):
    rec = load_recommender(ckpt)
    start = time.perf_counter()
    predict([f"ckpt_path={ckpt}", "users=all", "k=5", f"out={tmp_path / 'r.csv'}"])
    seconds = time.perf_counter() - start
    recs = pd.read_csv(tmp_path / "r.csv")
    assert recs.user.nunique() == 943 and (recs.groupby("user").size() == 5).all() and not recs.fallback.any()
    assert seconds < 60  # batched: every user against the whole item table at once (a loose bound, not a benchmark)
    a = rec.a
    for user in (196, 1, 943):  # nothing already rated is recommended, and the list is the single-user one
        u = int(rec.users.lookup([user])[0][0])
        seen = set(rec.items.ids[a["seen_items"][int(a["seen_indptr"][u]) : int(a["seen_indptr"][u + 1])].long()])
        mine = recs[recs.user == user].sort_values("rank")
        assert not seen & set(mine.item) and list(mine.item) == [i for i, *_ in rec.recommend(user, 5)]


def test_unknown_users_get_the_popular_fallback_only_when_asked(ckpt, tmp_path, capsys):
    users = tmp_path / "u.csv"
    pd.DataFrame({"user": [196, 99999]}).to_csv(users, index=False)
    with pytest.raises(SystemExit):
        predict([f"ckpt_path={ckpt}", f"users={users}", f"out={tmp_path / 'r.csv'}"])
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {users}, line 3, column 'user': unknown user 99999") and "\n" not in err
    predict([f"ckpt_path={ckpt}", f"users={users}", "k=3", "fallback=popular", f"out={tmp_path / 'r.csv'}"])
    recs = pd.read_csv(tmp_path / "r.csv")
    assert list(recs[recs.user == 99999].fallback) == [True] * 3 and not recs[recs.user == 196].fallback.any()
    rec = load_recommender(ckpt)
    popular = rec.popular(3)[0]
    assert (rec.a["item_counts"][popular] >= 20).all()
    assert list(recs[recs.user == 99999].item) == rec.items.ids[popular.numpy()].tolist()
    one = rec.recommend(99999, 3, fallback="popular")
    assert all(flag for *_, flag in one)
    with pytest.raises(EmblabError, match="unknown user 99999.*fallback=popular"):
        rec.recommend(99999, 3)


@pytest.mark.parametrize(
    "content, says",
    [
        ("user,item\n196,242\n1,99999\n", "line 3, column 'item': unknown item 99999"),
        ("user,film\n196,242\n", "line 1: no item or movieId column"),
        ("user,item\n196,abc\n", "line 2, column 'item': unknown item abc"),
    ],
)
def test_bad_pair_files_are_one_line(ckpt, tmp_path, capsys, content, says):
    (tmp_path / "p.csv").write_text(content)
    with pytest.raises(SystemExit) as e:
        predict([f"ckpt_path={ckpt}", f"pairs={tmp_path / 'p.csv'}", f"out={tmp_path / 'o.csv'}"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and says in err and "\n" not in err


def test_the_modes_exclude_each_other(ckpt, tmp_path, capsys):
    for argv, says in (
        (["user=196", "users=all", f"out={tmp_path}/x.csv"], "not user= and users="),
        (["users=all"], "give out=FILE.csv"),
        ([], "give one of user=ID"),
        (["user=196", "fallback=nearest"], "fallback='nearest'"),
    ):
        with pytest.raises(SystemExit):
            predict([f"ckpt_path={ckpt}", *argv])
        assert says in capsys.readouterr().err


def test_top_k_masks_exactly_the_seen_items():
    """The vectorised mask against a plain per-user loop, on a tiny model."""
    from emblab.models.collab import CollabModel

    torch.manual_seed(0)
    model = CollabModel.of(n_users=4, n_items=6, n_factors=3)
    seen = {0: [1, 2], 1: [], 2: [0, 1, 2, 3, 4], 3: [5]}
    indptr = torch.tensor([0, 2, 2, 7, 8])
    a = {
        "user_ids": torch.arange(4),
        "item_ids": torch.arange(6),
        "seen_indptr": indptr,
        "seen_items": torch.tensor([1, 2, 0, 1, 2, 3, 4, 5]),
        "item_titles": list("abcdef"),
        "item_counts": torch.ones(6, dtype=torch.int32),
    }
    rec = Recommender(model, a)
    items, scores = rec.top_k(torch.arange(4), 6, chunk=3)
    for u in range(4):
        finite = items[u][torch.isfinite(scores[u])].tolist()
        assert sorted(finite) == sorted(set(range(6)) - set(seen[u]))


def test_time_split_holds_out_each_users_last_ratings():
    from emblab.data.interactions import InteractionsDataModule
    from emblab.data.reader import read_frame

    dm = InteractionsDataModule.of(source="embedded", split="time", holdout=5)
    dm.setup()
    users, items, _ = dm.val_ds.tensors
    assert torch.bincount(users, minlength=943).max() == 5  # at most 5 per user
    assert len(dm.train_ds) + len(users) == 100_000 and len(users) == 5 * 943  # every ml-100k user has 20+
    f = dm.files()
    raw = read_frame(f.path, f.layout)
    raw["val"] = False
    key = pd.Series(list(zip(raw["user"], raw["item"], strict=True)))
    held = set(zip(np.asarray(dm.ids["user"])[users.numpy()], np.asarray(dm.ids["item"])[items.numpy()], strict=True))
    raw["val"] = key.isin(held).to_numpy()
    newest_train = raw[~raw.val].groupby("user").time.max()
    oldest_val = raw[raw.val].groupby("user").time.min()
    assert (oldest_val >= newest_train.loc[oldest_val.index]).all()  # no validation rating older than training
