"""nnlab.rules: legal models pass, illegal ones fail with the right reason, units are counted right."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnlab import rules as R
from nnlab.book import experiments as BE
from nnlab.book import problems as P
from nnlab.models import build, count_parameters, mlp
from nnlab.rules import RuleViolation, check, hidden_layers, hidden_units, violations
from nnlab.runner import build_checked

FAST = settings(max_examples=60, deadline=None)
SHAPE = (1, 28, 28)  # one MNIST-shaped input, without the batch axis
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
    return build(mlp(widths, dropout, softmax_last, classes=10), SHAPE)


@FAST
@given(data=st.data(), rules=st.sampled_from(PROBLEMS), dropout=dropouts, softmax=st.booleans())
def test_random_legal_mlps_pass(data, rules, dropout, softmax):
    widths = data.draw(widths_within(rules.max_hidden_units, rules.min_hidden_layers))
    model = make(widths, dropout, softmax)
    assert hidden_units(model, input_shape=SHAPE) == sum(widths)
    assert hidden_layers(model, input_shape=SHAPE) == len(widths)
    assert violations(model, rules, input_shape=SHAPE) == []
    check(model, rules, input_shape=SHAPE)


@FAST
@given(data=st.data(), rules=st.sampled_from(PROBLEMS))
def test_random_mlps_over_budget_fail(data, rules):
    budget = rules.max_hidden_units
    widths = data.draw(widths_within(budget, rules.min_hidden_layers))
    over = data.draw(st.integers(1, 300))
    widths[data.draw(st.integers(0, len(widths) - 1))] += budget - sum(widths) + over
    model = make(widths)
    assert violations(model, rules, input_shape=SHAPE) == [f"{budget + over} hidden units, more than the {budget} allowed"]
    with pytest.raises(RuleViolation) as info:
        check(model, rules, input_shape=SHAPE)
    assert str(info.value) == (f"model breaks the rules of {rules.name}: "
                               f"{budget + over} hidden units, more than the {budget} allowed")


@FAST
@given(data=st.data(), rules=st.sampled_from([P.MLP_200, P.MLP_1000]))
def test_random_mlps_too_shallow_fail(data, rules):
    widths = data.draw(widths_within(rules.max_hidden_units, 0, max_layers=rules.min_hidden_layers - 1))
    model = make(widths)
    assert violations(model, rules, input_shape=SHAPE) == [
        f"{len(widths)} hidden layer(s), fewer than the {rules.min_hidden_layers} required"]
    with pytest.raises(RuleViolation, match=r"hidden layer\(s\), fewer than"):
        check(model, rules, input_shape=SHAPE)


@FAST
@given(data=st.data(), layer=st.sampled_from([nn.Tanh(), nn.Sigmoid(), nn.BatchNorm1d(10), nn.GELU(),
                                              nn.LeakyReLU(), nn.Identity()]))
def test_random_mlps_with_a_foreign_layer_fail(data, layer):
    widths = data.draw(widths_within(100, 0))
    layers = list(make(widths))
    layers.insert(data.draw(st.integers(1, len(layers) - 1)), layer)
    model = nn.Sequential(*layers)
    with pytest.raises(RuleViolation, match=rf"layer type\(s\) {type(layer).__name__} not allowed"):
        check(model, P.MLP_100, input_shape=SHAPE)


def nested_sneaky() -> nn.Sequential:
    # 784 -> 60 (hidden inside a nested Sequential) -> 41 -> 10: 101 hidden units
    return nn.Sequential(nn.Flatten(), nn.Sequential(nn.Sequential(nn.Linear(784, 60)), nn.ReLU()),
                         nn.Linear(60, 41), nn.ReLU(), nn.Linear(41, 10))


def test_linear_hidden_in_nested_sequential_is_counted():
    model = nested_sneaky()
    assert hidden_units(model, input_shape=SHAPE) == 101 and hidden_layers(model, input_shape=SHAPE) == 2
    with pytest.raises(RuleViolation, match="101 hidden units, more than the 100 allowed"):
        check(model, P.MLP_100, input_shape=SHAPE)


def test_conv_under_mlp_rules_fails():
    model = build(["conv 4 3", "relu", "flatten", "linear 20", "relu", "linear 10"], SHAPE)
    assert hidden_units(model, input_shape=SHAPE) == 20  # within the budget ...
    with pytest.raises(RuleViolation, match=r"layer type\(s\) Conv2d not allowed"):
        check(model, P.MLP_100, input_shape=SHAPE)  # ... but not an MLP
    # also when the convolution hides in a nested container
    nested = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 3)), nn.Flatten(), nn.Linear(676, 10))
    assert "Conv2d" in " ".join(violations(nested, P.MLP_100, input_shape=SHAPE))


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
        check(model, P.MLP_100, input_shape=SHAPE)


@pytest.mark.parametrize("rules, widths", [(P.MLP_100, [101]), (P.MLP_100, [50, 51]),
                                           (P.MLP_200, [150, 51]), (P.MLP_1000, [500, 300, 201])])
def test_one_unit_over_budget_fails_and_exactly_at_budget_passes(rules, widths):
    with pytest.raises(RuleViolation, match=f"{rules.max_hidden_units + 1} hidden units"):
        check(make(widths), rules, input_shape=SHAPE)
    at_budget = widths[:-1] + [widths[-1] - 1]
    check(make(at_budget), rules, input_shape=SHAPE)


@pytest.mark.parametrize("rules, widths", [(P.MLP_200, [200]), (P.MLP_1000, [500, 400]),
                                           (P.MLP_1000, [])])
def test_too_few_hidden_layers_fail(rules, widths):
    with pytest.raises(RuleViolation, match=f"{len(widths)} hidden layer\\(s\\), fewer than"):
        check(make(widths), rules, input_shape=SHAPE)


CNN = ["conv 8 3 p=1 bias=0", "bn", "relu", "maxpool 2", "dropout 0.1", "flatten", "linear 10"]


def test_required_layers_must_be_present():
    check(build(CNN, SHAPE), P.CNN_1M, input_shape=SHAPE)
    no_bn = [t for t in CNN if t != "bn"]
    assert violations(build(no_bn, SHAPE), P.CNN_1M, input_shape=SHAPE) == ["no BatchNorm2d layer, but at least one is required"]
    with pytest.raises(RuleViolation, match="no BatchNorm2d layer, but at least one is required"):
        check(build(no_bn, SHAPE), P.CNN_1M, input_shape=SHAPE)
    neither = [t for t in no_bn if not t.startswith("dropout")]
    msg = "; ".join(violations(build(neither, SHAPE), P.CNN_1M, input_shape=SHAPE))
    assert "no BatchNorm2d layer" in msg and "no Dropout layer" in msg
    # a required layer nested in a container counts
    nested = nn.Sequential(nn.Sequential(*build(CNN, SHAPE)[:4]), *build(CNN, SHAPE)[4:])
    check(nested, P.CNN_1M, input_shape=SHAPE)


def test_parameter_limit_is_strict():
    # conv 1->8 3x3 without bias, BatchNorm (2 per channel), linear 8*14*14 -> 10 with bias
    model = build(CNN, SHAPE)
    n = count_parameters(model)
    assert n == 8 * 9 + 2 * 8 + (8 * 14 * 14 * 10 + 10)
    at_limit = R.Rules("limit", P.CNN_LAYERS, max_parameters=n)
    above_limit = R.Rules("limit", P.CNN_LAYERS, max_parameters=n + 1)
    with pytest.raises(RuleViolation, match=f"{n:,} parameters, not fewer than {n:,}"):
        check(model, at_limit, input_shape=SHAPE)
    check(model, above_limit, input_shape=SHAPE)


def test_every_violation_is_listed_at_once():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.Tanh(), nn.Linear(300, 10))
    found = violations(model, P.MLP_200, input_shape=SHAPE)
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
    assert hidden_units(model, input_shape=SHAPE) == sum(widths) == sum(m.out_features for m in linears[:-1])
    assert hidden_layers(model, input_shape=SHAPE) == len(widths) == len(linears) - 1
    # activations and dropout add nothing
    bare = nn.Sequential(*[m for m in model if isinstance(m, (nn.Flatten, nn.Linear))])
    assert (hidden_units(bare, input_shape=SHAPE), hidden_layers(bare, input_shape=SHAPE)) == (hidden_units(model, input_shape=SHAPE), hidden_layers(model, input_shape=SHAPE))


def test_counts_without_linear_layers():
    assert hidden_units(nn.Sequential(nn.Flatten()), input_shape=SHAPE) == 0
    assert hidden_layers(nn.Sequential(nn.Flatten()), input_shape=SHAPE) == 0
    assert hidden_units(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), input_shape=SHAPE) == 0


# --- what runs is what counts: models written to fool a count of definitions -----------------

AT_MOST_64 = R.Rules("at most 64 hidden units", {"Flatten", "Linear", "ReLU"}, max_hidden_units=64)


class OutputFirst(nn.Module):
    """The output layer is defined first but applied last: 100 hidden units, not 10."""

    def __init__(self):
        super().__init__()
        self.out = nn.Linear(100, 10)
        self.flat, self.hidden, self.act = nn.Flatten(), nn.Linear(784, 100), nn.ReLU()

    def forward(self, x):
        return self.out(self.act(self.hidden(self.flat(x))))


def test_output_layer_defined_first_is_still_the_output():
    model = OutputFirst()
    assert (hidden_units(model, input_shape=SHAPE), hidden_layers(model, input_shape=SHAPE)) == (100, 1)
    assert violations(model, AT_MOST_64, input_shape=SHAPE) == ["100 hidden units, more than the 64 allowed"]
    with pytest.raises(RuleViolation, match="100 hidden units, more than the 64 allowed"):
        check(model, AT_MOST_64, input_shape=SHAPE)


class Functional(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(784, 50), nn.Linear(50, 10), act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))


@pytest.mark.parametrize("act, name", [(torch.tanh, "Tanh"), (F.sigmoid, "Sigmoid"),
                                       (lambda x: x.tanh(), "Tanh"), (torch.sigmoid, "Sigmoid")])
def test_activation_called_as_a_function_must_be_allowed(act, name):
    model = Functional(act)
    found = violations(model, P.MLP_100, input_shape=SHAPE)
    assert len(found) == 1 and found[0].startswith(f"layer type(s) {name} not allowed")
    assert "called in forward as" in found[0]
    with pytest.raises(RuleViolation, match=rf"layer type\(s\) {name} not allowed"):
        check(model, P.MLP_100, input_shape=SHAPE)
    check(model, R.Rules("with it", P.MLP_LAYERS | {name}, max_hidden_units=100), input_shape=SHAPE)


def test_allowed_functional_activations_pass():
    for act in (torch.relu, F.relu, lambda x: x.relu()):
        check(Functional(act), P.MLP_100, input_shape=SHAPE)


def test_unknown_operations_in_forward_are_refused():
    found = violations(Functional(lambda x: x.clamp(min=0)), P.MLP_100, input_shape=SHAPE)  # a ReLU in disguise
    assert found == ["operation(s) Tensor.clamp in forward are not layers the rules can name: "
                     "use torch.nn layers, arithmetic and reshaping only"]
    assert "torch.exp" in " ".join(violations(Functional(torch.exp), P.MLP_100, input_shape=SHAPE))
    # arithmetic and shape plumbing are fine
    check(Functional(lambda x: (x * 2 + 1) / 3 - x[:, :1].unsqueeze(1).squeeze(1)), P.MLP_100, input_shape=SHAPE)
    assert violations(Functional(torch.exp), R.Rules("any layer", frozenset()), input_shape=SHAPE) == []


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.shared, self.out = nn.Linear(784, 40), nn.Linear(40, 40), nn.Linear(40, 10)

    def forward(self, x):
        x = torch.relu(self.first(x.flatten(1)))
        return self.out(torch.relu(self.shared(torch.relu(self.shared(x)))))


def test_a_linear_used_twice_counts_twice():
    model = Twice()
    assert (hidden_units(model, input_shape=SHAPE), hidden_layers(model, input_shape=SHAPE)) == (120, 3)
    assert violations(model, AT_MOST_64, input_shape=SHAPE) == ["120 hidden units, more than the 64 allowed"]


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(784, 500)  # defined, never called
        self.hidden, self.out = nn.Linear(784, 30), nn.Linear(30, 10)
        self.extra = nn.Tanh()  # a forbidden type, never called

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x.flatten(1))))


def test_a_linear_never_used_does_not_count():
    model = Unused()
    assert (hidden_units(model, input_shape=SHAPE), hidden_layers(model, input_shape=SHAPE)) == (30, 1)
    check(model, AT_MOST_64, input_shape=SHAPE)


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.small, self.big, self.out = nn.Linear(784, 10), nn.Linear(784, 500), nn.Linear(10, 10)

    def forward(self, x):
        x = x.flatten(1)
        if x.sum() > 0:  # real images take the big path, the zero batch the small one
            return self.out(torch.relu(self.big(x))[:, :10])
        return self.out(torch.relu(self.small(x)))


def test_data_dependent_control_flow_is_not_inspectable():
    found = violations(Branchy(), AT_MOST_64, input_shape=SHAPE)
    assert len(found) == 1
    assert found[0].startswith("forward could not be inspected (")
    assert found[0].endswith("): rewrite it as an nn.Sequential or without data-dependent control flow")
    with pytest.raises(RuleViolation, match="forward could not be inspected"):
        check(Branchy(), P.MLP_100, input_shape=SHAPE)
    # also when only the hidden units are limited
    assert "could not be inspected" in violations(Branchy(), R.Rules("64", (), max_hidden_units=64), input_shape=SHAPE)[0]


def test_a_layer_bypassed_through_its_weights_is_refused():
    class Bypass(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = nn.Linear(784, 500), nn.Linear(500, 10)

        def forward(self, x):
            return self.out(torch.relu(F.linear(x.flatten(1), self.hidden.weight, self.hidden.bias)))

    found = violations(Bypass(), P.MLP_100, input_shape=SHAPE)
    assert any("forward reads parameter(s) hidden.bias, hidden.weight directly" in f for f in found)
    assert any("linear maps outside nn.Linear (F.linear)" in f for f in found)


def test_a_class_named_like_a_torch_layer_is_not_that_layer():
    class ReLU(nn.Module):
        def forward(self, x):
            return x.exp()

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), ReLU())
    assert f"{__name__}." in violations(model, P.MLP_100, input_shape=SHAPE)[0]


def test_a_model_that_cannot_run_on_the_shape_is_a_violation():
    model = build(mlp([32, 32], classes=10), (1, 8, 8))
    found = violations(model, P.MLP_100, input_shape=SHAPE)
    assert found and found[0].startswith("the model could not be run on inputs of shape (1, 28, 28)")
    assert violations(model, P.MLP_100, input_shape=(1, 8, 8)) == []
    assert hidden_units(model, input_shape=(1, 8, 8)) == 64
    with pytest.raises(RuleViolation, match=r"could not be run on inputs of shape \(1, 28, 28\)"):
        hidden_units(model, input_shape=SHAPE)


def test_checking_leaves_the_model_as_it_was():
    model = build(CNN, SHAPE).train()
    model[1].eval()
    before = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check(model, P.CNN_1M, input_shape=SHAPE)
    assert [m.training for m in model.modules()] == before
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not model._forward_pre_hooks and not any(m._forward_pre_hooks for m in model.modules())


# --- Rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("allowed", [{"Linear", "ReLU"}, ["Linear", "ReLU", "Linear"], ("ReLU", nn.Linear),
                                     [nn.Linear, nn.ReLU], frozenset({"Linear", "ReLU"}),
                                     (n for n in ["Linear", "ReLU"])])
def test_rules_take_any_collection_of_names_or_types(allowed):
    r = R.Rules("r", allowed, required=[nn.ReLU])
    assert r.allowed == frozenset({"Linear", "ReLU"}) and isinstance(r.allowed, frozenset)
    assert r.required == frozenset({"ReLU"})
    assert hash(r) == hash(R.Rules("r", frozenset({"Linear", "ReLU"}), required=frozenset({"ReLU"})))
    assert {r: 1}[R.Rules("r", ["ReLU", "Linear"], required={"ReLU"})] == 1


@pytest.mark.parametrize("bad", ["Linear", "Linear, ReLU", b"Linear", nn.Linear, 3])
def test_rules_refuse_a_single_string_or_type(bad):
    with pytest.raises(ValueError, match=r"give a list of layer names, e\.g\. \{'Linear', 'ReLU'\}"):
        R.Rules("r", bad)
    with pytest.raises(ValueError, match="give a list of layer names"):
        R.Rules("r", {"Linear"}, required="Dropout")


@pytest.mark.parametrize("name, suggestion", [("Linera", "Linear"), ("relu", "ReLU"),
                                              ("Batchnorm2d", "BatchNorm2d"), ("Conv2D", "Conv2d")])
def test_rules_refuse_unknown_names_with_a_suggestion(name, suggestion):
    with pytest.raises(ValueError, match=rf"'{name}' is not a layer class in torch\.nn; did you mean .*{suggestion}"):
        R.Rules("r", {"Linear", name})
    with pytest.raises(ValueError, match="not a layer class"):
        R.Rules("r", {"Linear"}, required={"Nonsense"})
    with pytest.raises(ValueError, match="neither a layer name nor an nn.Module class"):
        R.Rules("r", {"Linear", 3})


def test_a_courses_own_layer_class_can_be_allowed_and_required():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(10))

        def forward(self, x):
            return torch.exp(x * self.w)

    rules = R.Rules("own", [nn.Flatten, nn.Linear, Scale], required={"Scale"}, max_hidden_units=10)
    assert rules.allowed == {"Flatten", "Linear", "Scale"}
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), Scale())
    assert violations(model, rules, input_shape=SHAPE) == []
    assert "no Scale layer" in violations(model[:2], rules, input_shape=SHAPE)[0]
    assert "Scale not allowed" in " ".join(violations(model, P.MLP_100, input_shape=SHAPE))


def test_empty_allowed_means_any_layer_type():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 30), nn.GELU(), nn.Linear(30, 10))
    assert violations(model, R.Rules("any", [], max_hidden_units=30), input_shape=SHAPE) == []
    assert violations(model, R.Rules("any", [], max_hidden_units=29), input_shape=SHAPE) == ["30 hidden units, more than the 29 allowed"]
    assert violations(model, R.NONE, input_shape=SHAPE) == []


def test_book_rules_are_unchanged():
    # these values feed the stored results' hashes
    mlp_layers = ["Dropout", "Flatten", "Linear", "ReLU", "Softmax"]
    assert sorted(P.MLP_LAYERS) == mlp_layers
    for rules, units, layers in [(P.MLP_100, 100, 0), (P.MLP_200, 200, 2), (P.MLP_1000, 1000, 3)]:
        assert (sorted(rules.allowed), rules.max_hidden_units, rules.min_hidden_layers) == (mlp_layers, units, layers)
        assert (rules.max_parameters, sorted(rules.required)) == (None, [])
    assert sorted(P.CNN_1M.allowed) == ["BatchNorm2d", "Conv2d", "Dropout", "Flatten", "Linear", "MaxPool2d",
                                        "ReLU", "Softmax"]
    assert (P.CNN_1M.max_parameters, sorted(P.CNN_1M.required)) == (1_000_000, ["BatchNorm2d", "Dropout"])
    assert R.NONE.allowed == frozenset() and R.NONE.required == frozenset()
    for rules in (P.MLP_100, P.MLP_200, P.MLP_1000, P.CNN_1M, R.NONE):
        assert type(rules.allowed) is frozenset and type(rules.required) is frozenset
        assert R.Rules(rules.name, sorted(rules.allowed), rules.max_hidden_units, rules.min_hidden_layers,
                       rules.max_parameters, sorted(rules.required)) == rules


@pytest.mark.parametrize("name", BE.names())
def test_every_book_variant_passes_its_rules(name):
    exp = BE.get(name)
    for v in exp.variants:
        build_checked(exp, v)
