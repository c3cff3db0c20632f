"""A small third-party project as a PyTorch Lightning user writes it, without importing Lightning.

``LitNet`` stands in for a ``pl.LightningModule``: its ``__init__`` takes the hyperparameters
(``self.save_hyperparameters()`` would store them in the ``.ckpt``), and the network sits in
``self.model``, so the checkpoint's keys are ``model.conv.weight``, ... The network has no norm
layer, as many small Lightning examples do. :func:`lightning_checkpoint` writes the dict that
``Trainer.save_checkpoint`` writes (the keys Lightning 2.x puts in a ``.ckpt``), with ``torch.save``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


class Net(nn.Module):
    """conv -> relu -> pool -> hidden -> classes: its shapes depend on ``num_filters`` and ``hidden_size``."""

    def __init__(self, num_filters: int = 4, hidden_size: int = 16, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_filters, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.hidden = nn.Linear(num_filters * 16, hidden_size)
        self.out = nn.Linear(hidden_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.pool(torch.relu(self.conv(x))).flatten(1)  # (N, num_filters * 16)
        return self.out(torch.relu(self.hidden(h)))  # (N, num_classes)


class LitNet(nn.Module):
    """The LightningModule: hyperparameters in ``__init__``, the network in ``self.model``."""

    def __init__(
        self,
        num_filters: int = 4,
        hidden_size: int = 16,
        lr: float = 1e-3,
        class_weights: Any = None,
        num_classes: int = 10,
        in_channels: int = 1,
    ):
        super().__init__()
        self.lr = lr
        self.class_weights = class_weights
        self.model = Net(num_filters, hidden_size, num_classes, in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def lightning_checkpoint(module: LitNet, hyper_parameters: dict[str, Any], path: Path) -> Path:
    """Write ``module`` as ``Trainer.save_checkpoint`` does: weights under ``state_dict``, ``hyper_parameters``
    beside them, and the trainer's own state."""
    torch.save(
        {
            "epoch": 3,
            "global_step": 1200,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": module.state_dict(),
            "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
            "callbacks": {},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999)}]}],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": hyper_parameters,
        },
        path,
    )
    return path
