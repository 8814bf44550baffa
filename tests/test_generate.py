"""Generation: the lesson's get_next / get_next_n, seeded temperature and top-k sampling, stateful
models fed one character at a time, and the command on a real checkpoint."""

from __future__ import annotations

import pytest
import torch

from emblab.analysis.generate import choose, get_next, get_next_n, sample
from emblab.core.errors import EmblabError
from emblab.generate import load
from emblab.models.char import CharModel
from emblab.train import train

from conftest import compose_cfg, run_cli

ITOS = ["\0", *sorted(set("the quick brown fox jumps over the lazy dog."))]


def char_model(arch="char_rnn", shape="windows", **kw) -> CharModel:
    torch.manual_seed(0)
    return CharModel.of(vocab_size=len(ITOS), arch=arch, data_shape=shape, n_fac=6, n_hidden=32, samples=0, **kw).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    corpus = out / "fox.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 60)
    cfg = compose_cfg(
        [
            "model=char_rnn",
            "data=text",
            f"data.path={corpus}",
            "logger=csv",
            "debug=limit",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "model.samples=0",
        ],
        out,
    )
    return train(cfg)["last_checkpoint"]


def test_get_next_is_the_most_likely_character():
    m = char_model()
    logp, _ = m.next_log_probs(torch.tensor([ITOS.index(c) for c in "the fox"]))
    assert get_next(m, ITOS, "the fox") == ITOS[int(logp[1:].argmax()) + 1]
    out = get_next_n(m, ITOS, "the fox", 12)
    assert out.startswith("the fox") and len(out) == 7 + 12
    assert out == sample(m, ITOS, "the fox", 12, temperature=0.8, top_k=1)  # top-1 sampling is greedy


def test_sampling_is_deterministic_for_a_seed():
    m = char_model()
    a = sample(m, ITOS, "the", 60, temperature=1.0, seed=1)
    assert a == sample(m, ITOS, "the", 60, temperature=1.0, seed=1)
    assert a != sample(m, ITOS, "the", 60, temperature=1.0, seed=2)


def test_temperature_and_top_k():
    logp = torch.log_softmax(torch.tensor([0.0, 3.0, 2.0, 1.0, -5.0]), -1)
    g = torch.Generator().manual_seed(0)
    draws = [choose(logp, 1.0, 2, g) for _ in range(300)]
    assert set(draws) == {1, 2}  # only the two best; never padding id 0
    cold = [choose(logp, 0.05, None, g) for _ in range(100)]
    assert set(cold) == {1}  # low temperature: the argmax
    hot = [choose(logp, 5.0, None, g) for _ in range(300)]
    assert 4 in hot and 0 not in hot


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_stateful_generation_one_character_at_a_time(cell):
    """Feeding the newest character with the carried state equals rereading everything."""
    m = char_model("stateful", "stream", cell=cell, n_layers=2)
    ids = torch.tensor([ITOS.index(c) for c in "over the lazy"])
    _, state = m.next_log_probs(ids[:-1])
    step, _ = m.next_log_probs(ids, state)
    full, _ = m.next_log_probs(ids)
    assert torch.allclose(step, full, atol=1e-5)


def test_char3_pads_a_short_prompt():
    m = char_model("char3", "blocks", cs=3)
    assert len(sample(m, ITOS, "t", 5)) == 6


def test_unknown_prompt_character_is_named():
    with pytest.raises(EmblabError, match=r"'Z'.*not in the model's vocabulary"):
        sample(char_model(), ITOS, "the Zebra", 5)


def test_lowercased_model_lowercases_its_prompts(tmp_path):
    corpus = tmp_path / "fox.txt"
    corpus.write_text("The Quick brown fox.\n" * 60)
    cfg = compose_cfg(
        [
            "model=char_rnn",
            "data=text",
            f"data.path={corpus}",
            "data.lower=true",
            "logger=csv",
            "debug=limit",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "model.samples=0",
        ],
        tmp_path,
    )
    model, itos, lower = load(train(cfg)["last_checkpoint"])
    assert "T" not in itos and "t" in itos and lower
    assert sample(model, itos, "The Q", 10, seed=1, lower=lower) == sample(
        model, itos, "the q", 10, seed=1, lower=lower
    )


@pytest.mark.integration
def test_command_on_a_checkpoint(ckpt):
    model, itos, _ = load(ckpt)
    expected = sample(model, itos, "the q", 40, temperature=0.8, seed=3)
    res = run_cli("-m", "emblab.generate", f"ckpt_path={ckpt}", "prompt=the q", "n=40", "seed=3")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.rstrip("\n") == expected
    bad = run_cli("-m", "emblab.generate", f"ckpt_path={ckpt}", "prompt=the Q")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: character(s) 'Q' not in the model's vocabulary")
