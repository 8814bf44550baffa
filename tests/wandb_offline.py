"""Read an offline W&B run back (history, summary, config) without a network or a W&B account.

Recent wandb versions keep an offline run only in its binary `run-<id>.wandb` file: a LevelDB-style
log (32 KiB blocks, 7-byte record headers) of protobuf Records. Tests use this to prove what a run
logged; users can use it to check a run before `wandb sync`.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, chunk = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the end of a block
            pos += left
            continue
        pos += HEADER
        if pos + length > len(data):  # the writer is mid-record: stop at the last complete one
            return
        chunk += data[pos : pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def _items(items) -> dict:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def read_offline_run(run_dir: str | Path, wait_s: float = 0.0) -> dict:
    """{"history": [row, ...], "summary": {...}, "config": {...}, "finished": bool} of an offline-run-* folder.

    wandb's service process writes the file on its own schedule, also after run.finish() returns:
    wait_s > 0 re-reads until the run's exit record is there or the time is up.
    """
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            out = _read(Path(run_dir))
        except DecodeError:  # a record caught half-written while the service still writes
            if time.monotonic() >= deadline:
                raise
            out = None
        if out is not None and (out["finished"] or time.monotonic() >= deadline):
            return out
        time.sleep(0.2)


def _read(run_dir: Path) -> dict:
    (path,) = run_dir.glob("run-*.wandb")
    out: dict = {"history": [], "summary": {}, "config": {}, "finished": False}
    for r in _records(path):
        kind = r.WhichOneof("record_type")
        if kind == "history":
            out["history"].append(_items(r.history.item))
        elif kind == "summary":
            out["summary"].update(_items(r.summary.update))
        elif kind == "config":
            out["config"].update(_items(r.config.update))
        elif kind == "exit":
            out["finished"] = True
    return out
