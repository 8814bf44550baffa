"""emblab: fast.ai's classic embedding models as PyTorch Lightning + Hydra."""

__version__ = "0.1.0"
