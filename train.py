"""Train any emblab model: `python train.py model=char_rnn trainer.gpus=1` (see README)."""

import sys

import hydra
from omegaconf import DictConfig

from emblab.train import main as train_main
from emblab.training.config import check_command_line


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train_main(cfg)


if __name__ == "__main__":
    check_command_line(sys.argv[1:])  # a misspelt key or group value: one line, before Hydra's many
    main()
