"""Property: a corrupted ratings or tabular file (cut lines, wrong types, odd encodings, extra or missing
separators) either loads into finite, in-range tensors or raises emblab's own error, never another
exception. Bounded to a few hundred examples so it runs in well under a minute."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
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
    dm = TabularDataModule.of(path=str(path), cat_cols=["a"], cont_cols=["x"], target="y")
    try:
        dm.setup()
    except EmblabError:
        return
    for ds in (dm.train_ds, dm.val_ds):
        if ds is not None:
            assert all(bool(torch.isfinite(t.float()).all()) for t in ds.tensors)
