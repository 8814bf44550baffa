"""SGD from scratch, the lesson's warm-up: fit y = a*x + b to noisy points three ways, and watch it.

    python -m emblab.sgd out=DIR        # prints the three fits, writes DIR/sgd.gif

1. full-batch gradient descent, gradients from autograd (loss.backward())
2. mini-batch SGD: the same update from a random batch at a time
3. numpy, gradients derived by hand: loss = mean((a*x + b - y)^2), so
       dloss/db = mean(2 * (a*x + b - y))       dloss/da = mean(2 * (a*x + b - y) * x)
The animation shows the numpy fit's line converging on the points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emblab.core import cli


def lin(a, b, x):
    return a * x + b


def gen_fake_data(n: int, a: float, b: float, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """x uniform in [0, 1), y = a*x + b plus normal noise of std 0.3 (the lesson's 0.1 * N(0, 3))."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, n)
    return x, lin(a, b, x) + 0.1 * rng.normal(0, 3, n)


def mse_loss(a, b, x, y):
    return ((lin(a, b, x) - y) ** 2).mean()


# ---------------------------------------------------------------- 1 and 2: autograd
def fit_autograd(
    x,
    y,
    lr: float = 0.1,
    steps: int = 3000,
    a0: float = -1.0,
    b0: float = 1.0,
    batch_size: int | None = None,
    seed: int = 0,
) -> tuple[float, float, list[float]]:
    """Gradient descent on (a, b) with autograd. batch_size=None: the full batch every step;
    otherwise mini-batch SGD, each step on batch_size points drawn without replacement per epoch."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    g = torch.Generator().manual_seed(seed)
    order, pos, losses = torch.arange(len(x)), len(x), []
    for _ in range(steps):
        if batch_size is None:
            xb, yb = x, y
        else:
            if pos + batch_size > len(x):  # a new epoch: a new shuffle
                order, pos = torch.randperm(len(x), generator=g), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            xb, yb = x[idx], y[idx]
        loss = mse_loss(a, b, xb, yb)
        loss.backward()
        with torch.no_grad():  # the update itself is not part of the model
            a -= lr * a.grad
            b -= lr * b.grad
        a.grad.zero_()
        b.grad.zero_()
        losses.append(loss.item())
    return a.item(), b.item(), losses


# ---------------------------------------------------------------- 3: numpy, by hand
def numpy_grads(a: float, b: float, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(dloss/da, dloss/db) of the mean squared error, derived by hand."""
    dydb = 2 * (lin(a, b, x) - y)  # (n,)
    dyda = x * dydb
    return dyda.mean(), dydb.mean()


def fit_numpy(x, y, lr: float = 0.01, steps: int = 1200, a0: float = -1.0, b0: float = 1.0):
    """Full-batch gradient descent with hand-derived gradients; returns (a, b, [(a, b) per step])."""
    a, b, path = a0, b0, [(a0, b0)]
    for _ in range(steps):
        da, db = numpy_grads(a, b, x, y)
        a, b = a - lr * da, b - lr * db
        path.append((a, b))
    return a, b, path


def animate(x, y, path: list[tuple[float, float]], out: Path, every: int = 30, fps: int = 10) -> Path:
    """A GIF of the fitted line, one frame per `every` steps of `path` (matplotlib's PillowWriter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import animation

    fig, ax = plt.subplots(figsize=(5, 4), dpi=80)
    ax.scatter(x, y, s=12)
    xs = np.array([0.0, 1.0])
    (line,) = ax.plot(xs, lin(*path[0], xs), color="C1", lw=2)
    title = ax.set_title("")

    def frame(i):
        a, b = path[min(i * every, len(path) - 1)]
        line.set_ydata(lin(a, b, xs))
        title.set_text(f"step {min(i * every, len(path) - 1)}: y = {a:.2f}x + {b:.2f}")
        return line, title

    frames = (len(path) - 1) // every + 1
    anim = animation.FuncAnimation(fig, frame, frames=frames, interval=1000 // fps, blit=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    anim.save(out, writer=animation.PillowWriter(fps=fps))
    plt.close(fig)
    return out


@dataclass
class Args:
    out: str = "sgd"
    a: float = 3.0
    b: float = 8.0
    n: int = 10000
    seed: int = 42


def run(args: Args) -> None:
    x, y = gen_fake_data(args.n, args.a, args.b, args.seed)
    print(f"data: {args.n} points, y = {args.a}x + {args.b} + noise")
    a, b, losses = fit_autograd(x, y)
    print(f"full-batch GD (autograd), 3000 steps:       a={a:.3f} b={b:.3f} loss={losses[-1]:.4f}")
    a, b, losses = fit_autograd(x, y, steps=3000, batch_size=64)
    print(f"mini-batch SGD (autograd), 3000 x 64:       a={a:.3f} b={b:.3f} loss={losses[-1]:.4f}")
    # the lesson animates 50 points, so the scatter stays readable
    xs, ys = gen_fake_data(50, args.a, args.b, args.seed)
    a, b, path = fit_numpy(xs, ys)
    print(f"numpy GD (hand-derived gradients), 50 pts:  a={a:.3f} b={b:.3f} loss={mse_loss(a, b, xs, ys):.4f}")
    print(f"animation: {animate(xs, ys, path, Path(args.out) / 'sgd.gif')}")


if __name__ == "__main__":
    cli.main(Args, run)
