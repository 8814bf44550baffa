"""Text from a character model, on the CPU.

    python -m emblab.generate ckpt_path=logs/.../checkpoints/last.ckpt prompt="for thos" n=400 temperature=0.8

get_next / get_next_n are the lesson's: the most likely next character, and n of them, each fed back
in. `sample` draws instead: log-probabilities divided by the temperature (below 1: safer, above 1:
wilder; 0: the most likely, as get_next), optionally only among the top_k characters, from a seeded
generator so one seed always gives the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emblab import cli
from emblab.data.text import decode, encode
from emblab.errors import EmblabError, check_range


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
def sample(
    model, itos: list[str], prompt: str, n: int, temperature: float = 0.8, top_k: int | None = None, seed: int = 0
) -> str:
    """prompt followed by n generated characters."""
    if not prompt:
        raise EmblabError("prompt is empty: give at least one character to start from")
    if getattr(model, "lowercase_prompts", False):
        prompt = prompt.lower()
    was_training, threads = model.training, torch.get_num_threads()
    # one character at a time is a chain of tiny matmuls: thread hand-offs cost more than they
    # save (15x slower with 2 threads on a busy 2-core machine), so sample on one thread
    torch.set_num_threads(1)
    model.eval()
    try:
        g = torch.Generator().manual_seed(seed)
        ids = encode(prompt, _stoi(itos)).to(model.device)
        out: list[int] = []
        log_probs, state = model.next_log_probs(ids)
        for _ in range(n):
            c = choose(log_probs.float().cpu(), temperature, top_k, g)
            out.append(c)
            ids = torch.cat([ids, ids.new_tensor([c])])
            log_probs, state = model.next_log_probs(ids, state)
    finally:
        model.train(was_training)
        torch.set_num_threads(threads)
    return prompt + decode(out, itos)


def load(path) -> tuple[object, list[str]]:
    """(model, itos) from a char-model checkpoint. A model trained on lowercased text
    (data.lower=true) gets its prompts lowercased too."""
    from emblab.checkpoint import load_model

    model, ckpt = load_model(path)
    if ckpt["emblab"]["data_kind"] != "text":
        raise EmblabError(f"{path} is a {ckpt['emblab']['data_kind']} model, not a character model")
    data = ckpt["emblab"]["data"]
    model.lowercase_prompts = bool(data.get("lower", False))
    return model, data["itos"]


@dataclass
class Args:
    ckpt_path: str = "???"
    prompt: str = "for thos"
    n: int = 400
    temperature: float = 0.8
    top_k: int | None = None
    seed: int = 0


def run(args: Args) -> None:
    check_range("temperature", args.temperature, lo=0)
    check_range("n", args.n, lo=0, integer=True)
    if args.top_k is not None:
        check_range("top_k", args.top_k, lo=1, integer=True)
    model, itos = load(args.ckpt_path)
    print(sample(model, itos, args.prompt, args.n, args.temperature, args.top_k, args.seed))


if __name__ == "__main__":
    cli.main(Args, run)
