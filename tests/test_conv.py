"""nnlab.conv against PyTorch: output shapes, parameter counts and receptive fields.

The references are independent of the formulas: real ``nn.Conv2d``/``nn.MaxPool2d``/
``nn.AvgPool2d`` layers run on random configurations (valid and invalid), and receptive
fields measured with autograd as the input pixels that a single output depends on.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

from nnlab import conv
from nnlab.models import build

PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHAPE = (1, 28, 28)  # one MNIST-shaped input, without the batch axis
PARAM_WORDS = ("kernel", "stride", "padding", "dilation", "input", "channels", "groups", "window", "pool")


def torch_output(layer_factory, input_shape) -> tuple[int, ...] | None:
    """Shape of a real layer's output (no batch axis), or None where PyTorch refuses or
    returns an empty tensor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-element initialisation warns; not our subject
        try:
            layer = layer_factory()
            out = layer(torch.zeros(1, *input_shape))
        except (RuntimeError, ValueError):
            event("PyTorch refuses")
            return None
    shape = tuple(out.shape[1:])
    valid = min(shape) >= 1
    event("PyTorch computes an output" if valid else "PyTorch refuses")
    return shape if valid else None


def assert_clear_refusal(exc: conv.ShapeError) -> None:
    message = str(exc).lower()
    assert any(word in message for word in PARAM_WORDS), f"unclear message: {exc}"
    assert any(ch.isdigit() for ch in message), f"message quotes no value: {exc}"


small = st.integers(min_value=1, max_value=12)


def mostly(valid: range, invalid: list[int]) -> st.SearchStrategy[int]:
    """Values from ``valid``, with an occasional invalid one (about one draw in ten)."""
    return st.sampled_from(invalid + list(valid) * (3 * len(invalid) + 2) if invalid else list(valid))


@PROPERTY
@given(c_in=st.integers(1, 3), c_out=mostly(range(1, 5), [0]), h=small, w=small,
       kh=mostly(range(1, 7), [0]), kw=mostly(range(1, 7), [0]), stride=mostly(range(1, 5), [0]),
       padding=mostly(range(0, 5), [-1]), dilation=mostly(range(1, 4), [0]), bias=st.booleans())
def test_conv_shape_and_params_match_nn_conv2d(c_in, c_out, h, w, kh, kw, stride, padding, dilation, bias):
    expected = torch_output(lambda: nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding,
                                              dilation=dilation, bias=bias), (c_in, h, w))
    if expected is None:
        with pytest.raises(conv.ShapeError) as info:
            conv.conv_output_shape((c_in, h, w), c_out, (kh, kw), stride, padding, dilation)
        assert_clear_refusal(info.value)
        return
    assert conv.conv_output_shape((c_in, h, w), c_out, (kh, kw), stride, padding, dilation) == expected
    layer = nn.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding, dilation=dilation, bias=bias)
    assert conv.conv_params(c_in, c_out, (kh, kw), bias) == sum(p.numel() for p in layer.parameters())


@PROPERTY
@given(kind=st.sampled_from(["max", "avg"]), channels=st.integers(1, 3), h=small, w=small,
       kernel=mostly(range(1, 6), [0]), stride=st.one_of(st.none(), mostly(range(1, 5), [0])),
       padding=mostly(range(0, 4), [-1]), dilation=mostly(range(1, 4), [0]))
def test_pool_shape_matches_nn_pooling(kind, channels, h, w, kernel, stride, padding, dilation):
    if kind == "avg":
        dilation = 1  # AvgPool2d has no dilation

        def factory():
            return nn.AvgPool2d(kernel, stride=stride, padding=padding)
    else:
        def factory():
            return nn.MaxPool2d(kernel, stride=stride, padding=padding, dilation=dilation)
    expected = torch_output(factory, (channels, h, w))
    if expected is None:
        with pytest.raises(conv.ShapeError) as info:
            conv.pool_output_shape((channels, h, w), kernel, stride, padding, dilation)
        assert_clear_refusal(info.value)
        return
    assert conv.pool_output_shape((channels, h, w), kernel, stride, padding, dilation) == expected


@PROPERTY
@given(c_in=st.integers(1, 8), c_out=st.integers(1, 8), groups=st.integers(0, 4),
       kernel=st.integers(1, 4), bias=st.booleans())
def test_grouped_conv_params_match_nn_conv2d(c_in, c_out, groups, kernel, bias):
    try:
        layer = nn.Conv2d(c_in, c_out, kernel, groups=groups, bias=bias)
    except ValueError:
        with pytest.raises(conv.ShapeError) as info:
            conv.conv_params(c_in, c_out, kernel, bias, groups)
        assert_clear_refusal(info.value)
        return
    assert conv.conv_params(c_in, c_out, kernel, bias, groups) == sum(p.numel() for p in layer.parameters())


def test_problem_3b_3c_layer():
    """5x5x3 filters, 8 of them, stride 1, no padding, on a 32x32x3 image (problems 3B, 3C)."""
    assert conv.conv_params(3, 8, 5) == 8 * (5 * 5 * 3 + 1) == 608
    assert conv.conv_params(3, 8, 5, bias=False) == 600
    assert conv.conv_output_shape((3, 32, 32), 8, 5) == (8, 28, 28)
    assert conv.measure_conv((3, 32, 32), 8, 5) == ((8, 28, 28), 608)
    table = conv.configuration_table((3, 32, 32), 8, [{"kernel": 5}, {"kernel": 3, "padding": 1},
                                                       {"kernel": 3, "stride": 2, "dilation": 2}])
    assert list(table["PyTorch agrees"]) == ["yes"] * 3


def test_output_size_never_below_one():
    assert conv.output_size(20, 8) == 13  # every 8x8 patch inside a 20x20 image
    assert conv.output_size(20, 8, padding=7) == 27  # every patch that touches the image
    with pytest.raises(conv.ShapeError, match="spans 9 pixels"):
        conv.output_size(8, 9)
    with pytest.raises(conv.ShapeError):
        conv.pool_output_shape((5,), 2)


# ------------------------------------------------------------------ receptive fields

def empirical_receptive_field(layers: list[tuple[str, int, int, int]]) -> tuple[int, int]:
    """Extent of the input pixels that output (0, 0) depends on, and the shift of that set
    between outputs (0, 0) and (0, 1), measured with autograd in float64.

    Pools are measured as average pools: a max pool's gradient reaches only the argmax, but
    its window (which pixels *can* matter) is the same as an average pool's.
    """
    modules: list[nn.Module] = []
    for kind, k, s, d in layers:
        if kind == "conv":
            c = nn.Conv2d(1, 1, k, stride=s, dilation=d, bias=False).double()
            nn.init.ones_(c.weight)
            modules.append(c)
        else:
            modules.append(nn.AvgPool2d(k, stride=s))
    net = nn.Sequential(*modules)
    rf, jump = conv.receptive_field(conv.windows(net))
    size = rf + 2 * jump + 2  # room for at least two outputs along each axis
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    assert out.shape[-1] >= 2
    starts, extents = [], []
    for col in (0, 1):
        (grad,) = torch.autograd.grad(out[0, 0, 0, col], x, retain_graph=True)
        cols = grad[0, 0].abs().sum(0).nonzero().flatten()
        rows = grad[0, 0].abs().sum(1).nonzero().flatten()
        starts.append(int(cols.min()))
        extents.append((int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1))
    assert extents[0] == extents[1]
    (height, width), shift = extents[0], starts[1] - starts[0]
    assert height == width
    return width, shift


layer_strategy = st.one_of(
    st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 2), st.integers(1, 2)),
    st.tuples(st.just("pool"), st.integers(2, 3), st.integers(1, 3), st.just(1)),
)


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(layer_strategy, min_size=1, max_size=4))
def test_receptive_field_matches_gradient(layers):
    windows = [conv.Window(k, s, d) for _, k, s, d in layers]
    assert conv.receptive_field(windows) == empirical_receptive_field(layers)


def test_receptive_field_known_stacks():
    # three stacked 3x3 convolutions see a 7x7 patch (the VGG argument)
    assert conv.receptive_field([conv.Window(3)] * 3) == (7, 1)
    # conv 3, pool 2, conv 3, pool 2: the field grows 3, 4, 8, 10; outputs sit 4 pixels apart
    model = build(["conv 4 3 p=1", "relu", "maxpool 2", "conv 4 3 p=1", "relu", "maxpool 2", "flatten",
                   "linear 10"], SHAPE)
    assert conv.receptive_field(conv.windows(model)) == (10, 4)
    assert conv.receptive_field(conv.windows(model)) == empirical_receptive_field(
        [("conv", 3, 1, 1), ("pool", 2, 2, 1), ("conv", 3, 1, 1), ("pool", 2, 2, 1)])
