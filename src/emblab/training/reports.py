"""What some families report while they train, beside their metrics: a character model's samples, a rating
model's top-k quality measured as a ranking model's is."""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch

log = logging.getLogger("emblab")


class TextSamples(pl.Callback):
    """A few samples from a character model after each validation epoch: to the console and, with W&B, to a
    table. How many, how long and how hot are the model's settings (samples, sample_len, sample_temperature);
    a model or data without them is left alone."""

    def on_validation_epoch_end(self, trainer, pl_module):
        cfg, dm = getattr(pl_module, "cfg", None), trainer.datamodule
        n = getattr(cfg, "samples", 0)
        if trainer.sanity_checking or not trainer.is_global_zero or not n or not hasattr(dm, "sample_prompts"):
            return
        from emblab.analysis.generate import sample

        itos, rows = dm.artifacts()["itos"], []
        for i, prompt in enumerate(dm.sample_prompts(n, max(cfg.cs, 8))):
            text = sample(pl_module, itos, prompt, cfg.sample_len, cfg.sample_temperature, seed=i)
            rows.append([trainer.current_epoch, prompt, text])
            log.info("sample (epoch %d) %r -> %r", trainer.current_epoch, prompt, text)
        for lg in trainer.loggers:
            if hasattr(lg, "log_text"):  # WandbLogger: a table of samples per epoch
                lg.log_text(key="samples", columns=["epoch", "prompt", "text"], data=rows)


class RankingMetrics(pl.Callback):
    """A rating model's top-k quality after each validation epoch, measured as a ranking model's is (NDCG, Recall,
    MRR and Hit at k of full rankings; emblab.models.metrics.TopK): each validation user's candidates are the items
    it did not rate in training, the relevant ones those it rated at least `relevant` in validation. Off unless k
    is set (callbacks.ranking.k=10); a no-op for other families."""

    def __init__(self, k: int | None = None, relevant: float = 4.0):
        self.k, self.relevant = k, relevant

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(f"val/{m}@{self.k}" for m in ("ndcg", "recall", "mrr", "hit")) if self.k else ()

    def on_validation_epoch_end(self, trainer, pl_module):
        dm = trainer.datamodule
        if (
            not self.k
            or trainer.sanity_checking
            or not hasattr(pl_module, "score_items")
            or pl_module.data_kind != "ratings"
        ):
            return
        from emblab.analysis.ranking import rank_users
        from emblab.data.rows import csr

        (tu, ti, _), (vu, vi, vr) = (
            (t.cpu().numpy() for t in dm.train_ds.tensors),
            (t.cpu().numpy() for t in dm.val_ds.tensors),
        )
        liked = vr >= self.relevant
        n_users = pl_module.hparams.n_users
        seen, relevant = csr(tu, ti, n_users), csr(vu[liked], vi[liked], n_users)
        users = torch.from_numpy(np.unique(vu[liked]))
        device = pl_module.device
        scores = rank_users(lambda u: pl_module.score_items(u.to(device)).cpu(), users, seen, relevant, self.k)
        pl_module.log_dict({f"val/{name}": v for name, v in scores.items()})
