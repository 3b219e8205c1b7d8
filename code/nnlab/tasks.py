"""What a run learns: its loss, the metrics it is judged by, and the baseline of its checks.

A recipe names its task (``TrainConfig(task=...)``):

* ``"classification"`` (the default): integer class labels, cross-entropy, accuracy;
* ``"regression"``: float targets of any shape per sample, mean squared error; metrics
  ``rmse`` (root mean squared error) and ``r2`` (the coefficient of determination,
  averaged over the output columns as scikit-learn's ``r2_score`` does);
* ``"module:attr"``: a :class:`Task` of a course's own, found by import path, e.g. an L1
  loss with a mean absolute error metric::

      # mycourse/tasks.py
      L1 = Task("l1", loss=lambda out, y: (out.reshape(y.shape) - y).abs().mean(),
                metrics={"mae": lambda out, y: float((out.reshape(y.shape) - y).abs().mean())},
                main="mae", higher_is_better=False)
      # the recipe: TrainConfig(task="mycourse.tasks:L1")

  The path string is what goes into the result's hash; the module must be importable
  wherever the run trains (in pool workers and on cluster nodes, as the experiments are).

Every task names its metrics; a run stores ``val_<metric>`` and ``test_<metric>`` for each
of them and for ``loss``, and the variant chosen on validation is the one with the best
mean of the task's ``main`` metric (higher for accuracy, lower for RMSE). The divergence
checks of :func:`nnlab.train.train` compare the training loss with the task's
:class:`Chance`: for classification a uniform guess over the classes, for regression the
loss of predicting the training targets' mean.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nnlab.data import DataError

TARGET_KINDS = ("classes", "values")
BUILT_IN = ("classification", "regression")


class TaskError(ValueError):
    """A task that cannot be found, or does not fit the data or the model."""


@dataclass(frozen=True)
class Chance:
    """The loss a run that learned nothing would have, for the divergence checks.

    Attributes:
        loss: the loss of the trivial predictor (ln K; the training targets' variance).
        ceiling_loss: the loss that ``CHANCE_LOSS_FACTOR`` multiplies for the blow-up check.
        level: the training score of a run at chance (accuracy 1/K; R² 0).
        guess: the trivial predictor in words, for messages.
        score_name: what the score is (``accuracy``, ``R²``).
        at_chance: "at chance" in words, for messages.
        from_loss: the score is computed from the loss (``1 - loss / loss_of_chance``).
    """

    loss: float
    ceiling_loss: float
    level: float
    guess: str
    score_name: str
    at_chance: str
    from_loss: bool = False

    def score(self, loss: float, accuracy: float | None) -> float:
        return 1 - loss / self.loss if self.from_loss else accuracy


class Task:
    """A loss and metrics by which a run learns and is judged.

    Args:
        name: a short name for messages.
        loss: ``loss(outputs, targets)``, the mean loss of a batch as a differentiable tensor.
        metrics: name -> ``metric(outputs, targets)``, a float over a whole split (the
            model's outputs for all its samples); ``loss`` is always measured too.
        main: the metric that chooses the variant on validation (``loss`` by default).
        higher_is_better: the direction of ``main``.
        targets: ``values`` (float targets) or ``classes`` (int64 labels).
        baseline: ``baseline(train_targets)``, the loss of a predictor that learned nothing,
            or None: then only the non-finite and blow-up checks of training apply.
    """

    def __init__(self, name: str, loss: Callable, metrics: Mapping[str, Callable] | None = None, *,
                 main: str = "loss", higher_is_better: bool = False, targets: str = "values",
                 baseline: Callable[[torch.Tensor], float] | None = None):
        metrics = dict(metrics or {})
        bad = [m for m in metrics if not (isinstance(m, str) and m.isidentifier()) or m == "loss"]
        if bad:
            raise TaskError(f"task {name!r}: metric names must be identifiers other than 'loss', got {bad}")
        if main != "loss" and main not in metrics:
            raise TaskError(f"task {name!r}: main metric {main!r} is not one of loss, {', '.join(metrics)}")
        if targets not in TARGET_KINDS:
            raise TaskError(f"task {name!r}: targets must be one of {', '.join(TARGET_KINDS)}, got {targets!r}")
        self.name, self._loss, self._metrics = name, loss, metrics
        self.main, self.higher_is_better, self.targets, self._baseline = main, higher_is_better, targets, baseline

    @property
    def metric_names(self) -> tuple[str, ...]:
        """``loss`` and the task's metrics: a run stores ``val_``/``test_`` + each."""
        return ("loss", *self._metrics)

    def batch_loss(self, outputs: torch.Tensor, targets: torch.Tensor, config) -> torch.Tensor:
        """The mean loss of one training batch (``config`` is the run's TrainConfig)."""
        return self._loss(outputs, targets)

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Every metric of a whole split, from the model's outputs for all its samples."""
        return {"loss": float(self._loss(outputs, targets)),
                **{m: float(fn(outputs, targets)) for m, fn in self._metrics.items()}}

    def check_targets(self, targets: torch.Tensor, split: str) -> None:
        """Refuse targets of the wrong kind, in one line that names the fix."""
        if self.targets == "classes":
            _check_labels(targets, split, self.name)
        elif not targets.is_floating_point():
            raise DataError(
                f"the {split} targets are {targets.dtype} class labels, but task {self.name!r} learns float "
                "values: give float targets (ArrayData(..., targets='values') keeps whole-number floats as "
                "values), or use TrainConfig(task='classification')")
        elif not bool(torch.isfinite(targets).all()):
            raise DataError(f"the {split} targets hold NaN or infinite values; clean them before training")

    def check_outputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        """Refuse a model whose outputs per sample cannot be compared with the targets."""
        per_out, per_target = outputs[0].numel(), targets[0].numel() if targets.dim() > 1 else 1
        if self.targets == "values" and per_out != per_target:
            raise TaskError(f"the model returns {tuple(outputs.shape[1:])} per sample but the targets have shape "
                            f"{tuple(targets.shape[1:])}: end the model in a layer with {per_target} output(s)")

    def chance(self, train_targets: torch.Tensor, outputs: int) -> Chance | None:
        """The baseline of the divergence checks (None: this task has none)."""
        if self._baseline is None:
            return None
        loss = float(self._baseline(train_targets))
        return Chance(loss, loss, 0.0, f"the baseline predictor ({loss:.3g})", "score",
                      "no better than the baseline predictor", from_loss=True)

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` of ``main`` is better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def __repr__(self) -> str:
        return f"Task({self.name!r}, metrics={list(self.metric_names)}, main={self.main!r})"


def _check_labels(y: torch.Tensor, split: str, name: str) -> None:
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"the {split} targets are {y.dtype} values, but task {name!r} needs integer class labels "
                        "0..K-1: map them to class indices, or use TrainConfig(task='regression') for float targets")
    if y.dim() != 1:
        raise DataError(f"the {split} labels have shape {tuple(y.shape)}: give one class index per sample")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"the {split} labels include {int(y.min())}: class labels run from 0 to K-1")


class Classification(Task):
    """Integer labels, cross-entropy (with the recipe's label smoothing), accuracy."""

    def __init__(self):
        super().__init__("classification", loss=F.cross_entropy, metrics={"acc": accuracy}, main="acc",
                         higher_is_better=True, targets="classes")

    def batch_loss(self, outputs: torch.Tensor, targets: torch.Tensor, config) -> torch.Tensor:
        return F.cross_entropy(outputs, targets, label_smoothing=config.label_smoothing)

    def check_outputs(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        if outputs.dim() != 2:
            raise TaskError(f"a classifier must return one row of class scores per sample, but the model returns "
                            f"shape {tuple(outputs.shape[1:])} per sample")
        top = int(targets.max()) if len(targets) else -1
        if top >= outputs.shape[1]:
            raise DataError(f"the labels include class {top}, but the model has {outputs.shape[1]} outputs: "
                            f"end it in a layer with {top + 1} outputs (one per class), or map the labels to 0..K-1")

    def chance(self, train_targets: torch.Tensor, outputs: int) -> Chance:
        guess = math.log(outputs)
        return Chance(guess, guess, 1 / outputs, f"a uniform guess over {outputs} classes (ln {outputs} = {guess:.3g})",
                      "accuracy", f"at chance for {outputs} classes")


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of samples whose largest output is their label."""
    return float((outputs.argmax(1) == labels).double().mean())


def _columns(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and targets as float64 ``(N, D)`` columns, one per output."""
    n = len(targets)
    return outputs.reshape(n, -1).double(), targets.reshape(n, -1).double()


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over samples and outputs (differentiable)."""
    return F.mse_loss(outputs.reshape(targets.shape), targets)


def rmse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Root mean squared error, in the targets' unit."""
    out, y = _columns(outputs, targets)
    return math.sqrt(float(((out - y) ** 2).mean()))


def r2(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Coefficient of determination, averaged over output columns (scikit-learn's
    ``r2_score``): 1 is perfect, 0 is the split's own mean. A constant column scores 1 when
    predicted exactly, else 0."""
    out, y = _columns(outputs, targets)
    sse, sst = ((out - y) ** 2).sum(0), ((y - y.mean(0)) ** 2).sum(0)
    per = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300), (sse == 0).double())
    return float(per.mean())


class Regression(Task):
    """Float targets of any shape per sample; mean squared error; RMSE and R²."""

    def __init__(self):
        super().__init__("regression", loss=mse, metrics={"rmse": rmse, "r2": r2}, main="rmse",
                         higher_is_better=False, targets="values")

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        out, y = _columns(outputs, targets)
        return {"loss": float(((out - y) ** 2).mean()), "rmse": rmse(outputs, targets), "r2": r2(outputs, targets)}

    def chance(self, train_targets: torch.Tensor, outputs: int) -> Chance:
        y = train_targets.reshape(len(train_targets), -1).double()
        mean_loss = float(((y - y.mean(0)) ** 2).mean())
        zero_loss = float((y ** 2).mean())  # where a network's first, near-zero outputs start
        return Chance(max(mean_loss, 1e-12), max(mean_loss, zero_loss),
                      0.0, f"predicting the training mean or zero ({max(mean_loss, zero_loss):.3g})", "R²",
                      "no better than predicting the training mean", from_loss=True)


CLASSIFICATION, REGRESSION = Classification(), Regression()
_IMPORTED: dict[str, Task] = {}


def is_import_path(name: str) -> bool:
    module, _, attr = name.partition(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in (*module.split("."), *attr.split(".")))


def get(name: str) -> Task:
    """The task a recipe names: a built-in one, or a :class:`Task` by ``module:attr``.

    Raises:
        TaskError: the name is neither, the module cannot be imported, or the attribute is
            not a Task; the message names the fix.
    """
    if name == "classification":
        return CLASSIFICATION
    if name == "regression":
        return REGRESSION
    if name in _IMPORTED:
        return _IMPORTED[name]
    if not is_import_path(name):
        raise TaskError(f"unknown task {name!r}; choose classification, regression, or a Task of your own "
                        "as 'module:attr' (e.g. 'mycourse.tasks:L1')")
    module_name, _, attr = name.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaskError(f"task {name!r}: cannot import {module_name} ({type(exc).__name__}: {exc}); install the "
                        "course's package where training runs, or put its folder on PYTHONPATH") from None
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, Task):
        raise TaskError(f"task {name!r}: {attr} in {module_name} is {type(obj).__name__}, not an nnlab.tasks.Task")
    _IMPORTED[name] = obj
    return obj
