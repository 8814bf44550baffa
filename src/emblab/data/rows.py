"""Users with lists of items, batched by index: a ranking model's training batches (each user's positives and
their weights) and full-ranking evaluation batches (what each user has seen, what it should find). The lists
are CSR tensors; a batch gathers its users' rows with tensor ops, no Python per user."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, values: np.ndarray | None = None) -> tuple[Tensor, ...]:
    """(indptr (n_rows + 1,), indices[, values]) of (row, col) pairs, each row's columns sorted."""
    n_cols = int(cols.max()) + 1 if len(cols) else 1
    key = rows.astype(np.int64) * n_cols + cols  # one integer key: one sort instead of lexsort's two passes
    indptr = torch.from_numpy(np.r_[0, np.cumsum(np.bincount(rows, minlength=n_rows))].astype(np.int64))
    if values is None:
        return indptr, torch.from_numpy(np.sort(key) % n_cols)
    order = np.argsort(key)
    return indptr, torch.from_numpy(cols[order].astype(np.int64)), torch.from_numpy(values[order].astype(np.float32))


def gather(indptr: Tensor, indices: Tensor, users: Tensor) -> tuple[Tensor, Tensor]:
    """The (row in the batch, column) pairs of a batch of CSR rows, (S,) each, and their positions in indices."""
    lo, counts = indptr[users], indptr[users + 1] - indptr[users]
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
    pos = lo[rows] + torch.arange(len(rows), device=users.device) - (torch.cumsum(counts, 0) - counts)[rows]
    return rows, pos


class UserRows(torch.utils.data.Dataset):
    """Users, each with lists of items (CSR: indptr, indices[, values]): an index batch of users answers
    (users (U,), then per list its (row in the batch (S,), item (S,)[, value (S,)]) pairs). Training lists a
    user's positives and their weights; evaluation what it has seen and what it should find."""

    row_sliceable = False  # a batch is users with all their items: it cannot be cut into row slices

    def __init__(self, users: Tensor, *lists: tuple[Tensor, ...]):
        self.users, self.lists = users, lists

    def __len__(self) -> int:
        return len(self.users)

    def __getitems__(self, idx: Tensor) -> tuple[Tensor, ...]:
        users, out = self.users[idx], []
        for indptr, indices, *values in self.lists:
            rows, pos = gather(indptr, indices, users)
            out += [rows, indices[pos], *(v[pos] for v in values)]
        return users, *out

    __getitem__ = __getitems__
