"""Train any emblab model: `python train.py model=char_rnn trainer.gpus=1` (see README)."""

import hydra
from omegaconf import DictConfig

from emblab.train import run


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
