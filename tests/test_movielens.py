"""MovieLens loading: embedded data, the real GroupLens files, exact errors on bad input, batching."""

from __future__ import annotations

import logging

import pytest
import torch

from emblab.core.errors import ConfigError, DataError
from emblab.data.base import IndexBatchSampler, TensorBatchDataset
from emblab.data.interactions import InteractionsDataModule
from emblab.data.movielens import INTER, RATINGS_CSV, UDATA
from emblab.data.prepare import resolve_duplicates
from emblab.data.reader import read_frame

from conftest import shared_path


@pytest.fixture(scope="module")
def embedded():
    dm = InteractionsDataModule.of(source="embedded")
    dm.setup()
    return dm


def test_embedded_is_movielens_100k(embedded):
    assert embedded.dims() == {"n_users": 943, "n_items": 1682, "rating_range": [1, 5]}
    assert len(embedded.train_ds) == 80_000 and len(embedded.val_ds) == 20_000
    assert embedded.titles[0] == "Toy Story (1995)"
    users, items, ratings = embedded.train_ds.tensors
    assert users.dtype == items.dtype == torch.int64 and ratings.dtype == torch.float32
    assert ratings.min() >= 1 and ratings.max() <= 5


def test_split_is_seeded(embedded):
    again = InteractionsDataModule.of(source="embedded")
    again.setup()
    assert torch.equal(again.val_ds.tensors[0], embedded.val_ds.tensors[0])
    other = InteractionsDataModule.of(source="embedded", split_seed=7)
    other.setup()
    assert not torch.equal(other.val_ds.tensors[1], embedded.val_ds.tensors[1])


def test_embedded_matches_grouplens_u_data(embedded):
    path = shared_path("movielens", "ml-100k", "u.data")
    real = read_frame(path, UDATA)
    assert len(real) == 100_000
    assert embedded.ids["user"].tolist() == sorted(real["user"].unique().tolist())


@pytest.mark.parametrize("split", ["u1", "ua"])
def test_canonical_split_from_grouplens_files(split):
    root = shared_path("movielens", "ml-100k")
    dm = InteractionsDataModule.of(source="ml-100k", root=str(root), split=split, download=False)
    dm.setup()
    expected_val = {"u1": 20_000, "ua": 9_430}[split]
    assert len(dm.val_ds) == expected_val and len(dm.train_ds) == 100_000 - expected_val
    assert dm.titles[0] == "Toy Story (1995)"


def test_offline_without_files_says_what_to_download(tmp_path):
    dm = InteractionsDataModule.of(source="ml-latest-small", root=str(tmp_path), download=False)
    with pytest.raises(Exception, match=r"ml-latest-small.zip.*files.grouplens.org"):
        dm.prepare_data()


def test_checksum_mismatch_names_both_digests(tmp_path):
    root = tmp_path / "ml-100k"
    root.mkdir()
    (root / "u.data").write_text("1\t1\t5\t0\n")
    (root / "u.item").write_text("1|Toy Story (1995)|\n")
    dm = InteractionsDataModule.of(source="ml-100k", root=str(root), download=False)
    with pytest.raises(
        DataError, match=r"u.data: md5 checksum mismatch: expected 6e47046882bad158b0efbb84cd5cb987, got"
    ):
        dm.prepare_data()


def test_bad_config_values_fail_readably():
    with pytest.raises(ConfigError, match="data.source"):
        InteractionsDataModule.of(source="netflix")
    with pytest.raises(ConfigError, match="canonical|ml-100k"):
        InteractionsDataModule.of(source="embedded", split="u1")


# ---------------------------------------------------------------- malformed files: file, line, column
def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_quoted_header_is_a_header(tmp_path):
    p = write(tmp_path, "ratings.csv", '"userId","movieId","rating","timestamp"\n1,2,4.5,9\n3,4,1,10\n')
    df = read_frame(p, RATINGS_CSV)
    assert df["rating"].tolist() == [4.5, 1.0] and df["user"].tolist() == [1, 3]


@pytest.mark.parametrize(
    "name, fmt, content, says",
    [
        (
            "ratings.csv",
            RATINGS_CSV,
            "userId,movieId,timestamp\n1,2,3\n",
            r"ratings.csv, line 1: no column 'rating' \(data.rating_col\)",
        ),
        (
            "ratings.csv",
            RATINGS_CSV,
            "userId,movieId,rating,timestamp\n1,2,4.0,9\n1,3,great,9\n",
            r"ratings.csv, line 3, column 'rating': 'great' is not a number",
        ),
        (
            "x.inter",
            INTER,
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4\n5\t6\n",
            r"x.inter, line 3: expected 4 fields",
        ),
        ("u.data", UDATA, "1\t2\t4\t9\n \t3\t5\t9\n", r"line 2, column 'user': a blank user id"),
    ],
)
def test_a_bad_ratings_file_names_file_line_and_column(tmp_path, name, fmt, content, says):
    with pytest.raises(DataError, match=says):
        read_frame(write(tmp_path, name, content), fmt)


def test_a_rating_outside_the_declared_scale(tmp_path):
    p = write(tmp_path, "u.data", "1\t2\t4\t9\n1\t3\t5\t9\n2\t3\t7\t9\n" * 3)
    settings = dict(path=str(p), columns=["user", "item", "rating", "timestamp"], rating_range=[1, 5])
    with pytest.raises(DataError, match=r"u.data, line 3, column 'rating': rating 7 is outside \[1, 5\]"):
        InteractionsDataModule.of(**settings).setup()
    dm = InteractionsDataModule.of(**settings, out_of_range="drop", val_frac=0.5)
    dm.setup()
    assert len(dm.train_ds) + len(dm.val_ds) == 2  # 3 rows dropped (counted in the log), 4 duplicates resolved


def test_duplicates_policy_is_counted(tmp_path, caplog):
    p = write(tmp_path, "u.data", "1\t2\t4\t200\n1\t2\t2\t100\n1\t3\t5\t9\n")
    df = read_frame(p, UDATA).rename(columns={"user": "u", "item": "i"})
    with caplog.at_level(logging.WARNING):
        last = resolve_duplicates(df, "last", p)
    assert "1 (user, item) pairs occur more than once" in caplog.text
    assert len(last) == 2 and last.set_index("i").loc[2, "rating"] == 4  # the latest by time, not by file order
    assert resolve_duplicates(df, "mean", p).set_index("i").loc[2, "rating"] == 3
    assert resolve_duplicates(df, "sum", p).set_index("i").loc[2, "rating"] == 6
    with pytest.raises(DataError, match="occur more than once"):
        resolve_duplicates(df, "error", p)


# ---------------------------------------------------------------- batching by index
def test_batches_are_index_slices_covering_every_sample_once():
    ds = TensorBatchDataset(torch.arange(10), torch.arange(10) * 2)
    sampler = IndexBatchSampler(10, 4, shuffle=True, seed=1)
    batches = [ds[idx] for idx in sampler]
    assert [len(b[0]) for b in batches] == [4, 4, 2] and len(sampler) == 3
    seen = torch.cat([b[0] for b in batches])
    assert sorted(seen.tolist()) == list(range(10))
    assert all(torch.equal(b[1], b[0] * 2) for b in batches)


def test_epochs_reshuffle_and_are_reproducible():
    s = IndexBatchSampler(100, 100, shuffle=True, seed=3)
    first = next(iter(s))
    s.set_epoch(1)
    second = next(iter(s))
    s.set_epoch(0)
    assert not torch.equal(first, second) and torch.equal(first, next(iter(s)))


@pytest.mark.parametrize("n", [10, 11, 13])
def test_ranks_shard_without_loss_or_overlap(n):
    world = 2
    per_rank = [
        torch.cat(list(IndexBatchSampler(n, 3, shuffle=True, seed=5, rank=r, world_size=world))) for r in range(world)
    ]
    assert len(per_rank[0]) == len(per_rank[1])  # same number of steps on every rank
    together = torch.cat(per_rank).tolist()
    assert set(together) == set(range(n))  # nothing lost
    assert len(together) - len(set(together)) == (-n) % world  # only the padding repeats


def test_on_device_moves_the_data_once_and_teardown_brings_it_back(embedded):
    """A GPU cannot be had here: the 'meta' device stands in for it (tensors move, batches are
    gathered there, nothing is computed)."""
    import torch

    class FakeTrainer:
        strategy = type("S", (), {"root_device": torch.device("meta")})()
        lightning_module, global_rank, world_size, overfit_batches = None, 0, 1, 0

    before = [t.clone() for t in embedded.train_ds.tensors]
    embedded.trainer = FakeTrainer()
    try:
        users, items, ratings = next(iter(embedded.train_dataloader()))
        assert users.device.type == items.device.type == ratings.device.type == "meta"
        embedded.on_device = False
        assert embedded.val_ds.tensors[0].device.type == "cpu"  # off: left where it is
        embedded.teardown("fit")
        assert all(torch.equal(a, b) for a, b in zip(before, embedded.train_ds.tensors, strict=False))
    finally:
        embedded.trainer, embedded.on_device = None, True
        embedded.teardown("fit")


def test_subsample_keeps_a_seeded_fraction_of_ratings_or_users(embedded):
    half = InteractionsDataModule.of(source="embedded", subsample=0.5)
    half.setup()
    n = len(half.train_ds) + len(half.val_ds)
    assert 48_000 < n < 52_000 and len(half.val_ds) == round(n * 0.2)
    again = InteractionsDataModule.of(source="embedded", subsample=0.5)
    again.setup()
    assert torch.equal(again.train_ds.tensors[2], half.train_ds.tensors[2])  # same ratings every time
    users = InteractionsDataModule.of(source="embedded", subsample_users=0.25)
    users.setup()
    assert 180 < users.dims()["n_users"] < 290 and users.dims()["n_items"] <= 1682
    kept = set(users.ids["user"].tolist())
    full_counts = torch.bincount(torch.cat([embedded.train_ds.tensors[0], embedded.val_ds.tensors[0]]))
    mine = torch.bincount(torch.cat([users.train_ds.tensors[0], users.val_ds.tensors[0]]))
    # a kept user keeps every one of their ratings
    old_index = {int(u): i for i, u in enumerate(embedded.ids["user"].tolist())}
    assert all(int(mine[j]) == int(full_counts[old_index[u]]) for j, u in enumerate(sorted(kept)))
    with pytest.raises(ConfigError, match="data.subsample=0"):
        InteractionsDataModule.of(source="embedded", subsample=0)


def test_subsample_of_a_canonical_split_keeps_its_base_and_test_apart():
    root = shared_path("movielens", "ml-100k")
    dm = InteractionsDataModule.of(source="ml-100k", root=str(root), split="u1", download=False, subsample=0.5)
    dm.setup()
    assert 39_000 < len(dm.train_ds) < 41_000 and 9_300 < len(dm.val_ds) < 10_700
