"""A task of a course's own, found by import path (``TrainConfig(task="custom_tasks:L1")``):
mean absolute error as the loss and the metric, the median's error as its baseline."""

from __future__ import annotations

import torch

from nnlab.tasks import Task


def absolute_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs.reshape(targets.shape) - targets).abs().mean()


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(absolute_error(outputs.double(), targets.double()))


def median_error(train_targets: torch.Tensor) -> float:
    return float((train_targets - train_targets.median()).abs().mean())


L1 = Task("l1", loss=absolute_error, metrics={"mae": mae}, main="mae", higher_is_better=False,
          baseline=median_error)
NOT_A_TASK = "a string"
