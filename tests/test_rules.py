"""nnlab.rules: legal models pass, illegal ones fail with the right reason, units are counted right."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnlab import rules as R
from nnlab.book import problems as P
from nnlab.models import build, count_parameters, mlp
from nnlab.rules import RuleViolation, check, hidden_layers, hidden_units, violations

FAST = settings(max_examples=60, deadline=None)
PROBLEMS = [P.MLP_100, P.MLP_200, P.MLP_1000]


@st.composite
def widths_within(draw, budget: int, min_layers: int, max_layers: int = 5) -> list[int]:
    """Hidden widths with ``min_layers..max_layers`` layers whose sum is at most ``budget``."""
    n = draw(st.integers(max(min_layers, 1), max_layers))
    widths, left = [], budget
    for i in range(n):
        w = draw(st.integers(1, left - (n - i - 1)))
        widths.append(w)
        left -= w
    return draw(st.permutations(widths))


dropouts = st.sampled_from([0.0, 0.1, 0.5, 1.0])


def make(widths, dropout=0.0, softmax_last=False) -> nn.Sequential:
    return build(mlp(widths, dropout, softmax_last))


@FAST
@given(data=st.data(), rules=st.sampled_from(PROBLEMS), dropout=dropouts, softmax=st.booleans())
def test_random_legal_mlps_pass(data, rules, dropout, softmax):
    widths = data.draw(widths_within(rules.max_hidden_units, rules.min_hidden_layers))
    model = make(widths, dropout, softmax)
    assert hidden_units(model) == sum(widths)
    assert hidden_layers(model) == len(widths)
    assert violations(model, rules) == []
    check(model, rules)


@FAST
@given(data=st.data(), rules=st.sampled_from(PROBLEMS))
def test_random_mlps_over_budget_fail(data, rules):
    budget = rules.max_hidden_units
    widths = data.draw(widths_within(budget, rules.min_hidden_layers))
    over = data.draw(st.integers(1, 300))
    widths[data.draw(st.integers(0, len(widths) - 1))] += budget - sum(widths) + over
    model = make(widths)
    assert violations(model, rules) == [f"{budget + over} hidden units, more than the {budget} allowed"]
    with pytest.raises(RuleViolation) as info:
        check(model, rules)
    assert str(info.value) == (f"model breaks the rules of {rules.name}: "
                               f"{budget + over} hidden units, more than the {budget} allowed")


@FAST
@given(data=st.data(), rules=st.sampled_from([P.MLP_200, P.MLP_1000]))
def test_random_mlps_too_shallow_fail(data, rules):
    widths = data.draw(widths_within(rules.max_hidden_units, 0, max_layers=rules.min_hidden_layers - 1))
    model = make(widths)
    assert violations(model, rules) == [
        f"{len(widths)} hidden layer(s), fewer than the {rules.min_hidden_layers} required"]
    with pytest.raises(RuleViolation, match=r"hidden layer\(s\), fewer than"):
        check(model, rules)


@FAST
@given(data=st.data(), layer=st.sampled_from([nn.Tanh(), nn.Sigmoid(), nn.BatchNorm1d(10), nn.GELU(),
                                              nn.LeakyReLU(), nn.Identity()]))
def test_random_mlps_with_a_foreign_layer_fail(data, layer):
    widths = data.draw(widths_within(100, 0))
    layers = list(make(widths))
    layers.insert(data.draw(st.integers(1, len(layers) - 1)), layer)
    model = nn.Sequential(*layers)
    with pytest.raises(RuleViolation, match=rf"layer type\(s\) {type(layer).__name__} not allowed"):
        check(model, P.MLP_100)


def nested_sneaky() -> nn.Sequential:
    # 784 -> 60 (hidden inside a nested Sequential) -> 41 -> 10: 101 hidden units
    return nn.Sequential(nn.Flatten(), nn.Sequential(nn.Sequential(nn.Linear(784, 60)), nn.ReLU()),
                         nn.Linear(60, 41), nn.ReLU(), nn.Linear(41, 10))


def test_linear_hidden_in_nested_sequential_is_counted():
    model = nested_sneaky()
    assert hidden_units(model) == 101 and hidden_layers(model) == 2
    with pytest.raises(RuleViolation, match="101 hidden units, more than the 100 allowed"):
        check(model, P.MLP_100)


def test_conv_under_mlp_rules_fails():
    model = build(["conv 4 3", "relu", "flatten", "linear 20", "relu", "linear 10"])
    assert hidden_units(model) == 20  # within the budget ...
    with pytest.raises(RuleViolation, match=r"layer type\(s\) Conv2d not allowed"):
        check(model, P.MLP_100)  # ... but not an MLP
    # also when the convolution hides in a nested container
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 3)), nn.Flatten(), nn.Linear(676, 10))
    assert "Conv2d" in " ".join(violations(nested, P.MLP_100))


def test_custom_module_with_its_own_weights_fails():
    class Scaled(nn.Module):  # a learned layer disguised as a container of allowed ones
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(784))
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x * self.scale)

    model = nn.Sequential(nn.Flatten(), Scaled(), nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))
    with pytest.raises(RuleViolation, match=r"layer type\(s\) Scaled not allowed"):
        check(model, P.MLP_100)


@pytest.mark.parametrize("rules, widths", [(P.MLP_100, [101]), (P.MLP_100, [50, 51]),
                                           (P.MLP_200, [150, 51]), (P.MLP_1000, [500, 300, 201])])
def test_one_unit_over_budget_fails_and_exactly_at_budget_passes(rules, widths):
    with pytest.raises(RuleViolation, match=f"{rules.max_hidden_units + 1} hidden units"):
        check(make(widths), rules)
    at_budget = widths[:-1] + [widths[-1] - 1]
    check(make(at_budget), rules)


@pytest.mark.parametrize("rules, widths", [(P.MLP_200, [200]), (P.MLP_1000, [500, 400]),
                                           (P.MLP_1000, [])])
def test_too_few_hidden_layers_fail(rules, widths):
    with pytest.raises(RuleViolation, match=f"{len(widths)} hidden layer\\(s\\), fewer than"):
        check(make(widths), rules)


CNN = ["conv 8 3 p=1 bias=0", "bn", "relu", "maxpool 2", "dropout 0.1", "flatten", "linear 10"]


def test_required_layers_must_be_present():
    check(build(CNN), P.CNN_1M)
    no_bn = [t for t in CNN if t != "bn"]
    assert violations(build(no_bn), P.CNN_1M) == ["no BatchNorm2d layer, but at least one is required"]
    with pytest.raises(RuleViolation, match="no BatchNorm2d layer, but at least one is required"):
        check(build(no_bn), P.CNN_1M)
    neither = [t for t in no_bn if not t.startswith("dropout")]
    msg = "; ".join(violations(build(neither), P.CNN_1M))
    assert "no BatchNorm2d layer" in msg and "no Dropout layer" in msg
    # a required layer nested in a container counts
    nested = nn.Sequential(nn.Sequential(*build(CNN)[:4]), *build(CNN)[4:])
    check(nested, P.CNN_1M)


def test_parameter_limit_is_strict():
    # conv 1->8 3x3 without bias, BatchNorm (2 per channel), linear 8*14*14 -> 10 with bias
    model = build(CNN)
    n = count_parameters(model)
    assert n == 8 * 9 + 2 * 8 + (8 * 14 * 14 * 10 + 10)
    at_limit = R.Rules("limit", P.CNN_LAYERS, max_parameters=n)
    above_limit = R.Rules("limit", P.CNN_LAYERS, max_parameters=n + 1)
    with pytest.raises(RuleViolation, match=f"{n:,} parameters, not fewer than {n:,}"):
        check(model, at_limit)
    check(model, above_limit)


def test_every_violation_is_listed_at_once():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.Tanh(), nn.Linear(300, 10))
    found = violations(model, P.MLP_200)
    assert len(found) == 3
    assert any("Tanh not allowed" in f for f in found)
    assert any("300 hidden units" in f for f in found)
    assert any("1 hidden layer(s)" in f for f in found)


@FAST
@given(data=st.data(), dropout=dropouts, softmax=st.booleans())
def test_only_non_final_linear_outputs_count(data, dropout, softmax):
    widths = data.draw(widths_within(1000, 0))
    model = make(widths, dropout, softmax)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert linears[-1].out_features == 10
    assert hidden_units(model) == sum(widths) == sum(m.out_features for m in linears[:-1])
    assert hidden_layers(model) == len(widths) == len(linears) - 1
    # activations and dropout add nothing
    bare = nn.Sequential(*[m for m in model if isinstance(m, (nn.Flatten, nn.Linear))])
    assert (hidden_units(bare), hidden_layers(bare)) == (hidden_units(model), hidden_layers(model))


def test_counts_without_linear_layers():
    assert hidden_units(nn.Sequential(nn.Flatten())) == 0
    assert hidden_layers(nn.Sequential(nn.Flatten())) == 0
    assert hidden_units(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))) == 0
