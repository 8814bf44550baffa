"""Any interaction file: explicit ratings with text ids, implicit play counts with weights, Parquet; the filters
and splits; bad input in one line; and the real files of ../shared/data/interactions read as they are."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from emblab.core.errors import ConfigError, DataError
from emblab.data.interactions import InteractionsDataModule
from emblab.data.reader import Layout, read_frame

from conftest import compose_cfg, shared_path

QUIET = ["logger=csv", "~callbacks.progress_bar", "~callbacks.model_summary", "trainer.max_epochs=2"]


def ratings(n=3000, n_users=60, n_items=80, seed=0) -> pd.DataFrame:
    """Explicit ratings on a 0.5..4 scale, users and items with 10-character product codes."""
    rng = np.random.default_rng(seed)
    users = np.array([f"A{rng.integers(10**8):08d}X" for _ in range(n_users)])
    items = np.array([f"B{rng.integers(10**9):09d}" for _ in range(n_items)])
    u, i = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    return pd.DataFrame({"item": items[i], "user": users[u], "rating": rng.integers(1, 9, n) / 2, "ts": np.arange(n)})


def plays(n=3000, seed=1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"userID": rng.integers(2, 80, n), "artistID": rng.integers(50, 400, n), "weight": rng.integers(1, 20000, n)}
    ).drop_duplicates(["userID", "artistID"])


def test_explicit_ratings_with_text_ids_and_their_own_scale(tmp_path):
    path = tmp_path / "products.tsv"
    df = ratings()
    df.to_csv(path, sep="\t", header=False, index=False)  # item, user, rating, timestamp; no header
    over = [*QUIET, "data=interactions", f"data.path={path}", "data.columns=[item,user,rating,ts]", "data.time_col=ts"]
    from emblab.train import train

    metrics = train(compose_cfg(over, tmp_path / "run"))
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    data = ckpt["emblab"]["data"]
    assert data["user_ids"] == sorted(df.user.unique()) and data["item_ids"][0].startswith("B")  # raw text ids
    assert data["rating_range"] == [0.5, 4.0] and ckpt["hyper_parameters"]["rating_range"] == [0.5, 4.0]
    assert metrics["val/rmse"]["final"] < 1.5
    from emblab.predict import load_recommender

    rec = load_recommender(tmp_path / "run" / "checkpoints" / "last.ckpt")
    one = rec.recommend(df.user[0], k=3)
    assert len(one) == 3 and all(isinstance(item, str) for item, *_ in one)
    assert rec.model.net.y_range == pytest.approx((0.0, 4.4))  # the data's own scale, with fastai's margin


def test_implicit_play_counts_with_weights(tmp_path):
    path = tmp_path / "user_artists.dat"
    df = plays()
    text = df.to_csv(sep="\t", index=False, lineterminator="\r\n").rstrip("\r\n")  # CRLF, no final newline
    path.write_bytes(text.encode())
    dm = InteractionsDataModule.of(
        kind="interactions",
        path=str(path),
        user_col="userID",
        item_col="artistID",
        rating_col=None,
        weight_col="weight",
        split="user_random",
        val_frac=0.1,
        test_frac=0.1,
    )
    dm.setup()
    indptr, items, weight = dm.train_ds.lists[0]  # every user's positives and their play counts
    assert dm.test_ds is not None
    n_val, n_test = (len(ds.lists[1][1]) for ds in (dm.val_ds, dm.test_ds))  # what each user should find
    assert len(items) + n_val + n_test == len(df)  # every row in exactly one part
    owner = torch.repeat_interleave(torch.arange(len(indptr) - 1), indptr.diff())
    got = pd.DataFrame({"userID": dm.ids["user"][owner.numpy()], "artistID": dm.ids["item"][items.numpy()]})
    got["w"] = weight.numpy()
    both = got.merge(df, on=["userID", "artistID"], how="left")
    assert (both["w"] == both["weight"]).all()  # each positive carries its own row's play count
    users, seen_rows, seen_items, rel_rows, rel_items = dm.val_ds.__getitems__(torch.arange(len(dm.val_ds)))
    assert len(users) == len(dm.val_ds) and len(rel_items) == n_val
    # a validation user's seen items are its training positives, never what it should find
    seen = set(zip(seen_rows.tolist(), seen_items.tolist(), strict=True))
    assert not seen & set(zip(rel_rows.tolist(), rel_items.tolist(), strict=True))
    with pytest.raises(ConfigError, match="data.rating_col is null"):  # a rating model on implicit data
        InteractionsDataModule.of(
            kind="ratings", path=str(path), user_col="userID", item_col="artistID", rating_col=None
        )


def test_parquet_and_mixed_ids_are_text_alike(tmp_path):
    df = ratings(n=500)
    df.loc[::7, "user"] = [str(k) for k in range(len(df.loc[::7]))]  # numbers among text ids
    df.to_parquet(tmp_path / "r.parquet")
    frame = read_frame(tmp_path / "r.parquet", Layout(rating="rating"))
    assert frame["user"].map(type).eq(str).all()  # one kind of id per column: text
    dm = InteractionsDataModule.of(path=str(tmp_path / "r.parquet"))
    dm.setup()
    assert "0" in dm.user_ids and all(isinstance(u, str) for u in dm.user_ids)


def test_item_names_from_their_own_file(tmp_path):
    df = ratings(n=800)
    df.to_csv(tmp_path / "r.csv", index=False)
    names = pd.DataFrame({"asin": sorted(df["item"].unique()), "title": [f"Product {k}" for k in range(80)]})
    names.to_csv(tmp_path / "items.csv", index=False)
    dm = InteractionsDataModule.of(
        path=str(tmp_path / "r.csv"),
        items_path=str(tmp_path / "items.csv"),
        items_id_col="asin",
        items_name_col="title",
    )
    dm.setup()
    assert dm.titles[0] == "Product 0"


@pytest.mark.parametrize(
    "content, settings, says",
    [
        ("users,item,rating\n1,2,3\n", {}, r"line 1: no column 'user' \(data.user_col\) \(did you mean users"),
        ("user,item,rating\n1,2,3\n,3,4\n", {}, r"line 3, column 'user': a blank user id"),
        ("user,item,rating\n1,2,3\n2,3,great\n", {}, r"line 3, column 'rating': 'great' is not a number"),
        ("user,item,rating,w\n1,2,3,1\n2,3,4,0\n", {"weight_col": "w"}, r"line 3, column 'w': weight 0 is not above 0"),
        ("user,item,rating,w\n1,2,3,1\n2,3,4,x\n", {"weight_col": "w"}, r"line 3, column 'w': 'x' is not a number"),
        ("user:item:rating\n1:2:3\n", {}, r"line 1: one column only .* give data.sep"),
        ("user,item,rating\n1,2,3\n1,3,4\n2,3,5\n2,4,1\n2,3\n", {}, r"line 6: expected 3 fields"),
        ("user,item,rating\n", {}, r"holds no interactions \(a header only\)"),
    ],
)
def test_bad_files_name_their_line_and_column(tmp_path, content, settings, says):
    path = tmp_path / "x.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=says):
        InteractionsDataModule.of(path=str(path), **settings).setup()


def test_duplicates_and_the_k_core_are_counted(tmp_path, caplog):
    df = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 3, 3, 3, 4],
            "item": [1, 1, 2, 1, 2, 1, 2, 3, 9],
            "rating": [1, 3, 4, 2, 5, 3, 4, 1, 5],
        }
    )
    df.to_csv(tmp_path / "r.csv", index=False)
    with caplog.at_level(logging.INFO):
        dm = InteractionsDataModule.of(path=str(tmp_path / "r.csv"), duplicates="sum", min_interactions=2, val_frac=0.3)
        dm.setup()
    assert "1 (user, item) pairs occur more than once; data.duplicates=sum turned 9 rows into 8" in caplog.text
    assert "iterative k-core) removes 2 of 8" in caplog.text  # user 4 and item 9, then item 3 with user 3's row
    assert sorted(dm.ids["user"].tolist()) == [1, 2, 3] and 9 not in dm.ids["item"].tolist()
    with pytest.raises(DataError, match="occur more than once"):
        InteractionsDataModule.of(path=str(tmp_path / "r.csv"), duplicates="error").setup()


def test_splits_per_user_by_time_and_at_a_date(tmp_path):
    n_users, per = 30, 20
    df = pd.DataFrame(
        {
            "user": np.repeat(np.arange(n_users), per),
            "item": np.tile(np.arange(per), n_users),
            "rating": 3.0,
            "t": np.tile(np.arange(per), n_users) * 86400 + 1.6e9,
        }
    )
    df.to_csv(tmp_path / "r.csv", index=False)
    common = dict(path=str(tmp_path / "r.csv"), time_col="t")

    def parts(**kw):
        dm = InteractionsDataModule.of(**common, **kw)
        dm.setup()
        return dm.train_ds.tensors, dm.val_ds.tensors, dm.test_ds.tensors if dm.test_ds else None

    tr, va, te = parts(split="user_random", val_frac=0.1, test_frac=0.1)
    assert (torch.bincount(va[0]) == 2).all() and (torch.bincount(te[0]) == 2).all()  # 8:1:1 of 20, every user
    again = parts(split="user_random", val_frac=0.1, test_frac=0.1)[1]
    assert torch.equal(again[1], va[1])  # seeded
    tr, va, te = parts(split="time", holdout=3, test_holdout=2)
    assert (va[1] >= 15).all() and (va[1] < 18).all() and (te[1] >= 18).all()  # the last 2 test, 3 before validate
    tr, va, te = parts(split="time_global", cutoff="2020-09-26", test_cutoff=str(1.6e9 + 18 * 86400))
    assert (tr[1] < va[1].min()).all() and (va[1] < te[1].min()).all()


def test_a_test_part_is_scored_once_at_the_end(tmp_path):
    df = ratings(n=3000)
    df.to_csv(tmp_path / "r.csv", index=False)
    from emblab.train import train

    over = [
        *QUIET,
        "data=interactions",
        f"data.path={tmp_path / 'r.csv'}",
        "data.val_frac=0.1",
        "data.test_frac=0.1",
        "test=true",
    ]
    metrics = train(compose_cfg(over, tmp_path / "run"))
    assert "test/rmse" in metrics and "val/rmse" in metrics


# ---------------------------------------------------------------- the real files, exactly as they are
def test_hetrec_lastfm_plays(caplog):
    path = shared_path("interactions", "hetrec2011-lastfm-2k", "user_artists.dat")
    frame = read_frame(path, Layout(None, None, "userID", "artistID", None, weight="weight"))
    assert len(frame) == 92_834 and frame.user.nunique() == 1_892 and frame.item.nunique() == 17_632
    assert frame.weight.min() == 1 and frame.weight.max() == 352_698  # tabs, CRLF, no newline at the end: all read
    names = path.parent / "artists.dat"
    dm = InteractionsDataModule.of(
        kind="interactions",
        path=str(path),
        user_col="userID",
        item_col="artistID",
        rating_col=None,
        weight_col="weight",
        min_interactions=5,
        split="user_random",
        val_frac=0.1,
        test_frac=0.1,
        items_path=str(names),
        items_id_col="id",
        items_name_col="name",
    )
    dm.setup()
    assert len(dm.ids["user"]) < 1_892 and "Duran Duran" in dm.titles  # the 5-core; names with non-Latin text too


def test_ciao_ratings_with_zeros_and_repeats(caplog):
    path = shared_path("interactions", "ciao", "ratings.txt")
    with caplog.at_level(logging.INFO):
        dm = InteractionsDataModule.of(path=str(path), columns=["user", "item", "rating"], duplicates="last")
        dm.setup()
    assert "pairs occur more than once" in caplog.text  # the 967 repeated rows, resolved and counted
    assert dm.rating_range[0] == 0  # the 34 zero ratings are the data's own scale, kept
    with pytest.raises(DataError, match=r"ratings.txt, line \d+, column 'rating': rating 0 is outside \[1, 5\]"):
        InteractionsDataModule.of(path=str(path), columns=["user", "item", "rating"], rating_range=[1, 5]).setup()
