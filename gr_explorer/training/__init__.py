"""Training: SSL / supervised / label-aligned objectives, batched augmentations, a short loop, zoo-format checkpoints.

    from gr_explorer.training import TrainConfig, train
    result = train(TrainConfig(objective="simclr", projector="512-512-128", out="runs/simclr.safetensors"))
    # -> probe it like a shipped model: load_model(f"file:{result.path}")
"""

from ..augment import AugmentConfig, augment
from ..errors import TrainingError
from .config import TrainConfig
from .loop import TrainResult, train
from .objectives import OBJECTIVES, make_objective

__all__ = ["AugmentConfig", "OBJECTIVES", "TrainConfig", "TrainResult", "TrainingError", "augment", "make_objective", "train"]
