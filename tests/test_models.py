"""nnlab.models: random valid specs build into the predicted shapes; invalid tokens are named."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnlab.models import SpecError, build, count_parameters, describe, mlp

FAST = settings(max_examples=80, deadline=None)
SHAPE = (1, 28, 28)  # one MNIST-shaped input, without the batch axis


def out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    """PyTorch's documented output length of a window layer (floor mode)."""
    return math.floor((size + 2 * p - d * (k - 1) - 1) / s) + 1


def spelled(draw, name: str, args: list, opts: dict, defaults: dict) -> str:
    """A token in any of its equivalent spellings: case, option order, explicit defaults."""
    shown = {k: v for k, v in opts.items() if v != defaults.get(k) or draw(st.booleans())}
    items = draw(st.permutations(list(shown.items())))
    name = draw(st.sampled_from([name, name.upper(), name.capitalize()]))
    return " ".join([name, *map(str, args), *(f"{k}={v}" for k, v in items)])


@st.composite
def specs(draw):
    """A random valid spec with its input shape, predicted output shape and parameter count."""
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(3, 14)), draw(st.integers(3, 14))
    input_shape = (c, h, w)
    tokens, params = [], 0
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["conv", "maxpool", "avgpool", "bn", "relu", "tanh", "dropout"]))
        if kind == "conv":
            out, s, p, d = (draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(0, 2)),
                            draw(st.integers(1, 2)))
            k = draw(st.integers(1, min(5, (min(h, w) + 2 * p - 1) // d + 1)))
            bias = draw(st.booleans())
            tokens.append(spelled(draw, "conv", [out, k], {"s": s, "p": p, "d": d, "bias": int(bias)},
                                  {"s": 1, "p": 0, "d": 1, "bias": 1}))
            h, w = out_size(h, k, s, p, d), out_size(w, k, s, p, d)
            params += out * c * k * k + (out if bias else 0)
            c = out
        elif kind in ("maxpool", "avgpool"):
            k = draw(st.integers(1, min(3, h, w)))
            s, p = draw(st.integers(1, 3)), draw(st.integers(0, k // 2))
            tokens.append(spelled(draw, kind, [k], {"s": s, "p": p}, {"s": k, "p": 0}))
            h, w = out_size(h, k, s, p, 1), out_size(w, k, s, p, 1)
        elif kind == "bn":
            tokens.append("bn")
            params += 2 * c
        elif kind == "dropout":
            tokens.append(f"dropout {draw(st.sampled_from([0, 0.0, 0.25, 0.5, 1, 1.0]))}")
        else:
            tokens.append(kind)
    shape: tuple[int, ...] = (c, h, w)
    if draw(st.booleans()):
        tokens.append("flatten")
        n = c * h * w
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["linear", "linear", "relu", "sigmoid", "bn", "dropout 0.1"]))
            if kind == "linear":
                out = draw(st.integers(1, 20))
                tokens.append(f"linear {out}")
                params += n * out + out
                n = out
            elif kind == "bn":
                tokens.append("bn")
                params += 2 * n
            else:
                tokens.append(kind)
        if draw(st.booleans()):
            tokens.append("softmax")
        shape = (n,)
    return tokens, input_shape, shape, params


@FAST
@given(case=specs())
def test_random_valid_specs_build_with_predicted_shapes(case):
    tokens, input_shape, shape, params = case
    model = build(tokens, input_shape=input_shape)
    assert isinstance(model, nn.Sequential) and len(model) == len(tokens)
    assert count_parameters(model) == params
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(2, *input_shape))
    assert tuple(y.shape) == (2, *shape)
    if tokens:
        assert describe(model, input_shape)[-1]["output"] == shape


def test_token_options_reach_the_layers():
    model = build(["conv 4 3 s=2 p=1 d=2 bias=0", "maxpool 3 s=1 p=1", "avgpool 2", "dropout 0.3"], SHAPE)
    conv, maxpool, avgpool, dropout = model
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (1, 4, (3, 3))
    assert (conv.stride, conv.padding, conv.dilation, conv.bias) == ((2, 2), (1, 1), (2, 2), None)
    assert (maxpool.kernel_size, maxpool.stride, maxpool.padding) == (3, 1, 1)
    assert (avgpool.kernel_size, avgpool.stride) == (2, 2)  # stride defaults to the kernel
    assert dropout.p == 0.3
    assert isinstance(build(["bn"], SHAPE)[0], nn.BatchNorm2d)
    assert isinstance(build(["flatten", "bn"], SHAPE)[0 + 1], nn.BatchNorm1d)


def test_mlp_spec():
    assert mlp([100], classes=10) == ["flatten", "linear 100", "relu", "linear 10"]
    assert mlp([64, 32], dropout=[0.5, 0], softmax_last=True, classes=10) == [
        "flatten", "linear 64", "relu", "dropout 0.5", "linear 32", "relu", "linear 10", "softmax"]
    assert count_parameters(build(mlp([100], classes=10), SHAPE)) == 784 * 100 + 100 + 100 * 10 + 10
    with pytest.raises(SpecError, match="2 dropout values for 1 hidden layers"):
        mlp([10], dropout=[0.1, 0.2], classes=10)
    with pytest.raises(SpecError, match=r"dropout probability must be in \[0, 1\], got -0.5"):
        mlp([10, 10], dropout=[0.1, -0.5], classes=10)


KNOWN = {"flatten", "linear", "relu", "sigmoid", "tanh", "softmax", "dropout", "conv", "bn",
         "maxpool", "avgpool"}
IMAGE = (1, 8, 8)


def assert_names_token(token, spec=None, input_shape=IMAGE):
    with pytest.raises(SpecError) as info:
        build(spec if spec is not None else [token], input_shape=input_shape)
    assert repr(token) in str(info.value), str(info.value)
    return str(info.value)


@FAST
@given(name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,11}", fullmatch=True).filter(lambda s: s.lower() not in KNOWN),
       args=st.lists(st.integers(0, 9).map(str), max_size=2))
def test_unknown_layer_is_named(name, args):
    token = " ".join([name, *args])
    msg = assert_names_token(token)
    assert f"unknown layer {name.lower()!r}" in msg and "known: flatten" in msg


numbers_that_are_not_ints = st.one_of(
    st.from_regex(r"[a-z]{1,5}", fullmatch=True),
    st.floats(allow_nan=True, allow_infinity=True).map(repr).filter(lambda s: "." in s or "n" in s),
    st.sampled_from(["1e3", "0x10", "--1", "3,5", "½"]))


@FAST
@given(bad=numbers_that_are_not_ints, where=st.sampled_from(["linear {}", "conv {} 3", "conv 4 {}",
                                                              "maxpool {}", "avgpool {}",
                                                              "conv 4 3 s={}", "conv 4 3 p={}",
                                                              "maxpool 2 s={}", "avgpool 2 p={}"]))
def test_bad_integer_is_named(bad, where):
    token = where.format(bad)
    spec = ["flatten", token] if token.startswith("linear") else [token]
    msg = assert_names_token(token, spec)
    assert "is not a valid int" in msg and repr(bad) in msg


@FAST
@given(p=st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001), st.just(float("nan")),
                   st.just(float("inf"))))
def test_dropout_out_of_range_is_named(p):
    token = f"dropout {p!r}"
    assert "dropout probability must be in [0, 1]" in assert_names_token(token)


@FAST
@given(token=st.sampled_from(["flatten 1", "relu 2", "bn 3", "softmax 1", "linear", "linear 3 4",
                              "dropout", "dropout 0.1 0.2", "conv 4", "conv 4 3 3", "maxpool",
                              "maxpool 2 2"]))
def test_wrong_number_of_arguments_is_named(token):
    spec = ["flatten", token] if token.startswith("linear") else [token]
    assert "argument(s)" in assert_names_token(token, spec)


@FAST
@given(layer=st.sampled_from(["conv 4 3", "maxpool 2", "avgpool 2", "relu", "linear 3"]),
       key=st.from_regex(r"[a-z]{1,4}", fullmatch=True).filter(lambda k: k not in {"s", "p", "d", "bias"}))
def test_unknown_option_is_named(layer, key):
    token = f"{layer} {key}=1"
    spec = ["flatten", token] if layer.startswith("linear") else [token]
    assert f"unknown option(s) ['{key}']" in assert_names_token(token, spec)


@pytest.mark.parametrize("spec, token, words", [
    (["linear 10"], "linear 10", "needs a vector input"),
    (["flatten", "linear 0"], "linear 0", "at least one output"),
    (["flatten", "linear -3"], "linear -3", "at least one output"),
    (["flatten", "conv 4 3"], "conv 4 3", "needs an image input"),
    (["flatten", "maxpool 2"], "maxpool 2", "needs an image input"),
    (["conv 4 9"], "conv 4 9", "does not fit input shape (1, 8, 8)"),
    (["conv 4 3 d=4"], "conv 4 3 d=4", "does not fit"),
    (["conv 0 3"], "conv 0 3", "out_channels must be at least 1"),
    (["conv 4 0"], "conv 4 0", "must be at least 1"),
    (["conv 4 3 s=0"], "conv 4 3 s=0", "must be at least 1"),
    (["conv 4 3 p=-1"], "conv 4 3 p=-1", "padding"),
    (["conv 4 3 bias=maybe"], "conv 4 3 bias=maybe", "bias must be 0, 1, false or true"),
    (["maxpool 3 p=2"], "maxpool 3 p=2", "at most half the kernel"),
    (["maxpool 2", "maxpool 2", "maxpool 2", "maxpool 2"], "maxpool 2", "does not fit input shape (1, 1, 1)"),
    (["  "], "  ", "non-empty string"),
    ([""], "", "non-empty string"),
    ([3], 3, "non-empty string"),
    ([None], None, "non-empty string"),
])
def test_misfit_or_malformed_layers_are_named(spec, token, words):
    assert words in assert_names_token(token, spec)


def test_one_string_is_not_a_spec():
    with pytest.raises(SpecError, match="list of layer tokens"):
        build("flatten linear 10", SHAPE)


@FAST
@given(token=st.text(max_size=20))
def test_any_text_builds_or_raises_a_spec_error_naming_it(token):
    try:
        build(["flatten", token], input_shape=(1, 4, 4))
    except SpecError as exc:
        assert repr(token) in str(exc)
