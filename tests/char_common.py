"""Shared by the char-RNN tests (test_text_data, test_char_models, test_generate)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The char tests run small tensors: on a busy 2-core machine, thread hand-offs cost more than
    they save (a 200-character sample took 15 s on two threads, 0.06 s on one)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
