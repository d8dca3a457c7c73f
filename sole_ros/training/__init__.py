"""Training and evaluation of SOLE: Hungarian matching, mask and association (MVA/MCA/MEA) losses,
AdamW + OneCycle, mixed precision, checkpoints and resume, DDP under torchrun, metrics and plots.

    from sole_ros.training import TrainConfig, train, evaluate_checkpoint
"""

from sole_ros.training.config import DataConfig, TrainConfig

__all__ = ["DataConfig", "TrainConfig", "evaluate_checkpoint", "train"]


def __getattr__(name):
    # Lazy: the CLI imports this package to register its commands without loading torch models.
    if name == "train":
        from sole_ros.training.trainer import train

        return train
    if name == "evaluate_checkpoint":
        from sole_ros.training.evaluate import evaluate_checkpoint

        return evaluate_checkpoint
    raise AttributeError(name)
