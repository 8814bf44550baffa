"""Pure nn.Modules, one file per family: no Lightning, no data, no config."""

import torch
from torch import Tensor


def scaled_sigmoid(x: Tensor, y_range) -> Tensor:
    """A sigmoid stretched over y_range = (lo, hi): predictions stay on the target's scale."""
    lo, hi = y_range
    return torch.sigmoid(x) * (hi - lo) + lo
