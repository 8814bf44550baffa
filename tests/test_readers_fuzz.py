"""Property: a corrupted ratings, interactions or tabular file (cut lines, wrong types, odd encodings, extra or
missing separators), read for training or as new rows to predict, either loads into finite, in-range tensors or
raises emblab's own error, never another exception. Bounded to a few hundred examples so it runs in well under a
minute; the cases longer runs found are pinned with @example."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emblab.core.errors import EmblabError
from emblab.data.movielens import RATINGS_CSV, UDATA
from emblab.data.reader import read_frame
from emblab.data.tabular import TabularDataModule

RATINGS = (
    "userId,movieId,rating,timestamp\n"
    + "".join(f"{1 + i % 9},{1 + (i * 7) % 13},{1 + i % 5}.0,{1000 + i}\n" for i in range(40))
).encode()
UDATA_TEXT = "".join(f"{1 + i % 9}\t{1 + (i * 7) % 13}\t{1 + i % 5}\t{1000 + i}\n" for i in range(40)).encode()
TABLE = ("a,x,y\n" + "".join(f"{'pqr'[i % 3]},{i / 10:.2f},{1 + i % 7}\n" for i in range(60))).encode()

# what corruption inserts: separators, quotes, line breaks, bytes that are not UTF-8, odd numbers
PIECES = st.sampled_from(
    [
        b",",
        b"\t",
        b"\n",
        b"\r\n",
        b'"',
        b"\xff",
        b"\xe9",
        b"\x00",
        b"\xef\xbb\xbf",
        b"nan",
        b"inf",
        b"-",
        b"1e400",
        b"99999999999999999999",
        b"abc",
        b" ",
        b"",
        b";",
        b"1.5.2",
    ]
)
EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "cut", "replace", "dup_line", "drop_line"]),
    st.floats(0, 1),
    st.one_of(PIECES, st.binary(max_size=4)),
)


def corrupt(data: bytes, edits) -> bytes:
    for kind, where, piece in edits:
        pos = int(where * len(data))
        if kind == "insert":
            data = data[:pos] + piece + data[pos:]
        elif kind == "delete":
            data = data[:pos] + data[pos + 1 + len(piece) :]
        elif kind == "cut":
            data = data[:pos]
        elif kind == "replace":
            data = data[:pos] + piece + data[pos + len(piece) :]
        else:
            lines = data.split(b"\n")
            i = min(int(where * len(lines)), len(lines) - 1)
            lines = lines[:i] + ([lines[i]] * 2 if kind == "dup_line" else []) + lines[i + 1 :]
            data = b"\n".join(lines)
    return data


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="emblab-fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(st.lists(EDIT, min_size=1, max_size=4), st.booleans())
@example([("insert", 0.5, b"\r")], False)  # a lone carriage return inside a line
def test_corrupted_ratings_load_or_raise_our_error(edits, header):
    fmt, good = (RATINGS_CSV, RATINGS) if header else (UDATA, UDATA_TEXT)
    path = write(corrupt(good, edits), "ratings.csv")
    try:
        df = read_frame(path, fmt)
    except EmblabError as e:
        assert str(e).startswith(str(path))  # names the file
        return
    assert len(df) and np.isfinite(df["rating"]).all() and np.isfinite(df["time"]).all()
    assert all(str(df[c].dtype) in ("int64", "object", "str", "string") for c in ("user", "item"))  # ints, or text


@FUZZ
@given(st.lists(EDIT, min_size=1, max_size=4))
@example([("insert", 0.015625, b",")])  # a field more on the first row: pandas made column a the index
@example([("insert", 0.75, b"1e400")])  # an infinite class label
def test_corrupted_tables_load_or_raise_our_error(edits):
    path = write(corrupt(TABLE, edits), "t.csv")
    loads_finite_or_raises_ours(TabularDataModule.of(path=str(path), cat_cols=["a"], cont_cols=["x"], target="y"))


def loads_finite_or_raises_ours(dm) -> None:
    try:
        dm.setup()
    except EmblabError:
        return
    for ds in (dm.train_ds, dm.val_ds):
        if ds is not None:
            assert all(bool(torch.isfinite(t.float()).all()) for t in ds.tensors)


# any interaction file: text ids and play counts (a ranking model's data), or ratings with dates and a time split
PLAYS = (
    "userID\tartistID\tweight\n"
    + "".join(f"u{1 + i % 11}\tart-{(i * 7) % 17}\t{1 + (i * 37) % 900}\n" for i in range(90))
).encode()
DATED = (
    "user,item,rating,when\n"
    + "".join(
        f"{'abcdefghij'[i % 10]}{i % 7},{(i * 5) % 23},{1 + i % 5},2011-0{1 + i % 9}-1{i % 9}\n" for i in range(90)
    )
).encode()
# a table whose columns are found from its rows (data.cat_cols/cont_cols/task auto), with a date column
AUTO = (
    "city,when,age,amount,code,y\n"
    + "".join(
        f"{'pqrs'[i % 4]},2020-0{1 + i % 9}-{10 + i % 9},{20 + i % 40},{i * 1.37:.2f},{i % 6},"
        f"{'yes' if (i * 7) % 3 else 'no'}\n"
        for i in range(120)
    )
).encode()


@FUZZ
@given(st.lists(EDIT, min_size=1, max_size=4), st.booleans())
@example([("insert", 0.375, b"99999999999999999999")] * 2, True)  # a play count past float32: inf in training
def test_corrupted_interaction_files_load_or_raise_our_error(edits, plays):
    from emblab.data.interactions import InteractionsDataModule

    if plays:
        path = write(corrupt(PLAYS, edits), "plays.dat")
        settings = dict(
            kind="interactions", user_col="userID", item_col="artistID", rating_col=None, weight_col="weight"
        )
    else:
        path = write(corrupt(DATED, edits), "rated.csv")
        settings = dict(kind="ratings", time_col="when", split="time")
    dm = InteractionsDataModule.of(path=str(path), **settings)
    try:
        dm.setup()
    except EmblabError as e:
        assert str(path) in str(e) or "data." in str(e)  # names the file, or the setting
        return
    n_users, n_items = len(dm.ids["user"]), len(dm.ids["item"])
    for ds in (dm.train_ds, dm.val_ds):  # (user, item, rating) rows, or users with their item lists
        users, items, values = (ds.tensors[0], ds.tensors[1], ds.tensors[2:]) if not plays else rows_of(ds)
        assert int(users.max()) < n_users and int(items.max()) < n_items and min(users.min(), items.min()) >= 0
        assert all(bool(torch.isfinite(v.float()).all()) for v in values)


def rows_of(ds):
    """A UserRows' users, every listed item, and the lists' values (weights)."""
    items = torch.cat([lst[1] for lst in ds.lists])
    return ds.users, items, [v for lst in ds.lists for v in lst[2:]]


@FUZZ
@given(st.lists(EDIT, min_size=1, max_size=4), st.booleans())
@example([("insert", 0.017578125, b"1.5.2"), ("dup_line", 0.0, b",")], True)  # naive and offset times in a column
def test_corrupted_auto_typed_tables_load_or_raise_our_error(edits, dates):
    path = write(corrupt(AUTO, edits), "t.csv")
    loads_finite_or_raises_ours(TabularDataModule.of(path=str(path), target="y", date_cols=["when"] if dates else []))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small tabular net and its data's artifacts, fitted on the clean AUTO table (weights as initialised)."""
    from emblab.models.tabular import MixedInputModel

    path = tmp_path_factory.mktemp("auto") / "train.csv"
    path.write_bytes(AUTO)
    dm = TabularDataModule.of(path=str(path), target="y", date_cols=["when"])
    dm.setup()
    return MixedInputModel.of(**dm.dims(), num_emb="piecewise", n_members=2).eval(), dm.artifacts()


@FUZZ
@given(edits=st.lists(EDIT, min_size=1, max_size=4))
@example(edits=[("insert", 0.01171875, b"\x00"), ("replace", 0.244140625, b"\x00")])  # the year 200
def test_corrupted_new_rows_predict_or_raise_our_error(fitted, edits):
    from emblab.analysis.tables import predict_frame

    model, artifacts = fitted
    path = write(corrupt(AUTO, edits), "new.csv")
    try:
        frame = predict_frame(model, artifacts, path)
    except EmblabError:
        return
    probs = frame[["p_no", "p_yes"]].to_numpy()
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
