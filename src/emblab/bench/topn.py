"""Top-N recommendations side by side, on any interaction data and split, in one run: emblab's ranker
(model=collab_rank), its rating model (model=collab, where the data has ratings), EASE (Steck 2019), implicit's ALS
and BPR, and the most popular items. Every model trains on the same training part and is scored on the same test
part with the same code (emblab.analysis.ranking: full rankings of every unseen item); every peer's settings are
chosen on the validation part from a grid, as emblab's ranker chooses its epochs there.

    python -m emblab.bench.topn [overrides=[experiment=collab_rank_ml100k]] [seeds=0,1,2] [name=ml-100k]
        [models=collab_rank,collab,ease,als,bpr,popular] [out=logs/bench/topn] [update_md=BENCHMARKS.md]

overrides: the data (and split) for every model, e.g. [data=interactions,data.path=F,data.user_col=..,
data.rating_col=null,data.min_interactions=5,data.split=user_random,data.val_frac=0.1,data.test_frac=0.1].
Each seed is a split (data.split_seed) and every model's seed. ALS and BPR need the bench extra (implicit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from emblab.analysis.ranking import rank_users
from emblab.bench import choose, compose, markdown_table, new_result, prepare, seed_summary, write_result
from emblab.core import cli
from emblab.core.errors import ConfigError

MODELS = ("collab_rank", "collab", "ease", "als", "bpr", "popular")
QUIET = ["logger=csv", "~callbacks.progress_bar", "~callbacks.model_summary", "~callbacks.lr_monitor"]


@dataclass
class Args:
    overrides: list[str] = field(default_factory=list)
    seeds: str = "0,1,2"
    models: str = ",".join(MODELS)
    name: str = "topn"  # the data's name in the table (and the section update_md replaces: topn-<name>)
    k: int = 10
    ease_lambdas: list[float] = field(default_factory=lambda: [10, 20, 50, 100, 200, 500, 1000, 2000, 5000])
    als_factors: list[int] = field(default_factory=lambda: [64, 128, 256])
    als_regs: list[float] = field(default_factory=lambda: [1.0, 3.0, 10.0, 30.0, 100.0, 300.0])
    als_alphas: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0, 10.0])
    out: str = "logs/bench/topn"
    threads: int = 1
    update_md: str | None = None


class Split:
    """One seed's split, as emblab's ranker sees it: the training matrix and the validation and test users with
    what they have seen and what they should find."""

    def __init__(self, cfg):
        from emblab.data.interactions import InteractionsDataModule
        from emblab.training.config import check_config

        s = check_config(cfg)
        self.dm = dm = InteractionsDataModule(s["data"], "interactions")
        dm.setup()
        if dm.test_ds is None:
            raise ConfigError(
                "the benchmark scores a test part: give the data one (data.test_frac or data.test_holdout)"
            )
        indptr, items, _ = dm.train_ds.lists[0]
        n_users, n_items = len(dm.ids["user"]), len(dm.ids["item"])
        self.X = sp.csr_matrix((np.ones(len(items), np.float32), items.numpy(), indptr.numpy()), (n_users, n_items))

    def score(self, fn, part: str, k: int) -> dict[str, float]:
        ds = self.dm.val_ds if part == "val" else self.dm.test_ds
        return rank_users(fn, ds.users, *ds.lists, k=k)


def ease(X: sp.csr_matrix, lam: float) -> torch.Tensor:
    """EASE: B = I - P / diag(P), P = (X^T X + lam I)^-1, diag(B) = 0; (n_items, n_items)."""
    dtype = torch.float64 if X.shape[1] <= 5000 else torch.float32
    G = torch.from_numpy((X.T @ X).toarray()).to(dtype)
    G.diagonal().add_(lam)
    P = torch.cholesky_inverse(torch.linalg.cholesky(G))
    B = -P / P.diagonal()[None, :]
    B.diagonal().zero_()
    return B.float()


def run_ease(split: Split, lambdas, k: int) -> tuple[dict, dict]:
    best = None
    for lam in lambdas:
        scores = torch.from_numpy(np.asarray(split.X @ ease(split.X, lam).numpy()))  # (n_users, n_items)
        val = split.score(lambda u, s=scores: s[u], "val", k)[f"ndcg@{k}"]
        if best is None or val > best[0]:
            best = (val, lam, scores)
    _, lam, scores = best
    return split.score(lambda u: scores[u], "test", k), {"lambda": lam}


def implicit_scores(model):
    U, V = (torch.from_numpy(np.asarray(f)) for f in (model.user_factors, model.item_factors))
    return lambda u: U[u] @ V.T


def run_als(split: Split, args: Args, seed: int) -> tuple[dict, dict]:
    """implicit's ALS: (regularization, alpha) at the middle factor count, then the factor counts at the best."""
    from implicit.cpu.als import AlternatingLeastSquares

    best, k = None, args.k

    def fit(f, reg, alpha):
        nonlocal best
        m = AlternatingLeastSquares(
            factors=f,
            regularization=reg,
            alpha=alpha,
            iterations=15,
            random_state=seed,
            num_threads=args.threads,
            calculate_training_loss=False,
        )
        m.fit(split.X, show_progress=False)
        val = split.score(implicit_scores(m), "val", k)[f"ndcg@{k}"]
        if best is None or val > best[0]:
            best = (val, {"factors": f, "regularization": reg, "alpha": alpha}, m)

    middle = args.als_factors[len(args.als_factors) // 2]
    for reg in args.als_regs:
        for alpha in args.als_alphas:
            fit(middle, reg, alpha)
    for f in args.als_factors:
        if f != middle:
            fit(f, best[1]["regularization"], best[1]["alpha"])
    _, params, m = best
    return split.score(implicit_scores(m), "test", k), params


def run_bpr(split: Split, args: Args, seed: int) -> tuple[dict, dict]:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    best, k = None, args.k
    for f in (64, 128):
        for lr in (0.003, 0.01, 0.05):
            for reg in (0.001, 0.01, 0.1):
                m = BayesianPersonalizedRanking(
                    factors=f,
                    learning_rate=lr,
                    regularization=reg,
                    iterations=100,
                    random_state=seed,
                    num_threads=args.threads,
                )
                m.fit(split.X, show_progress=False)
                val = split.score(implicit_scores(m), "val", k)[f"ndcg@{k}"]
                if best is None or val > best[0]:
                    best = (val, {"factors": f, "learning_rate": lr, "regularization": reg}, m)
    _, params, m = best
    return split.score(implicit_scores(m), "test", k), params


def run_emblab(model: str, base: list[str], split: Split, args: Args, out) -> tuple[dict, dict]:
    from emblab.train import train
    from emblab.training.loading import load_model

    metrics = train(compose([*base, f"model={model}"], out))
    info = {"epochs": metrics["epochs"], "best_epoch": metrics.get("val/ndcg@10", {}).get("best_epoch")}
    if model == "collab_rank":
        return {
            name: metrics[f"test/{name}"]["final"]
            for name in (f"ndcg@{args.k}", f"recall@{args.k}", f"mrr@{args.k}", f"hit@{args.k}")
        }, info
    path = metrics["best_checkpoint"] or metrics["last_checkpoint"]  # a rating model: its lists, ranked alike
    rating_model, ckpt = load_model(path)
    if ckpt["emblab"]["data"]["split"] != split.dm.split_id:
        raise ConfigError(f"{model} trained on another split than the ranker's (its data settings differ)")
    with torch.no_grad():
        return split.score(lambda u: rating_model.score_items(u), "test", args.k), info


def markdown(result: dict, k: int) -> str:
    ease_ndcg = result["models"].get("ease", {}).get(f"ndcg@{k}", {}).get("mean")
    rows = []
    for name, r in result["models"].items():
        n, rec = r[f"ndcg@{k}"], r[f"recall@{k}"]
        rows.append(
            [
                name,
                f"{n['mean']:.4f} ± {n['sd']:.4f}",
                f"{rec['mean']:.4f} ± {rec['sd']:.4f}",
                f"{r[f'mrr@{k}']['mean']:.4f}",
                f"{r[f'hit@{k}']['mean']:.4f}",
                f"{n['mean'] / ease_ndcg:.3f}" if ease_ndcg else "—",
                f"{r['fit_s']:.1f}",
                "; ".join(str(p) for p in r["params"]),
            ]
        )
    return markdown_table(
        result,
        f"{result['name']}: {result['data']}; seeds {result['seeds']}, test metrics mean ± "
        "sd over the seeds (population sd), fit s their median",
        [
            "model",
            f"NDCG@{k}",
            f"Recall@{k}",
            f"MRR@{k}",
            f"Hit@{k}",
            "x EASE",
            "fit s",
            "chosen on validation (per seed)",
        ],
        rows,
    )


def main(args: Args) -> dict:
    models = choose(args.models, MODELS, "models")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = prepare(args.out, args.threads)
    start = time.perf_counter()
    runs = {m: [] for m in models}
    result = new_result("emblab.bench.topn", args.threads, name=args.name, seeds=seeds, models={})
    for seed in seeds:
        base = [*args.overrides, f"data.split_seed={seed}", f"seed={seed}", f"torch_threads={args.threads}", *QUIET]
        split = Split(compose(["model=collab_rank", *base], out / "split"))
        result["data"] = (
            f"{len(split.dm.ids['user'])} users, {len(split.dm.ids['item'])} items, {split.X.nnz} training interactions"
        )
        for m in models:
            t = time.perf_counter()
            if m == "collab_rank":
                test, params = run_emblab(m, base, split, args, out / m / str(seed))
            elif m == "collab":
                if split.dm.cfg.rating_col is None:
                    continue  # implicit data: no rating model
                # the rating recipe's own epochs (experiment=collab_ml100k), on the same data and split
                test, params = run_emblab(m, [*base, "trainer.max_epochs=8"], split, args, out / m / str(seed))
            elif m == "ease":
                test, params = run_ease(split, args.ease_lambdas, args.k)
            elif m in ("als", "bpr"):
                try:
                    test, params = (run_als if m == "als" else run_bpr)(split, args, seed)
                except ImportError:
                    print(f"{m}: skipped, implicit is not installed (pip install -e '.[bench]')", flush=True)
                    continue
            else:
                counts = torch.from_numpy(np.asarray(split.X.sum(0)).ravel())
                test, params = split.score(lambda u, c=counts: c.expand(len(u), -1), "test", args.k), {}
            runs[m].append({"test": test, "fit_s": time.perf_counter() - t, "params": params})
            print(
                f"seed {seed} {m}: ndcg@{args.k} {test[f'ndcg@{args.k}']:.4f} ({time.perf_counter() - t:.1f} s) "
                f"{params}",
                flush=True,
            )
    metrics = [f"{name}@{args.k}" for name in ("ndcg", "recall", "mrr", "hit")]
    result["models"] = {m: seed_summary(r, metrics) for m, r in runs.items() if r}
    result["overrides"] = args.overrides
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    write_result(out, f"topn-{args.name}", result, markdown(result, args.k), args.update_md)
    return result


if __name__ == "__main__":
    cli.main(Args, main)
