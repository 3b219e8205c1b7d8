"""Model specs: a compact, text-based description of an ``nn.Sequential``.

A spec is a list of layer tokens; input sizes are inferred by tracking the tensor shape,
so a spec names only what a reader would choose::

    ["flatten", "linear 64", "relu", "dropout 0.1", "linear 10"]
    ["conv 32 3 p=1", "bn", "relu", "maxpool 2", "flatten", "linear 10"]

Tokens: ``flatten``; ``linear OUT``; ``relu``; ``sigmoid``; ``tanh``; ``softmax``;
``dropout P``; ``conv OUT K [s=S] [p=P] [d=D] [bias=0]``; ``bn`` (BatchNorm2d on images,
BatchNorm1d on vectors); ``maxpool K [s=S] [p=P]``; ``avgpool K [s=S] [p=P]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnlab import conv
from nnlab.data import DataSource


class SpecError(ValueError):
    """A model spec that cannot be built."""


class ModelDataMismatch(ValueError):
    """A model that does not fit its data: wrong input shape or wrong number of outputs."""


def input_shape_of(input_shape: Sequence[int] | DataSource | None, caller: str) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints; a data source stands for its own
    ``input_shape``. Nothing given is a ``TypeError`` that says what to pass: no shape is
    assumed, as no data is."""
    if input_shape is None:
        raise TypeError(f"{caller} needs input_shape, the shape of one input without the batch axis: pass "
                        "input_shape=data.input_shape (the experiment's data source), e.g. (1, 28, 28) for "
                        "MNIST or (1, 8, 8) for scikit-learn's digits")
    shape = getattr(input_shape, "input_shape", input_shape)  # a DataSource
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        dims = ()
    if not dims or any(d < 1 for d in dims) or any(isinstance(d, (bool, float)) for d in shape):
        raise ValueError(f"{caller}: input_shape must be positive integers such as (1, 28, 28), got {shape!r}")
    return dims


def _number(text: str, kind: type, token: str):
    try:
        return kind(text)
    except ValueError:
        raise SpecError(f"in layer {token!r}: {text!r} is not a valid {kind.__name__}") from None


def _parse(token: str) -> tuple[str, list[str], dict[str, str]]:
    if not isinstance(token, str) or not token.strip():
        raise SpecError(f"a layer must be a non-empty string, got {token!r}")
    name, *rest = token.split()
    args = [r for r in rest if "=" not in r]
    opts = dict(r.split("=", 1) for r in rest if "=" in r)
    return name.lower(), args, opts


_ARITY = {"flatten": 0, "relu": 0, "sigmoid": 0, "tanh": 0, "softmax": 0, "bn": 0,
          "linear": 1, "dropout": 1, "conv": 2, "maxpool": 1, "avgpool": 1}
_OPTIONS = {"conv": {"s", "p", "d", "bias"}, "maxpool": {"s", "p"}, "avgpool": {"s", "p"}}


def build(spec: Sequence[str], input_shape: Sequence[int] | DataSource | None = None) -> nn.Sequential:
    """Build an ``nn.Sequential`` from a spec, inferring every input size.

    Args:
        spec: layer tokens (see the module docstring).
        input_shape: shape of one input without the batch axis (``data.input_shape``:
            ``(1, 28, 28)`` for MNIST), or the data source itself. Required.

    Returns:
        The model, freshly initialised with PyTorch's defaults.

    Raises:
        SpecError: unknown layer, wrong number of arguments, bad value, or a layer that does
            not fit the shape it receives (e.g. ``conv`` after ``flatten``).
    """
    if isinstance(spec, str):
        raise SpecError("spec must be a list of layer tokens, not one string")
    shape = input_shape_of(input_shape, "nnlab.models.build")
    layers: list[nn.Module] = []
    for token in spec:
        name, args, opts = _parse(token)
        if name not in _ARITY:
            raise SpecError(f"unknown layer {name!r} in {token!r}; known: {', '.join(_ARITY)}")
        if len(args) != _ARITY[name]:
            raise SpecError(f"layer {token!r} takes {_ARITY[name]} argument(s), got {len(args)}")
        unknown = set(opts) - _OPTIONS.get(name, set())
        if unknown:
            raise SpecError(f"layer {token!r} has unknown option(s) {sorted(unknown)}")
        try:
            layer, shape = _make(name, args, opts, shape, token)
        except conv.ShapeError as exc:
            raise SpecError(f"layer {token!r} does not fit input shape {shape}: {exc}") from None
        layers.append(layer)
    return nn.Sequential(*layers)


def _make(name, args, opts, shape, token):
    if name == "flatten":
        return nn.Flatten(), (int(torch.tensor(shape).prod()),)
    if name in ("relu", "sigmoid", "tanh"):
        return {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[name](), shape
    if name == "softmax":
        return nn.Softmax(dim=1), shape
    if name == "dropout":
        p = _number(args[0], float, token)
        if not 0.0 <= p <= 1.0:
            raise SpecError(f"dropout probability must be in [0, 1], got {p} in {token!r}")
        return nn.Dropout(p), shape
    if name == "linear":
        out = _number(args[0], int, token)
        if len(shape) != 1:
            raise SpecError(f"{token!r} needs a vector input but gets shape {shape}: add 'flatten' first")
        if out < 1:
            raise SpecError(f"{token!r}: a linear layer needs at least one output")
        return nn.Linear(shape[0], out), (out,)
    if name == "bn":
        if len(shape) == 3:
            return nn.BatchNorm2d(shape[0]), shape
        return nn.BatchNorm1d(shape[0]), shape
    if len(shape) != 3:
        raise SpecError(f"{token!r} needs an image input (C, H, W) but gets shape {shape}")
    if name == "conv":
        out, k = _number(args[0], int, token), _number(args[1], int, token)
        s, p, d = (_number(opts.get(o, "1" if o != "p" else "0"), int, token) for o in "spd")
        flag = opts.get("bias", "1").lower()
        if flag not in ("0", "1", "false", "true"):
            raise SpecError(f"in layer {token!r}: bias must be 0, 1, false or true, got {opts['bias']!r}")
        bias = flag in ("1", "true")
        new = conv.conv_output_shape(shape, out, k, s, p, d)
        return nn.Conv2d(shape[0], out, k, stride=s, padding=p, dilation=d, bias=bias), new
    k = _number(args[0], int, token)
    s = _number(opts.get("s", str(k)), int, token)
    p = _number(opts.get("p", "0"), int, token)
    new = conv.pool_output_shape(shape, k, s, p)
    cls = nn.MaxPool2d if name == "maxpool" else nn.AvgPool2d
    return cls(k, stride=s, padding=p), new


def mlp(widths: Sequence[int], dropout: float | Sequence[float] = 0.0,
        softmax_last: bool = False, classes: int | DataSource | None = None) -> list[str]:
    """Spec of a flat MLP: ``widths`` are the hidden layer sizes, ``classes`` the outputs (the
    number, or the data source whose ``num_classes`` it is; required). The input size is
    inferred when the spec is built.

    ``dropout`` is one probability for every hidden layer or one per hidden layer; a layer
    with 0 gets no Dropout module. ``softmax_last`` appends a Softmax (a known pitfall in
    front of ``CrossEntropyLoss``; kept to measure it).
    """
    if classes is None:
        raise TypeError("nnlab.models.mlp needs classes, the number of outputs: pass classes=data.num_classes "
                        "(the experiment's data source), e.g. classes=10 for MNIST")
    classes = getattr(classes, "num_classes", classes)  # a DataSource
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise SpecError(f"classes must be a positive integer, got {classes!r}")
    widths = list(widths)
    probs = [float(dropout)] * len(widths) if isinstance(dropout, (int, float)) else list(dropout)
    if len(probs) != len(widths):
        raise SpecError(f"{len(probs)} dropout values for {len(widths)} hidden layers")
    for p in probs:  # checked here: a layer with p <= 0 gets no Dropout token for build() to check
        if not 0.0 <= p <= 1.0:
            raise SpecError(f"dropout probability must be in [0, 1], got {p}")
    spec = ["flatten"]
    for w, p in zip(widths, probs):
        spec += [f"linear {w}", "relu"] + ([f"dropout {p:g}"] if p > 0 else [])
    spec.append(f"linear {classes}")
    if softmax_last:
        spec.append("softmax")
    return spec


def check_fits(model: nn.Module, input_shape: Sequence[int], num_classes: int) -> None:
    """Refuse, before any training, a model that does not fit its data.

    Runs two all-zero inputs of ``input_shape`` through the model (in eval mode, without
    gradients) and checks that it returns ``num_classes`` logits for each.

    Raises:
        ModelDataMismatch: naming the data's input shape and classes and the model's output.
    """
    shape = tuple(int(d) for d in input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters(), torch.zeros(())).device
            out = model(torch.zeros(2, *shape, device=device))
    except Exception as exc:  # any layer may be the one that does not fit
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelDataMismatch(
            f"the model does not take the data's inputs of shape {shape} ({detail}); build it for "
            f"that shape, e.g. nnlab.models.build(spec, input_shape=data.input_shape)") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelDataMismatch(
            f"the model returns {got} per input of shape {shape}, but the data has {num_classes} "
            f"classes: end the model in a layer with {num_classes} outputs (e.g. 'linear {num_classes}', "
            f"or mlp(widths, classes={num_classes}))")


def count_parameters(model: nn.Module) -> int:
    """All parameters of a model, trainable or not (the problem set's way of counting)."""
    return sum(p.numel() for p in model.parameters())


def describe(model: nn.Module, input_shape: Sequence[int] | DataSource | None = None) -> list[dict]:
    """One row per leaf layer call, in the order the layers run (forward hooks on one pass of
    a zero input of ``input_shape``, required, or a data source's shape): repr, type,
    settings, output shape and parameter count. A layer called twice has two rows; its
    parameters count in the first."""
    shape = input_shape_of(input_shape, "nnlab.models.describe")
    rows: list[dict] = []
    seen: set[int] = set()

    def record(layer: nn.Module, args, out) -> None:
        first = id(layer) not in seen
        seen.add(id(layer))
        rows.append({"layer": repr(layer), "type": type(layer).__name__, "settings": layer.extra_repr(),
                     "output": tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__,
                     "parameters": count_parameters(layer) if first else 0})

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    was_training = model.training
    like = next(model.parameters(), None)
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=like.device if like is not None else None))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows
