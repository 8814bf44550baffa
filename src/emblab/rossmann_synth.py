"""Write Rossmann-like sales in Kaggle's exact schema (train, test, store, store_states.csv), for training
without the real files (emblab.data.rossmann_gen):

    python -m emblab.rossmann_synth out=data/rossmann/synth n_stores=200 seed=0
    python -m emblab.rossmann_synth out=DIR store_csv=$EMBLAB_SHARED_DIR/rossmann/kaggle/store.csv
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from emblab.core import cli
from emblab.core.settings import setting
from emblab.data.rossmann_files import read_store, read_store_states
from emblab.data.rossmann_gen import TRAIN_START, generate, write


@dataclass
class Args:
    out: str = "data/rossmann/synth"
    n_stores: int = setting(200, ge=1)
    seed: int = setting(0, ge=0)
    store_csv: str | None = None
    store_states_csv: str | None = None
    train_start: str = TRAIN_START


def run(args: Args) -> None:
    store = read_store(args.store_csv) if args.store_csv else None
    states = read_store_states(args.store_states_csv) if args.store_states_csv else None
    write(generate(args.n_stores, args.seed, store, states, args.train_start), Path(args.out), asdict(args))
    print(f"wrote {args.out}/train.csv, test.csv, store.csv, store_states.csv")


if __name__ == "__main__":
    cli.main(Args, run)
