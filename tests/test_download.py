"""Downloads are verified before use; the GroupLens CSV sources read like the real files."""

from __future__ import annotations

import hashlib

import pytest

from emblab.core.download import download, verify
from emblab.core.errors import DataError
from emblab.data.interactions import InteractionsDataModule


def test_download_verifies_and_places_file(tmp_path):
    src = tmp_path / "remote.zip"
    src.write_bytes(b"payload")
    good = "md5:" + hashlib.md5(b"payload").hexdigest()
    dest = download(src.as_uri(), tmp_path / "data" / "x.zip", good)
    assert dest.read_bytes() == b"payload"
    assert not list(dest.parent.glob("*.part"))


def test_download_mismatch_removes_file_and_names_digests(tmp_path):
    src = tmp_path / "remote.zip"
    src.write_bytes(b"tampered")
    dest = tmp_path / "data" / "x.zip"
    expected = "0" * 64
    with pytest.raises(
        DataError,
        match=rf"sha256 checksum mismatch: expected {expected}, got {hashlib.sha256(b'tampered').hexdigest()}",
    ):
        download(src.as_uri(), dest, f"sha256:{expected}")
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_verify_passes_matching_file(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert verify(p, "sha256:" + hashlib.sha256(b"abc").hexdigest()) == p


def test_ml_latest_csv_layout_from_user_root(tmp_path):
    root = tmp_path / "ml-latest-small"
    root.mkdir()
    (root / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,10,4.5,1\n1,20,0.5,2\n2,10,3.0,3\n2,30,5.0,4\n3,20,2.5,5\n"
    )
    (root / "movies.csv").write_text(
        'movieId,title,genres\n10,"American President, The (1995)",Comedy\n'
        "20,Heat (1995)|Action\n30,Se7en (1995),Thriller\n".replace("|", ",")
    )
    dm = InteractionsDataModule.of(source="ml-latest-small", root=str(root), download=False, val_frac=0.4)
    dm.setup()
    assert dm.dims() == {"n_users": 3, "n_items": 3, "rating_range": [0.5, 5]}
    assert dm.titles == ["American President, The (1995)", "Heat (1995)", "Se7en (1995)"]
    assert len(dm.train_ds) + len(dm.val_ds) == 5 and len(dm.val_ds) == 2
    assert sorted(dm.train_ds.tensors[2].tolist() + dm.val_ds.tensors[2].tolist()) == [0.5, 2.5, 3.0, 4.5, 5.0]
