"""Text from a character model (emblab.generate). get_next / get_next_n are the lesson's: the most likely next
character, and n of them, each fed back in. `stream` draws instead: log-probabilities divided by the temperature
(below 1: safer, above 1: wilder; 0: the most likely, as get_next), optionally only among the top_k characters,
from a seeded generator, so one seed always gives the same text. Each character costs the same: the model reads
a window of its last cs characters (a stateful model: the newest one and its state), never the whole text."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from emblab.core.errors import EmblabError
from emblab.data.text import encode


def _stoi(itos: list[str]) -> dict[str, int]:
    return {c: i for i, c in enumerate(itos) if i > 0}  # the padding id 0 never appears in text


def get_next(model, itos: list[str], inp: str) -> str:
    """The most likely character after `inp`."""
    log_probs, _ = model.next_log_probs(encode(inp, _stoi(itos)))
    return itos[int(log_probs.argmax())]


def get_next_n(model, itos: list[str], inp: str, n: int) -> str:
    """inp followed by n characters, each the most likely one after everything so far."""
    return sample(model, itos, inp, n, temperature=0.0)


def choose(log_probs: torch.Tensor, temperature: float, top_k: int | None, g: torch.Generator) -> int:
    """One character id from log-probabilities (V,); the padding id 0 is never chosen."""
    log_probs = log_probs.clone()
    log_probs[0] = -torch.inf
    if temperature <= 0:
        return int(log_probs.argmax())
    logits = log_probs / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits[logits < kth] = -torch.inf
    return int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))


@torch.no_grad()
def stream(
    model,
    itos: list[str],
    prompt: str,
    n: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    lower: bool = False,
) -> Iterator[str]:
    """n generated characters after prompt, one at a time (lower: the model was trained on lowercased text)."""
    if not prompt:
        raise EmblabError("prompt is empty: give at least one character to start from")
    was_training, threads = model.training, torch.get_num_threads()
    # one character at a time is a chain of tiny matmuls: thread hand-offs cost more than they save
    torch.set_num_threads(1)
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        ids = encode(prompt.lower() if lower else prompt, _stoi(itos)).to(model.device)
        window = 1 if model.stateful else max(model.cfg.cs, 3)
        log_probs, state = model.next_log_probs(ids)
        for _ in range(n):
            c = choose(log_probs.float().cpu(), temperature, top_k, g)
            yield itos[c]
            ids = torch.cat([ids[len(ids) - window + 1 :] if window > 1 else ids[:0], ids.new_tensor([c])])
            log_probs, state = model.next_log_probs(ids, state)
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)


def sample(
    model,
    itos: list[str],
    prompt: str,
    n: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    lower: bool = False,
) -> str:
    """prompt followed by n generated characters."""
    return (prompt.lower() if lower else prompt) + "".join(
        stream(model, itos, prompt, n, temperature, top_k, seed, lower)
    )
