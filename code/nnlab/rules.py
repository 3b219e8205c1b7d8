"""A problem's architecture rules as data, and a checker that lists every violation.

It measures what a model *does*, not how its ``__init__`` is written. **Counting**: the
model runs once (eval mode, no gradients, a zero batch of two inputs of ``input_shape``)
with hooks that record the order in which ``nn.Linear`` layers are *called*; every call but
the last is a hidden layer and adds its ``out_features`` to the hidden units. A layer called
twice counts twice, one never called not at all; activations and dropout add nothing.

**Layer types**: every layer that runs (a leaf module, or one holding parameters of its own)
must be in ``Rules.allowed``, and so must what ``forward`` does as ``torch.fx`` traces it (in
training and in eval mode). Policy for operations in ``forward``: a layer's functional form
counts as that layer (``torch.tanh``/``x.tanh()`` are ``Tanh``, ``F.linear``/``@`` are
``Linear``, ``x.view``/``reshape``/``flatten`` are ``Flatten``: see ``_FUNCTIONS``);
arithmetic (``+ - * /``) and shape plumbing (indexing, ``size``, ``squeeze``, ``cat``, ``.to``
...) are always allowed; any other function (``torch.exp``, ``x.clamp`` ...) is refused, as it
names no layer; so is a parameter read in ``forward`` rather than through its layer. Classes
given to ``allowed`` as classes (a course's own layers) are trusted: not traced inside.

**Loopholes**: when the rules limit layer types or hidden units, a forward fx cannot trace
(data-dependent control flow, ``if x.sum() > 0``) is a violation, since the pass on zeros may
take another branch than real inputs; when they limit hidden units, so is a linear map outside
``nn.Linear`` (``F.linear``, ``@``). A user class named like a ``torch.nn`` class is known by
its dotted name, so it never passes for the real one.

Every check needs ``input_shape``, one input's shape without the batch axis
(``exp.data.input_shape``, or the data source itself): no shape is assumed.
"""

from __future__ import annotations

import difflib
import operator
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from nnlab.data import DataSource
from nnlab.models import count_parameters, input_shape_of


class RuleViolation(ValueError):
    """A model breaks its problem's rules; the message lists every violation."""


def _type_name(cls: type) -> str:
    """A layer class's name; a user class that borrows a torch.nn name gets its dotted name."""
    real = getattr(nn, cls.__name__, None)
    return cls.__name__ if real is None or real is cls else f"{cls.__module__}.{cls.__qualname__}"


_NN_NAMES = frozenset(n for n, c in vars(nn).items() if isinstance(c, type) and issubclass(c, nn.Module))


def _items(value: object, what: str) -> list:
    if isinstance(value, (str, bytes, type)) or not hasattr(value, "__iter__"):
        raise ValueError(f"Rules.{what} must be a collection, not {value!r}: "
                         "give a list of layer names, e.g. {'Linear', 'ReLU'}")
    items = list(value)  # type: ignore[call-overload]
    for item in items:
        if not (isinstance(item, str) or (isinstance(item, type) and issubclass(item, nn.Module))):
            raise ValueError(f"Rules.{what}: {item!r} is neither a layer name nor an nn.Module class")
    return items


def _names(items: list, what: str, known: frozenset[str]) -> frozenset[str]:
    names = frozenset(_type_name(i) if isinstance(i, type) else i for i in items)
    lower = {k.lower(): k for k in known}
    for name in sorted(names - known):
        close = [lower[m] for m in difflib.get_close_matches(name.lower(), lower, n=3)]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Rules.{what}: {name!r} is not a layer class in torch.nn{hint}")
    return names


@dataclass(frozen=True)
class Rules:
    """What a problem allows.

    Attributes:
        name: a label used in messages, e.g. ``"2C: at most 100 hidden units"``.
        allowed: the layer types that may run: ``torch.nn`` class names (``"Linear"``,
            ``"ReLU"`` ...) or classes (``nn.Linear``, or a course's own layer class), in any
            iterable; stored as a ``frozenset`` of names. **Empty means any layer type**: only
            the numeric limits apply.
        max_hidden_units: cap on :func:`hidden_units`, or None.
        min_hidden_layers: floor on :func:`hidden_layers`.
        max_parameters: the model must have *fewer* parameters than this, or None.
        required: layer types that must run at least once, given like ``allowed``.

    Raises:
        ValueError: ``allowed`` or ``required`` is one string rather than a collection, or
            names a layer that is neither in ``torch.nn`` nor given here as a class.
    """

    name: str
    allowed: frozenset[str]
    max_hidden_units: int | None = None
    min_hidden_layers: int = 0
    max_parameters: int | None = None
    required: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        given = {what: _items(getattr(self, what), what) for what in ("allowed", "required")}
        known = _NN_NAMES | {_type_name(i) for items in given.values() for i in items if isinstance(i, type)}
        for what, items in given.items():
            object.__setattr__(self, what, _names(items, what, known))


NONE = Rules("no rules", frozenset())


def _counts_units(rules: Rules) -> bool:
    return rules.max_hidden_units is not None or rules.min_hidden_layers > 0


def _first_line(exc: Exception) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


@contextmanager
def _modes_kept(model: nn.Module):
    """Restore every module's training flag on the way out."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.training = mode


def _layers(model: nn.Module) -> list[nn.Module]:
    """Leaf modules, and any module that holds parameters of its own besides sub-modules."""
    return [m for m in model.modules()
            if not list(m.children()) or next(m.parameters(recurse=False), None) is not None]


def _called(model: nn.Module, input_shape: Sequence[int] | DataSource | None, caller: str) -> list[nn.Module]:
    """The layers called in one eval-mode pass on a zero batch of two inputs, in call order."""
    calls: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: calls.append(m)) for m in _layers(model)]
    like = next((t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), None)
    shape = input_shape_of(input_shape, caller)
    try:
        with _modes_kept(model), torch.no_grad():
            model.eval()(torch.zeros(2, *shape, dtype=like.dtype if like is not None else None,
                                     device=like.device if like is not None else None))
    except Exception as exc:
        raise RuleViolation(f"the model could not be run on inputs of shape {shape} "
                            f"({_first_line(exc)})") from None
    finally:
        for h in hooks:
            h.remove()
    return calls


def _hidden(calls: list[nn.Module]) -> list[nn.Linear]:
    """Every ``nn.Linear`` call but the last."""
    return [m for m in calls if isinstance(m, nn.Linear)][:-1]


def hidden_units(model: nn.Module, *, input_shape: Sequence[int] | DataSource | None = None) -> int:
    """Sum of ``out_features`` over every Linear call but the last, in one pass on zeros of
    ``input_shape`` (required). Raises :class:`RuleViolation` if the model cannot run."""
    return sum(m.out_features for m in _hidden(_called(model, input_shape, "nnlab.rules.hidden_units")))


def hidden_layers(model: nn.Module, *, input_shape: Sequence[int] | DataSource | None = None) -> int:
    """Number of Linear calls but the last (see :func:`hidden_units`)."""
    return len(_hidden(_called(model, input_shape, "nnlab.rules.hidden_layers")))


_LINEAR = [F.linear, operator.matmul, torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.einsum]
_FUNCTIONS = {
    **dict.fromkeys(_LINEAR, "Linear"), **dict.fromkeys([torch.relu, torch.relu_, F.relu, F.relu_], "ReLU"),
    torch.tanh: "Tanh", F.tanh: "Tanh", torch.sigmoid: "Sigmoid", F.sigmoid: "Sigmoid",
    torch.softmax: "Softmax", F.softmax: "Softmax", torch.log_softmax: "LogSoftmax",
    F.log_softmax: "LogSoftmax", F.dropout: "Dropout", torch.dropout: "Dropout",
    F.conv1d: "Conv1d", F.conv2d: "Conv2d", F.max_pool2d: "MaxPool2d", F.avg_pool2d: "AvgPool2d",
    F.batch_norm: "BatchNorm2d", F.layer_norm: "LayerNorm", F.gelu: "GELU", F.elu: "ELU",
    F.leaky_relu: "LeakyReLU", F.silu: "SiLU", torch.flatten: "Flatten", torch.reshape: "Flatten",
}
_METHODS = {"relu": "ReLU", "relu_": "ReLU", "tanh": "Tanh", "tanh_": "Tanh", "sigmoid": "Sigmoid",
            "sigmoid_": "Sigmoid", "softmax": "Softmax", "log_softmax": "LogSoftmax", "matmul": "Linear",
            "flatten": "Flatten", "view": "Flatten", "reshape": "Flatten"}
_PLUMBING = {getattr, operator.getitem, operator.add, operator.sub, operator.mul, operator.truediv,
             operator.neg, operator.pos, torch.add, torch.sub, torch.mul, torch.div, torch.cat,
             torch.stack, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose,
             "size", "dim", "contiguous", "to", "float", "type_as", "squeeze", "unsqueeze", "permute",
             "transpose", "t", "expand", "expand_as", "clone", "detach", "add", "sub", "mul", "div",
             "neg", "chunk", "split"}


class _Forward(NamedTuple):
    """What ``forward`` does: layer name -> functional spellings, refused operations, raw parameters."""
    layers: dict[str, set[str]]
    unknown: set[str]
    raw: set[str]


class _Tracer(fx.Tracer):
    """fx's tracer, which also keeps a course's own allowed layer classes closed (trusted)."""

    def __init__(self, trusted: frozenset[str]):
        super().__init__()
        self.trusted = trusted

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return super().is_leaf_module(m, qualified_name) or _type_name(type(m)) in self.trusted


def _spelling(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    module = getattr(node.target, "__module__", None) or "torch"
    module = {"torch.nn.functional": "F", "torch._C._nn": "F", "_operator": "operator"}.get(module, module)
    return f"{module}.{getattr(node.target, '__name__', node.target)}"


def _inspect(model: nn.Module, rules: Rules) -> _Forward:
    """The layers and operations ``forward`` uses, traced in training and in eval mode."""
    seen = _Forward({}, set(), set())
    tracer = _Tracer(rules.allowed - _NN_NAMES)
    if tracer.is_leaf_module(model, ""):  # a bare torch.nn layer, or a trusted one
        return _Forward({_type_name(type(model)): set()}, set(), set())
    try:
        with _modes_kept(model):
            graphs = [tracer.trace(model.train(mode)) for mode in (True, False)]
    except Exception as exc:
        raise RuleViolation(f"forward could not be inspected ({_first_line(exc)}): rewrite it "
                            "as an nn.Sequential or without data-dependent control flow") from None
    params = dict(model.named_parameters(remove_duplicate=False))
    for node in (n for g in graphs for n in g.nodes):
        if node.op == "call_module":
            seen.layers.setdefault(_type_name(type(model.get_submodule(node.target))), set())
        elif node.op == "get_attr" and node.target in params:
            seen.raw.add(str(node.target))
        elif node.op in ("call_function", "call_method") and node.target not in _PLUMBING:
            layer = (_METHODS if node.op == "call_method" else _FUNCTIONS).get(node.target)
            if layer is None:
                seen.unknown.add(_spelling(node))
            else:
                seen.layers.setdefault(layer, set()).add(_spelling(node))
    return seen


def _type_violations(ran: set[str], fwd: _Forward, rules: Rules) -> list[str]:
    found = []
    bad = sorted((ran | set(fwd.layers)) - rules.allowed)
    if bad:
        spelled = sorted(s for b in bad for s in fwd.layers.get(b, ()))
        how = f", called in forward as {', '.join(spelled)}" if spelled else ""
        found.append(f"layer type(s) {', '.join(bad)} not allowed "
                     f"(allowed: {', '.join(sorted(rules.allowed))}){how}")
    if fwd.unknown:
        found.append(f"operation(s) {', '.join(sorted(fwd.unknown))} in forward are not layers the rules "
                     "can name: use torch.nn layers, arithmetic and reshaping only")
    return found


def _count_violations(hidden: list[nn.Linear], fwd: _Forward, rules: Rules) -> list[str]:
    found = []
    units = sum(m.out_features for m in hidden)
    if rules.max_hidden_units is not None and units > rules.max_hidden_units:
        found.append(f"{units} hidden units, more than the {rules.max_hidden_units} allowed")
    if len(hidden) < rules.min_hidden_layers:
        found.append(f"{len(hidden)} hidden layer(s), fewer than the {rules.min_hidden_layers} required")
    if _counts_units(rules) and fwd.layers.get("Linear"):
        ops = ", ".join(sorted(fwd.layers["Linear"]))
        found.append(f"forward computes linear maps outside nn.Linear ({ops}), "
                     "so their hidden units cannot be counted: use nn.Linear")
    return found


def violations(model: nn.Module, rules: Rules, *, input_shape: Sequence[int] | DataSource | None = None) -> list[str]:
    """Every way the model breaks the rules, in plain words (empty when it is legal).

    ``input_shape`` is one input's shape without the batch axis (``data.input_shape``, or
    the data source itself; required). A model that cannot run on it is a violation.
    """
    input_shape = input_shape_of(input_shape, "nnlab.rules.violations")
    found: list[str] = []
    fwd = _Forward({}, set(), set())
    if rules.allowed or _counts_units(rules):
        try:
            fwd = _inspect(model, rules)
        except RuleViolation as exc:
            found.append(str(exc))
    if fwd.raw:
        found.append(f"forward reads parameter(s) {', '.join(sorted(fwd.raw))} directly instead of "
                     "calling the layer that holds them, so what they compute cannot be checked")
    try:
        calls = _called(model, input_shape, "nnlab.rules.violations")
    except RuleViolation as exc:  # then check the types of every layer it defines
        calls = None
        found.append(str(exc))
    ran = {_type_name(type(m)) for m in (_layers(model) if calls is None else calls)}
    if rules.allowed:
        found += _type_violations(ran, fwd, rules)
    if calls is not None:
        found += _count_violations(_hidden(calls), fwd, rules)
        found += [f"no {name} layer, but at least one is required"
                  for name in sorted(rules.required - ran - set(fwd.layers))]
    if rules.max_parameters is not None and count_parameters(model) >= rules.max_parameters:
        found.append(f"{count_parameters(model):,} parameters, not fewer than {rules.max_parameters:,}")
    return found


def check(model: nn.Module, rules: Rules, *, input_shape: Sequence[int] | DataSource | None = None) -> None:
    """Raise :class:`RuleViolation` listing every violation, or return None if legal."""
    found = violations(model, rules, input_shape=input_shape_of(input_shape, "nnlab.rules.check"))
    if found:
        raise RuleViolation(f"model breaks the rules of {rules.name}: " + "; ".join(found))
