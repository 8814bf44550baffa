"""Text from a character checkpoint, on the CPU, printed as it is generated (emblab.analysis.generate).

    python -m emblab.generate ckpt_path=logs/.../checkpoints/last.ckpt prompt="for thos" n=400 temperature=0.8

top_k=5 samples among the 5 likeliest characters; seed=N gives the same text for the same N; temperature=0 is
the lesson's get_next_n. n is at most MAX_CHARS.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from emblab.analysis.generate import stream
from emblab.core import cli
from emblab.core.settings import setting
from emblab.training.loading import load_model

MAX_CHARS = 1_000_000  # a bound on one command's work (seconds per 10,000 characters on a CPU)


@dataclass
class Args:
    ckpt_path: str = "???"
    prompt: str = "for thos"
    n: int = setting(400, ge=0, le=MAX_CHARS)
    temperature: float = setting(0.8, ge=0)
    top_k: int | None = setting(None, ge=1)
    seed: int = setting(0, ge=0)


def load(path) -> tuple[object, list[str], bool]:
    """(model, itos, lower) from a char-model checkpoint; lower: it was trained on lowercased text."""
    model, ckpt = load_model(path, expect_kind="text")
    data = ckpt["emblab"]["data"]
    return model, data["itos"], bool(data.get("lower", False))


def run(args: Args) -> None:
    model, itos, lower = load(args.ckpt_path)
    sys.stdout.write(args.prompt.lower() if lower else args.prompt)
    for i, c in enumerate(stream(model, itos, args.prompt, args.n, args.temperature, args.top_k, args.seed, lower)):
        sys.stdout.write(c)
        if i % 64 == 63:
            sys.stdout.flush()
    sys.stdout.write("\n")


if __name__ == "__main__":
    cli.main(Args, run)
