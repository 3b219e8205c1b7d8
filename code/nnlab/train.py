"""The training loop: tensor-resident data, one flat loop, reproducible and resumable.

The whole dataset lives in one tensor on the training device. Each epoch draws a fresh
seeded permutation and slices it into batches, so a step costs one gather instead of
thousands of per-item Python calls of a ``DataLoader``. Per-step losses and correct
counts accumulate in device tensors; the host reads them once per epoch (and checks for a
non-finite loss every ``CHECK_EVERY`` steps), so GPU runs do not sync on every step.

:func:`train` is the loop itself, epoch by epoch; ``_train_epoch`` the steps of one
epoch. The rest are helpers with one job each: checking the data (``_checked_splits``), the
per-step bookkeeping (``_Tally``), watching for divergence (``_Watch``), the checkpoint
(``_Checkpoint``), the progress bar and the finished run's result.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nnlab import augment, tasks
from nnlab.data import MNIST, DataError, DataSource, as_splits
from nnlab.fileio import atomic_write_bytes

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "adadelta")
SCHEDULES = ("none", "onecycle", "cosine", "step")
FIT_ON = ("train", "train+val")
PRECISIONS = ("fp32", "bf16")
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


class ConfigError(ValueError):
    """A training configuration with a value that makes no sense."""


class DivergedError(RuntimeError):
    """Training produced no usable model: see :func:`train` for what counts as divergence."""


# Thresholds of divergence (see train): a window of steps whose mean loss exceeds
# BLOWUP_FACTOR times the mean loss of the run's first window, or CHANCE_LOSS_FACTOR times
# the loss of a uniform guess (ln K for K classes; honest runs on unnormalised pixels started
# at up to 7 times it, runs blown up from their first steps at 30 to 1e14 times); training
# accuracy less than CHANCE_MARGIN above chance (1/K), having started there too, once the
# run has taken CHANCE_STEPS steps, and at its end. A run shorter than that may still be
# warming up: at its end its final model is refused when at chance in accuracy (validation,
# else training) and also more than CHANCE_LOSS_MARGIN (relative) above ln K in loss. Other
# tasks put their own baseline in place of ln K and their score in place of accuracy (see
# nnlab.tasks.Chance: for regression, predicting the training mean and R²).
BLOWUP_FACTOR = 10.0
CHANCE_LOSS_FACTOR = 20.0
CHANCE_MARGIN = 0.05
CHANCE_LOSS_MARGIN = 0.05
CHANCE_STEPS = 200


def _integer(value) -> bool:
    """An int, not a bool (``True`` is an int to Python, never an epoch count to a recipe)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    """A finite int or float, not a bool or a string."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: every field is validated when the config is built.

    Attributes:
        epochs: passes over the training split.
        batch_size: samples per optimiser step.
        optimizer: ``adam``, ``adamw``, ``rmsprop``, ``sgd`` or ``adadelta`` (Zeiler 2012; the
            optimiser of PyTorch's MNIST example, at ``lr=1.0``).
        lr: learning rate (the peak rate for ``onecycle``).
        weight_decay: L2 penalty (decoupled for ``adamw``).
        momentum: for ``sgd`` (Nesterov) and ``rmsprop``.
        schedule: ``none``; ``onecycle`` (linear warm-up over ``warmup`` of the steps, then
            cosine decay to zero; Smith & Topin 2019); ``cosine``; ``step`` (halve the rate at
            each epoch in ``milestones``).
        warmup: fraction of steps spent warming up under ``onecycle``.
        milestones: epochs at which ``step`` halves the rate.
        augment: ``none``, ``shift``, ``affine`` or ``elastic`` (see :mod:`nnlab.augment`).
        max_shift: largest translation in pixels for augmentation.
        label_smoothing: passed to the cross-entropy loss.
        eval_batch: batch size for evaluation (large: no gradients are kept).
        fit_on: ``train`` fits the training split and measures the validation split after
            every epoch; ``train+val`` fits both (the final refit of a recipe chosen on
            validation), so there is no validation measurement.
        threads: CPU threads a run uses when ``nnlab train`` (the runner) trains it. Float
            sums are reduced in an order that depends on it, so it is part of the recipe:
            the same run gives the same numbers alone, in a pool or on a cluster.
        precision: ``fp32`` (default), or ``bf16``: the forward pass and the loss run under
            ``torch.autocast`` with bfloat16 where the device has native bfloat16 arithmetic
            (a CUDA GPU of compute capability 8.0 or newer; a CPU with AVX-512 BF16 or AMX);
            weights, gradients, optimiser state and evaluation stay fp32. Elsewhere training
            refuses it with a :class:`ConfigError` rather than emulate it slowly.
        memory_format: ``auto`` (default: see :func:`fast_memory_format`), ``channels_last``
            or ``contiguous``, the layout of a convolutional model's weights and activations.
            The kernels differ, so so do the last bits of the numbers: like ``threads``, it is
            part of the recipe.
        task: what the run learns (see :mod:`nnlab.tasks`): ``classification`` (default:
            cross-entropy, accuracy), ``regression`` (mean squared error; RMSE and R²), or
            ``module:attr`` naming a :class:`nnlab.tasks.Task` of the course's own.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "none"
    warmup: float = 0.2
    milestones: tuple[int, ...] = ()
    augment: str = "none"
    max_shift: float = 2.0
    label_smoothing: float = 0.0
    eval_batch: int = 5000
    fit_on: str = "train"
    threads: int = 1
    precision: str = "fp32"
    memory_format: str = "auto"
    task: str = "classification"

    def __post_init__(self) -> None:
        problems = []
        for name in ("epochs", "batch_size", "eval_batch", "threads"):
            value = getattr(self, name)
            if not (_integer(value) and value >= 1):
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not (_number(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive finite number, got {self.lr!r}")
        if not (_number(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay must be >= 0 (a finite number), got {self.weight_decay!r}")
        for name in ("momentum", "warmup", "label_smoothing"):
            value = getattr(self, name)
            if not (_number(value) and 0 <= value < 1):
                problems.append(f"{name} must be in [0, 1) (a number), got {value!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not (isinstance(self.milestones, (tuple, list)) and all(_integer(m) for m in self.milestones)):
            problems.append(f"milestones must be a tuple of integer epochs, got {self.milestones!r}")
        if not (_number(self.max_shift) and self.max_shift >= 0):
            problems.append(f"max_shift must be a finite number >= 0, got {self.max_shift!r}")
        if self.augment not in augment.KINDS:
            problems.append(f"unknown augment {self.augment!r}; choose one of {', '.join(augment.KINDS)}")
        if self.fit_on not in FIT_ON:
            problems.append(f"unknown fit_on {self.fit_on!r}; choose one of {', '.join(FIT_ON)}")
        if self.precision not in PRECISIONS:
            problems.append(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            problems.append(f"unknown memory_format {self.memory_format!r}; choose one of "
                            f"{', '.join(MEMORY_FORMATS)}")
        problems += _task_problems(self)
        if problems:
            raise ConfigError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        for key, default in (("fit_on", "train"), ("threads", 1), ("precision", "fp32"),
                             ("memory_format", "auto"), ("task", "classification")):
            if d[key] == default:  # defaults are left out: configs stored before they existed match
                del d[key]
        return d


def _task_problems(config: TrainConfig) -> list[str]:
    if not isinstance(config.task, str) or not (config.task in tasks.BUILT_IN or tasks.is_import_path(config.task)):
        return [f"unknown task {config.task!r}; choose one of {', '.join(tasks.BUILT_IN)}, or 'module:attr' naming "
                "an nnlab.tasks.Task"]
    if config.label_smoothing and config.task != "classification":
        return [f"label_smoothing applies to classification only, not to task {config.task!r}; leave it at 0"]
    return []


@dataclass
class RunResult:
    """What one training run produced (the model itself is trained in place)."""

    history: dict[str, list[float]]
    val_loss: float | None  # None when the validation split was trained on (fit_on="train+val")
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    seconds: float
    device: str
    extra: dict = field(default_factory=dict)
    val_metrics: dict[str, float | None] = field(default_factory=dict)  # the task's metrics, by name
    test_metrics: dict[str, float | None] = field(default_factory=dict)

    def record(self) -> dict:
        """The metrics as a run stores them: ``val_<metric>`` and ``test_<metric>``, None when
        that split was not measured."""
        return {f"{split}_{m}": value for split, metrics in (("val", self.val_metrics), ("test", self.test_metrics))
                for m, value in metrics.items()}


def pick_device(device: str | None = None) -> torch.device:
    """``"auto"``/None picks CUDA, then MPS, then the CPU; anything else is used as given."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r} ({exc}); use cpu, cuda, mps or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use --device cpu (or auto)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but Apple's MPS is not available here; use --device cpu (or auto)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {device!r} cannot train networks here; use cpu, cuda, mps or auto")
    return dev


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` does bfloat16 arithmetic in hardware (not by emulation)."""
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no including_emulation; it asked the hardware anyway
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(getattr(torch.cpu, probe, lambda: False)()
                   for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def check_precision(config: TrainConfig, device: torch.device) -> None:
    """Refuse ``precision="bf16"`` on a device without native bfloat16 arithmetic."""
    if config.precision == "bf16" and not bf16_native(device):
        what = ("this CPU has neither AVX-512 BF16 nor AMX" if device.type == "cpu" else
                "this GPU has no native bfloat16 (it needs compute capability 8.0 or newer)"
                if device.type == "cuda" else f"bfloat16 training is not supported on {device.type}")
        raise ConfigError(f"precision='bf16' needs native bfloat16 arithmetic, but {what}; "
                          "use precision='fp32' (the default)")


def lr_at(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate for a global step: a pure function, so resuming needs no state."""
    t = step / max(total_steps, 1)
    if config.schedule == "onecycle":
        if t < config.warmup:
            return config.lr * (0.04 + 0.96 * t / config.warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * (t - config.warmup) / (1 - config.warmup)))
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * t))
    if config.schedule == "step":
        epoch = step // steps_per_epoch
        return config.lr * 0.5 ** sum(epoch >= m for m in config.milestones)
    return config.lr


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # fused kernels update all parameters in one call: fewer Python-level loops per step.
    fast = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, **fast)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **fast)
    if config.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, weight_decay=config.weight_decay,
                                   momentum=config.momentum, foreach=True)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                           weight_decay=config.weight_decay, **fast)


def show_progress() -> bool:
    """Progress bars only in an interactive terminal: not in CI, tests or book builds."""
    return sys.stderr.isatty() and not os.environ.get("CI") and "ipykernel" not in sys.modules


def progress_class():
    """tqdm's widget bar inside Jupyter when ipywidgets is installed, its text bar everywhere
    else (``tqdm.auto`` would warn in a notebook without widgets)."""
    import importlib.util

    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
        return tqdm
    from tqdm import tqdm
    return tqdm


def _convolutions(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]


def has_conv(model: nn.Module) -> bool:
    return bool(_convolutions(model))


# the evaluation's chunk on a CPU: the largest layer's input and output for the chunk fit here
EVAL_CACHE_BYTES = 8 << 20
EVAL_SMALL_BYTES = 64 << 10
EVAL_SMALL_CHUNK = 1024


def fast_memory_format(model: nn.Module, device: torch.device, choice: str = "auto") -> torch.memory_format:
    """The memory layout a model trains and evaluates in: ``choice`` when it names one, else
    (``auto``) channels-last for convolutional models with 2-D batch norm on the CPU and on
    CUDA, PyTorch's default layout otherwise.

    oneDNN (CPU) and cuDNN run convolutions, pooling and above all batch norm in NHWC
    without reordering: on a 2-core CPU channels-last trained the book's CNN and a small
    ResNet 1.04-1.27x faster, and on an H200 the book's CNN 1.08-1.15x. Without batch norm
    the gain was not reliable: PyTorch's MNIST example network ran 0.88-0.95x as fast in
    channels-last on the CPU, LeNet-5 0.86x on CUDA (``benchmarks/train_speed.py``, whose
    zoo checks the rule against the default layout). Images with one channel have the same
    bytes in both layouts, so only the model's weights and activations change layout.
    """
    if choice != "auto":
        return torch.channels_last if choice == "channels_last" else torch.contiguous_format
    if device.type in ("cpu", "cuda") and has_conv(model) and any(
            isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return torch.channels_last
    return torch.contiguous_format


def eval_chunk(model: nn.Module, images: torch.Tensor, batch: int) -> int:
    """Images per forward pass when evaluating on a CPU.

    A convolutional model whose largest layer (input and output, measured on one image)
    holds ``EVAL_SMALL_BYTES`` or more per image evaluates in chunks that keep that layer
    within ``EVAL_CACHE_BYTES`` (at least 16 images, at most ``batch``): the book's CNN, the
    classic example's network and a small ResNet ran 2.2-3x faster so than in batches of
    1000. Smaller models (MLPs, LeNet-5) take chunks of ``EVAL_SMALL_CHUNK``."""
    small = min(batch, EVAL_SMALL_CHUNK)
    if not has_conv(model):
        return small
    largest = 0

    def measure(module, inputs, output):
        nonlocal largest
        if isinstance(output, torch.Tensor) and inputs and isinstance(inputs[0], torch.Tensor):
            largest = max(largest, (inputs[0].numel() + output.numel()) * output.element_size())

    hooks = [m.register_forward_hook(measure) for m in model.modules() if next(m.children(), None) is None]
    try:
        model(images[:1])
    finally:
        for hook in hooks:
            hook.remove()
    if largest < EVAL_SMALL_BYTES:
        return small
    return min(batch, max(16, EVAL_CACHE_BYTES // largest))


def _in_layout(model: nn.Module, layout: torch.memory_format) -> bool:
    """Whether every 4-D parameter and buffer of ``model`` is laid out in ``layout`` (a weight
    with one input channel, or a 1x1 kernel, is laid out in both)."""
    tensors = [*model.parameters(), *model.buffers()]
    return all(t.is_contiguous(memory_format=layout) for t in tensors if t.dim() == 4)


@torch.inference_mode()
def _evaluate_sums(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int,
                   device: torch.device) -> tuple[float, int]:
    """Summed cross-entropy and correct count of a model in eval mode, chunk by chunk."""
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    step = eval_chunk(model, images[:1].to(device), batch) if device.type == "cpu" and len(images) else batch
    for start in range(0, len(images), step):
        x = images[start:start + step].to(device, non_blocking=True)
        y = labels[start:start + step].to(device, non_blocking=True)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
    return float(total_loss), int(correct)


@torch.inference_mode()
def _outputs(model: nn.Module, images: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """The model's outputs for every image, chunk by chunk, on the device."""
    step = eval_chunk(model, images[:1].to(device), batch) if device.type == "cpu" and len(images) else batch
    return torch.cat([model(images[start:start + step].to(device, non_blocking=True))
                      for start in range(0, len(images), step)])


def _evaluating(model: nn.Module, memory_format: str, measure: Callable[[torch.device], object]):
    """``measure(device)`` with the model in eval mode and in the layout it trains in; the
    model's layout and mode are restored afterwards."""
    was_training = model.training
    device = next(model.parameters()).device
    layout = fast_memory_format(model, device, memory_format)
    switch = not _in_layout(model, layout)
    # Layouts change outside inference mode: a weight copied inside it would be an inference
    # tensor, which the next training step cannot save for its backward pass.
    if switch:
        model.to(memory_format=layout)
    model.eval()
    try:
        return measure(device)
    finally:
        model.train(was_training)
        if switch:
            model.to(memory_format=torch.contiguous_format if layout == torch.channels_last else torch.channels_last)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch: int = 5000, memory_format: str = "auto") -> tuple[float, float]:
    """Mean cross-entropy per sample and accuracy, in eval mode, in large batches (fp32).

    The model runs in the layout it trains in (:func:`fast_memory_format`); one handed over
    in another layout is handed back in that one, and its mode is restored."""
    total_loss, correct = _evaluating(model, memory_format,
                                      lambda device: _evaluate_sums(model, images, labels, batch, device))
    n = len(images)
    return total_loss / n, correct / n


def evaluate_task(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, task: tasks.Task,
                  batch: int = 5000, memory_format: str = "auto") -> dict[str, float]:
    """Every metric of ``task`` (``loss`` and the task's own) on one split, in eval mode, as
    :func:`evaluate` runs the model; for classification, exactly :func:`evaluate`'s numbers."""
    if isinstance(task, tasks.Classification):
        loss, acc = evaluate(model, inputs, targets, batch, memory_format)
        return {"loss": loss, "acc": acc}
    outputs = _evaluating(model, memory_format, lambda device: _outputs(model, inputs, batch, device))
    return task.measure(outputs.float(), targets.to(outputs.device))


def _save_checkpoint(path: Path, state: dict) -> None:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


class _Watch:
    """Decides whether a run is diverging (the thresholds are documented in :func:`train`),
    against the task's :class:`~nnlab.tasks.Chance` (None: only non-finite losses and blow-ups
    count)."""

    def __init__(self, checkpoint: Path | None, keep_failed: bool, chance: tasks.Chance | None,
                 saved: dict | None = None):
        self.checkpoint, self.keep_failed, self.chance = checkpoint, keep_failed, chance
        saved = saved or {}
        self.start_loss, self.start_acc = saved.get("start_loss"), saved.get("start_acc")
        self.classes, self.failed = saved.get("classes"), saved.get("failed")

    def state(self) -> dict:
        return {"start_loss": self.start_loss, "start_acc": self.start_acc, "classes": self.classes,
                "failed": self.failed}

    def fail(self, reason: str, always: bool = False, bar=None) -> None:
        if self.keep_failed and not always:
            self.failed = self.failed or reason
            return
        if bar is not None:
            bar.close()
        if self.checkpoint:  # a checkpoint of this run would only resume into the same divergence
            self.checkpoint.unlink(missing_ok=True)
        raise DivergedError(f"training diverged: {reason}; lower the learning rate or check the inputs "
                            "(or keep such a run for teaching: keep_failed). Nothing was saved.")

    def window(self, mean_loss: float, accuracy: float | None, classes: int, where: str, bar) -> None:
        """A window of training steps: its mean loss and (classification) accuracy."""
        chance = self.chance
        if self.start_loss is None:
            score = chance.score(mean_loss, accuracy) if chance else None
            self.start_loss, self.start_acc, self.classes = mean_loss, score, classes
        if chance and mean_loss > CHANCE_LOSS_FACTOR * chance.ceiling_loss:
            self.fail(f"the training loss is {mean_loss:.3g} at {where}, more than {CHANCE_LOSS_FACTOR:g} times "
                      f"that of {chance.guess}", bar=bar)
        elif mean_loss > BLOWUP_FACTOR * self.start_loss:
            self.fail(f"the training loss rose to {mean_loss:.3g} at {where}, more than {BLOWUP_FACTOR:g} times "
                      f"its starting value {self.start_loss:.3g}", bar=bar)

    def at_chance(self, score: float, loss: float) -> bool:
        """Whether ``score`` is at chance, as the run's first window was (and, for a score
        computed from the loss, the loss has fallen less than ``CHANCE_MARGIN`` from the
        first window's: a regression still descending towards its targets' mean learns)."""
        chance = self.chance.level + CHANCE_MARGIN
        if self.chance.from_loss and loss <= (1 - CHANCE_MARGIN) * self.start_loss:
            return False
        return self.start_acc < chance and score < chance

    def judge(self, history: dict, epoch: int, steps_per_epoch: int, epochs: int, bar) -> None:
        """After an epoch: whether the run has learned anything, in the epoch in which it
        passes ``CHANCE_STEPS`` steps and after its last (see :func:`train`)."""
        steps = epoch * steps_per_epoch
        if self.chance is None or not (steps - steps_per_epoch < CHANCE_STEPS <= steps or epoch == epochs):
            return
        chance = self.chance
        if steps_per_epoch * epochs >= CHANCE_STEPS:
            score = chance.score(history["train_loss"][-1], (history.get("train_acc") or [None])[-1])
            if self.at_chance(score, history["train_loss"][-1]):
                self.fail(f"training {chance.score_name} after epoch {epoch} is {score:.3f}, {chance.at_chance} "
                          "where it started", bar=bar)
            return
        self._judge_short(history, epoch, bar)

    def _judge_short(self, history: dict, epoch: int, bar) -> None:
        """A short run may still be warming up: judge its final model, on score and loss."""
        chance = self.chance
        split, key = ("validation", "val") if history["val_loss"] else ("training", "train")
        loss = history[f"{key}_loss"][-1]
        accuracy = history[f"{key}_acc"][-1] if f"{key}_acc" in history else None
        score = chance.score(loss, accuracy)
        if not (self.at_chance(score, loss) and loss > (1 + CHANCE_LOSS_MARGIN) * chance.loss):
            return
        if chance.from_loss:
            self.fail(f"{split} loss after epoch {epoch} is {loss:.3g}, {chance.at_chance} "
                      f"({chance.loss:.3g})", bar=bar)
        else:
            self.fail(f"{split} accuracy after epoch {epoch} is {accuracy:.3f}, {chance.at_chance}, and its loss "
                      f"{loss:.3g} is above a uniform guess's ({chance.loss:.3g})", bar=bar)


def train(model: nn.Module, config: TrainConfig, seed: int = 0, *,
          data: DataSource | dict | None = None,
          device: str | torch.device | None = None, desc: str = "",
          checkpoint: str | Path | None = None, resume: bool = False,
          progress: bool | None = None,
          stop_after_epoch: Callable[[int], bool] | None = None,
          keep_failed: bool = False) -> RunResult:
    """Train ``model`` in place with the loss of ``config.task`` (cross-entropy by default)
    and return its history and metrics.

    Args:
        model: any module mapping a batch of inputs to class logits (for regression: to
            the targets' values, one output per target value of a sample).
        config: the :class:`TrainConfig`.
        seed: seeds the permutation, augmentation, dropout (and initialisation, if the caller
            built the model after ``torch.manual_seed``).
        data: a :class:`~nnlab.data.DataSource`, or ``{"train": (x, y), "val": (x, y),
            "test": (x, y)}`` of tensors or numpy arrays; :data:`nnlab.data.MNIST` by default.
            ``test`` is optional; it is evaluated once, after the last epoch. With
            ``config.fit_on == "train+val"`` the validation images join the training ones.
        device: ``"cpu"``, ``"cuda"``, ``"mps"`` or ``"auto"``.
        desc: label for the progress bar.
        checkpoint: file to write atomically after every epoch (model, optimiser, RNG states).
        resume: continue from ``checkpoint`` if it exists and was written by the same config,
            seed and model (otherwise train from the start); the finished run is bit-identical
            to an uninterrupted one on the CPU.
        progress: force the tqdm bar on or off (default: only in an interactive terminal).
        stop_after_epoch: called with the epoch number after each epoch; returning True
            stops training (used by tests to simulate an interruption).
        keep_failed: finish and return a run that learned nothing (a blow-up or chance
            level, below) instead of raising, with the reason in ``extra["failed"]``: for
            teaching, e.g. dropout with p = 1. A non-finite loss always raises.

    Returns:
        :class:`RunResult` with per-epoch history (train/val loss and accuracy, learning rate,
        seconds) and the final validation and test metrics; a run that went on from its
        checkpoint has ``extra["resumed_from_epoch"]``, the epochs that checkpoint held.

    Raises:
        DivergedError: the run cannot be a result, naming the epoch and step; nothing is
            saved (the run's checkpoint is removed). A run diverges when (checked every 50
            steps, from the first) its training loss is not finite; or a window's mean loss
            exceeds ``CHANCE_LOSS_FACTOR`` (20) times the loss of a uniform guess (ln K for K
            classes), or ``BLOWUP_FACTOR`` (10) times the mean loss of the run's first window;
            or its training accuracy is less than ``CHANCE_MARGIN`` (5 points) above chance
            (1/K), when its first window was there too, after the epoch in which the run
            passes ``CHANCE_STEPS`` (200) steps (the first epoch of any MNIST run) and after
            the last epoch. A run of fewer steps may still be warming up: after its last
            epoch it fails when its final model's accuracy (on the validation split, else
            the training one) is at chance and its loss is more than ``CHANCE_LOSS_MARGIN``
            (5%) above ln K too. For regression the same checks compare the loss with that of
            predicting the training targets' mean (the ceiling: 20 times the larger of that and
            the loss of predicting zero, where a network starts), and the score that must rise
            above chance is R² = 1 - loss / that loss: a run fails whose R² stays below 0.05,
            or, if short, whose final loss is more than 5% above the mean's. A task of a
            course's own without a baseline is checked for non-finite losses and blow-ups only.
            A regression whose loss has fallen by more than 5% from its first window's is
            learning (its targets may lie far from zero) and is not judged at chance.
    """
    dev = pick_device(device) if not isinstance(device, torch.device) else device
    check_precision(config, dev)
    task = _task(config)
    data, (x_val, y_val) = _checked_splits(MNIST if data is None else data, config, task)
    x_train, y_train = (t.to(dev) for t in data["train"])
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)  # permutation + augmentation, on the CPU
    # the layout is set before the optimiser exists, so its state takes the same strides
    layout = fast_memory_format(model, dev, config.memory_format)
    model.to(dev, memory_format=layout).train()
    outputs = _check_fit(model, x_train, [y for _, y in data.values()], task)
    opt = make_optimizer(model, config, dev)
    ckpt = _Checkpoint(checkpoint, config, seed, model, history_keys(task))
    saved = ckpt.restore(model, opt, gen, dev) if resume else None
    history = saved["history"] if saved else {k: [] for k in history_keys(task)}
    start_epoch = saved["epoch"] if saved else 0
    watch = _Watch(ckpt.path, keep_failed, task.chance(y_train, outputs), saved.get("watch") if saved else None)
    tally = _Tally(len(x_train), config.batch_size, config.epochs, dev, task.targets == "classes")
    bar = _progress_bar(tally, start_epoch, desc, progress)
    clock = _Clock(saved["seconds"] if saved else 0.0)
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        xs, perm = _shuffled(x_train, config, gen)
        lr = _train_epoch(model, opt, config, xs, y_train, perm, epoch, tally, watch, bar)
        _bookkeep_epoch(history, tally, model, x_val, y_val, config, task, bar)
        watch.judge(history, epoch + 1, tally.steps_per_epoch, config.epochs, bar)
        history["lr"].append(lr)
        history["seconds"].append(time.perf_counter() - t0)
        ckpt.save(model, opt, gen, dev, history, epoch + 1, watch, clock.seconds())
        if stop_after_epoch and stop_after_epoch(epoch + 1):
            bar.close()
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1}")
    bar.close()
    return _result(model, history, data.get("test"), config, task, dev, layout, clock.seconds(),
                   {**({"failed": watch.failed} if watch.failed else {}),
                    **({"resumed_from_epoch": start_epoch} if start_epoch else {})})


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, config: TrainConfig, xs: torch.Tensor,
                 y_train: torch.Tensor, perm: torch.Tensor, epoch: int, tally: _Tally, watch: _Watch,
                 bar) -> float:
    task = _task(config)
    """One pass over the training images in the order ``perm``, a step per batch; returns the
    learning rate of the last step. Every ``CHECK_EVERY`` steps the watch looks at the losses."""
    model.train()
    tally.start_epoch(y_train[perm] if tally.count_correct else None)
    autocast = torch.autocast(xs.device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    for i in range(tally.steps_per_epoch):
        lr = lr_at(config, epoch * tally.steps_per_epoch + i, tally.total_steps, tally.steps_per_epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
        xb, yb = xs[idx], y_train[idx]
        with autocast:
            logits = model(xb)
            loss = task.batch_loss(logits, yb, config)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tally.add(i, loss, logits)
        if tally.window_ends(i):
            tally.check_window(i, watch, math.prod(logits.shape[1:]), f"epoch {epoch + 1}", lr, bar)
    return lr


HISTORY = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
CHECK_EVERY = 50  # steps between two looks at the training losses (one host sync each)


def history_keys(task: tasks.Task) -> tuple[str, ...]:
    """The per-epoch history of a run of ``task``: :data:`HISTORY` for classification; the
    training loss and every validation metric otherwise."""
    if isinstance(task, tasks.Classification):
        return HISTORY
    return ("train_loss", *(f"val_{m}" for m in task.metric_names), "lr", "seconds")


def _task(config: TrainConfig) -> tasks.Task:
    try:
        return tasks.get(config.task)
    except tasks.TaskError as exc:
        raise ConfigError(str(exc)) from None


def _check_fit(model: nn.Module, x_train: torch.Tensor, targets: list[torch.Tensor], task: tasks.Task) -> int:
    """Refuse, before the first step, a model whose outputs do not fit the task and the
    targets (one forward pass of two samples in eval mode: no random numbers are drawn);
    returns the number of outputs per sample."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(x_train[:2])
    finally:
        model.train(was_training)
    for y in targets:
        task.check_outputs(outputs, y)
    return outputs[0].numel()


def _checked_splits(data: DataSource | dict, config: TrainConfig, task: tasks.Task) -> tuple[dict, tuple]:
    """The splits to train on (validation images joined to the training ones when
    ``config.fit_on`` says so) and the validation pair (``(None, None)`` then); refuses data
    the recipe cannot use."""
    labels = task.targets == "classes"
    classes = data.num_classes if labels and isinstance(data, DataSource) else None
    data = as_splits(data, targets=task.targets)
    _check_sizes_and_labels(data, classes, labels)
    for split, (_, y) in data.items():
        task.check_targets(y, split)
    if "val" not in data:
        raise ConfigError("the data has no 'val' split: give one (a third pair), or use "
                          "nnlab.data.ArrayData(name, train=(x, y)), which holds out a seeded validation split")
    if config.augment != "none" and data["train"][0].dim() != 4:
        raise ConfigError(f"augment={config.augment!r} distorts images (N, C, H, W), but the inputs have "
                          f"shape {tuple(data['train'][0].shape)}; use augment='none' for vectors")
    if config.fit_on == "train+val":
        data = {**data, "train": tuple(torch.cat(pair) for pair in zip(data["train"], data["val"]))}
        return data, (None, None)  # trained on: measuring it would say nothing about new images
    return data, data["val"]


def _check_sizes_and_labels(data: dict, classes: int | None, labels: bool = True) -> None:
    """Refuse an empty split, inputs and targets of different counts, and (``labels``: a task
    that learns classes) labels that are not class indices ``0..K-1`` (K from the data source;
    only ``>= 0`` for bare arrays)."""
    for split, (x, y) in data.items():
        if len(x) == 0:
            what = "give it samples, or leave it out" if split == "test" else "give it samples"
            raise DataError(f"the {split} split is empty (0 samples); {what}")
        if len(y) != len(x):
            raise DataError(f"the {split} split has {len(x)} inputs but {len(y)} targets; give one target per input")
        if not labels or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            continue  # the task's own check names what is wrong with targets of another kind
        low, top = int(y.min()), int(y.max())
        if low < 0 or (classes is not None and top >= classes):
            bound = f"0..{classes - 1} ({classes} classes)" if classes is not None else "0..K-1"
            raise DataError(f"the {split} labels lie in {low}..{top}, outside {bound}; map them to class "
                            "indices" + (" or raise the source's num_classes" if classes is not None else ""))


def _shuffled(x_train: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """This epoch's training images (distorted afresh if the recipe augments) and their order."""
    xs = augment.distort(x_train, config.augment, gen, background=float(x_train.min()),
                         max_shift=config.max_shift) if config.augment != "none" else x_train
    return xs, torch.randperm(len(x_train), generator=gen).to(x_train.device)


class _Tally:
    """The bookkeeping of an epoch, in device tensors: each step's mean loss and predicted
    classes (two device writes per step); sums, checks and accuracy are batched over a window
    of steps, so a GPU run does not wait for the host on every step."""

    def __init__(self, n: int, batch_size: int, epochs: int, dev: torch.device, count_correct: bool = True):
        self.n, self.batch_size, self.count_correct = n, batch_size, count_correct
        self.steps_per_epoch = math.ceil(n / batch_size)
        self.total_steps = self.steps_per_epoch * epochs
        self.step_losses = torch.zeros(self.steps_per_epoch, device=dev)
        self.batch_sizes = torch.full((self.steps_per_epoch,), float(batch_size), dtype=torch.float64, device=dev)
        self.batch_sizes[-1] = n - (self.steps_per_epoch - 1) * batch_size
        self.predicted = torch.zeros(n if count_correct else 0, device=dev, dtype=torch.int64)

    def start_epoch(self, y_epoch: torch.Tensor) -> None:
        self.y_epoch, self.last_checked = y_epoch, 0  # the labels in this epoch's order

    def add(self, i: int, loss: torch.Tensor, logits: torch.Tensor) -> None:
        self.step_losses[i] = loss.detach()
        if self.count_correct:
            torch.argmax(logits.detach(), 1, out=self.predicted[i * self.batch_size:(i + 1) * self.batch_size])

    def window_ends(self, i: int) -> bool:
        return i + 1 - self.last_checked >= CHECK_EVERY or i + 1 == self.steps_per_epoch

    def check_window(self, i: int, watch: _Watch, classes: int, epoch: str, lr: float, bar) -> None:
        """Hand the steps since the last check to the watch (which raises on a divergence)."""
        window = self.step_losses[self.last_checked:i + 1]
        if not bool(torch.isfinite(window).all()):
            bad = self.last_checked + int((~torch.isfinite(window)).nonzero()[0])
            bar.close()
            watch.fail(f"non-finite training loss at {epoch}, step {bad + 1} (lr={lr:.3g})", always=True)
        a, b = self.last_checked * self.batch_size, min((i + 1) * self.batch_size, self.n)
        correct = int((self.predicted[a:b] == self.y_epoch[a:b]).sum()) / (b - a) if self.count_correct else None
        watch.window(float((window.double() * self.batch_sizes[self.last_checked:i + 1]).sum()) / (b - a), correct,
                     classes, f"{epoch}, step {i + 1} (lr={lr:.3g})", bar)
        bar.update(i + 1 - self.last_checked)
        self.last_checked = i + 1

    def epoch_loss(self) -> float:
        return float((self.step_losses.double() * self.batch_sizes).sum()) / self.n

    def epoch_accuracy(self) -> float:
        return int((self.predicted == self.y_epoch).sum()) / self.n


def _bookkeep_epoch(history: dict, tally: _Tally, model: nn.Module, x_val, y_val, config: TrainConfig,
                    task: tasks.Task, bar) -> None:
    """Append the epoch's training loss and accuracy and, unless trained on, its validation ones
    (for a task other than classification: the training loss and the validation metrics)."""
    if not isinstance(task, tasks.Classification):
        history["train_loss"].append(tally.epoch_loss())
        if x_val is not None:
            for m, value in evaluate_task(model, x_val, y_val, task, config.eval_batch, config.memory_format).items():
                history[f"val_{m}"].append(value)
        key = f"val_{task.main}" if x_val is not None else "train_loss"
        bar.set_postfix(epoch=len(history["train_loss"]), **{key: f"{history[key][-1]:.4g}"})
        return
    history["train_loss"].append(tally.epoch_loss())
    history["train_acc"].append(tally.epoch_accuracy())
    if x_val is not None:
        val_loss, val_acc = evaluate(model, x_val, y_val, config.eval_batch, config.memory_format)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
        bar.set_postfix(epoch=len(history["train_loss"]), val_acc=f"{val_acc:.4f}")
    else:
        bar.set_postfix(epoch=len(history["train_loss"]), train_acc=f"{history['train_acc'][-1]:.4f}")


class _Checkpoint:
    """A run's checkpoint file (or none): written atomically after every epoch, read back to
    resume. A checkpoint written with another config, seed or model is not this run's."""

    def __init__(self, path: str | Path | None, config: TrainConfig, seed: int, model: nn.Module,
                 keys: tuple[str, ...] = HISTORY):
        self.path = Path(path) if path else None
        self.epochs, self.keys = config.epochs, keys
        self.fingerprint = json.dumps({"config": config.to_dict(), "seed": seed, "model": repr(model)},
                                      sort_keys=True)

    def _unusable(self, why: str) -> ConfigError:
        return ConfigError(f"checkpoint {self.path} {why}; delete it to train this run from the start, or "
                           "train without --resume")

    def restore(self, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
                dev: torch.device) -> dict | None:
        """Load this run's checkpoint into the model, optimiser and random generators; returns
        ``{"history", "epoch", "seconds", "watch"}``, or None if there is none of this run."""
        if not (self.path and self.path.exists()):
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated, garbage, or not ours: never unpickle it (torch's own
            # message would suggest weights_only=False, which runs arbitrary code from the file)
            raise self._unusable(f"cannot be read (truncated, or not an nnlab checkpoint: "
                                 f"{type(exc).__name__})") from None
        if not isinstance(state, dict) or not {"model", "optimizer", "epoch"} <= set(state):
            raise self._unusable("is not an nnlab checkpoint")
        if state.get("fingerprint") != self.fingerprint:
            return None
        epoch, history = state["epoch"], self._history(state)
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            gen.set_state(state["gen_rng"])
            if dev.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"])
        except Exception as exc:  # shapes, missing keys, a random state of another size
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            detail = next((line for line in lines if "mismatch" in line or "Missing" in line), lines[0] if lines else "")
            raise self._unusable(f"does not fit this run's model and optimiser ({type(exc).__name__}: "
                                 f"{detail})") from None
        return {"history": history, "epoch": epoch, "seconds": float(state.get("seconds", sum(history["seconds"]))),
                "watch": state.get("watch") if epoch else None}

    def _history(self, state: dict) -> dict:
        """The checkpoint's epoch count and history, checked: an epoch within the recipe's, and
        one entry per epoch of every series (a longer or shorter run must not pass as this one)."""
        epoch, history = state["epoch"], state.get("history")
        if not (isinstance(epoch, int) and not isinstance(epoch, bool) and 0 <= epoch <= self.epochs):
            raise self._unusable(f"says it holds epoch {epoch!r}, but the recipe trains {self.epochs} epoch(s)")
        if not (isinstance(history, dict) and set(self.keys) <= set(history)
                and all(isinstance(history[k], (list, tuple)) for k in self.keys)):
            raise self._unusable(f"has no readable history (a {type(history).__name__}, not a dict of one "
                                 "list per metric)")
        if len(history["train_loss"]) != epoch or len(history["lr"]) != epoch:
            raise self._unusable(f"holds {len(history['train_loss'])} epoch(s) of history for epoch {epoch}")
        return {k: list(v) for k, v in history.items()}

    def save(self, model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, dev: torch.device,
             history: dict, epoch: int, watch: _Watch, seconds: float) -> None:
        if not self.path:
            return
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(),
                 "history": history, "epoch": epoch, "fingerprint": self.fingerprint, "watch": watch.state(),
                 "seconds": seconds}
        if dev.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        _save_checkpoint(self.path, state)


class _Clock:
    """Training time of the run: that of the epochs a resumed run does not repeat, plus this
    process's."""

    def __init__(self, before: float):
        self.before, self.start = before, time.perf_counter()

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.start


def _progress_bar(tally: _Tally, start_epoch: int, desc: str, progress: bool | None):
    return progress_class()(total=tally.total_steps, initial=start_epoch * tally.steps_per_epoch,
                            desc=desc or "train", unit="step",
                            disable=not (show_progress() if progress is None else progress),
                            leave=False, dynamic_ncols=True)


def _result(model: nn.Module, history: dict, test, config: TrainConfig, task: tasks.Task, dev: torch.device,
            layout: torch.memory_format, seconds: float, extra: dict) -> RunResult:
    """The finished run: its test metrics (evaluated once, now), and the model handed back in
    the usual layout."""
    names = task.metric_names
    tested = dict.fromkeys(names)
    if test is not None:
        tested = evaluate_task(model, *test, task, batch=config.eval_batch, memory_format=config.memory_format)
    model.to(memory_format=torch.contiguous_format).eval()
    validated = {m: history[f"val_{m}"][-1] if history["val_loss"] else None for m in names}
    return RunResult(history=history, val_loss=validated["loss"], val_acc=validated.get("acc"),
                     test_loss=tested["loss"], test_acc=tested.get("acc"), seconds=seconds, device=str(dev),
                     extra={"memory_format": "channels_last" if layout == torch.channels_last else "contiguous",
                            **extra}, val_metrics=validated, test_metrics=tested)
