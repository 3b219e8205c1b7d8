"""A problem's architecture rules as data, and a checker that lists every violation.

The problem set counts hidden units as the outputs of every ``Linear`` layer except the
last one; activations, dropout and the output layer do not count. A hidden layer is such a
non-final ``Linear``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from nnlab.models import count_parameters


class RuleViolation(ValueError):
    """A model breaks its problem's rules; the message lists every violation."""


@dataclass(frozen=True)
class Rules:
    """What a problem allows.

    Attributes:
        name: a label used in messages, e.g. ``"2C: at most 100 hidden units"``.
        allowed: layer class names that may appear (``"Linear"``, ``"ReLU"``, ...).
        max_hidden_units: cap on :func:`hidden_units`, or None.
        min_hidden_layers: floor on :func:`hidden_layers`.
        max_parameters: the model must have *fewer* parameters than this, or None.
        required: layer class names that must appear at least once.
    """

    name: str
    allowed: frozenset[str]
    max_hidden_units: int | None = None
    min_hidden_layers: int = 0
    max_parameters: int | None = None
    required: frozenset[str] = field(default_factory=frozenset)


NONE = Rules("no rules", frozenset())


def _layers(model: nn.Module) -> list[nn.Module]:
    """Leaf modules, and any module that holds parameters of its own besides sub-modules."""
    return [m for m in model.modules()
            if not list(m.children()) or next(m.parameters(recurse=False), None) is not None]


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def hidden_units(model: nn.Module) -> int:
    """Sum of ``out_features`` over every Linear layer except the last (in module order)."""
    return sum(m.out_features for m in _linears(model)[:-1])


def hidden_layers(model: nn.Module) -> int:
    """Number of Linear layers that are not the last one."""
    return max(len(_linears(model)) - 1, 0)


def violations(model: nn.Module, rules: Rules) -> list[str]:
    """Every way the model breaks the rules, in plain words (empty when it is legal)."""
    found: list[str] = []
    if rules.allowed:
        bad = sorted({type(m).__name__ for m in _layers(model)} - rules.allowed)
        if bad:
            found.append(f"layer type(s) {', '.join(bad)} not allowed "
                         f"(allowed: {', '.join(sorted(rules.allowed))})")
    if rules.max_hidden_units is not None and hidden_units(model) > rules.max_hidden_units:
        found.append(f"{hidden_units(model)} hidden units, more than the {rules.max_hidden_units} allowed")
    if hidden_layers(model) < rules.min_hidden_layers:
        found.append(f"{hidden_layers(model)} hidden layer(s), fewer than the "
                     f"{rules.min_hidden_layers} required")
    if rules.max_parameters is not None and count_parameters(model) >= rules.max_parameters:
        found.append(f"{count_parameters(model):,} parameters, not fewer than {rules.max_parameters:,}")
    present = {type(m).__name__ for m in model.modules()}
    for name in sorted(rules.required - present):
        found.append(f"no {name} layer, but at least one is required")
    return found


def check(model: nn.Module, rules: Rules) -> None:
    """Raise :class:`RuleViolation` listing every violation, or return None if legal."""
    found = violations(model, rules)
    if found:
        raise RuleViolation(f"model breaks the rules of {rules.name}: " + "; ".join(found))
