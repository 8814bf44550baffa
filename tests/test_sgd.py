"""SGD from scratch: each of the three fits recovers a and b; hand-derived gradients are autograd's;
the command writes its animation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emblab.sgd import fit_autograd, fit_numpy, gen_fake_data, mse_loss, numpy_grads

from conftest import run_cli


@pytest.fixture(scope="module")
def data():
    return gen_fake_data(2000, 3.0, 8.0, seed=0)


@pytest.mark.parametrize("batch_size", [None, 32])
def test_autograd_fits_recover_a_and_b(data, batch_size):
    a, b, losses = fit_autograd(*data, lr=0.1, steps=2000, batch_size=batch_size)
    assert a == pytest.approx(3.0, abs=0.1) and b == pytest.approx(8.0, abs=0.1)
    assert losses[0] > 40 and np.mean(losses[-50:]) < 0.12  # the noise variance is 0.09


def test_numpy_fit_recovers_a_and_b(data):
    a, b, path = fit_numpy(*data, lr=0.1, steps=2000)
    assert a == pytest.approx(3.0, abs=0.1) and b == pytest.approx(8.0, abs=0.1)
    assert len(path) == 2001 and path[0] == (-1.0, 1.0)


@pytest.mark.parametrize("a,b", [(-1.0, 1.0), (2.5, 9.0), (0.0, 0.0)])
def test_numpy_gradients_equal_autograd(data, a, b):
    x, y = data
    at = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    mse_loss(at, bt, torch.from_numpy(x), torch.from_numpy(y)).backward()
    da, db = numpy_grads(a, b, x, y)
    assert da == pytest.approx(at.grad.item(), rel=1e-12) and db == pytest.approx(bt.grad.item(), rel=1e-12)


@pytest.mark.integration
def test_command_writes_the_animation(tmp_path):
    res = run_cli("-m", "emblab.sgd", f"out={tmp_path}", "n=2000")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "mini-batch SGD" in res.stdout and "numpy GD" in res.stdout
    from PIL import Image

    with Image.open(tmp_path / "sgd.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == 41
