"""Convolution arithmetic as code: output shapes, parameter counts, receptive fields.

The formulas follow PyTorch's documentation of ``nn.Conv2d`` and ``nn.MaxPool2d``
(floor mode) and Dumoulin & Visin (2016): along one axis,

    out = floor((in + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class ShapeError(ValueError):
    """A layer configuration that produces no output (or is nonsensical)."""


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(x, int) for x in v):
        raise ShapeError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v  # type: ignore[return-value]


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                dilation: int = 1) -> int:
    """Output length along one axis of a convolution or pooling window.

    Args:
        size: input length along the axis.
        kernel: window length.
        stride: step between neighbouring windows.
        padding: zeros added on each side.
        dilation: spacing between the window's taps.

    Returns:
        ``floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1``, at least 1.

    Raises:
        ShapeError: a non-positive kernel/stride/dilation, negative padding, or a window
            that does not fit into the padded input (which would give a size below 1).
    """
    if kernel < 1 or stride < 1 or dilation < 1:
        raise ShapeError(f"kernel ({kernel}), stride ({stride}) and dilation ({dilation}) "
                         "must be at least 1")
    if padding < 0 or size < 1:
        raise ShapeError(f"input size ({size}) must be >= 1 and padding ({padding}) >= 0")
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ShapeError(f"the window spans {span} pixels but the padded input is only "
                         f"{size + 2 * padding}: use a smaller kernel or dilation, or more padding")
    return (size + 2 * padding - span) // stride + 1


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """The zeros to add before and after one axis so that a convolution keeps ``ceil(size / stride)``
    outputs: "same" padding for any stride, as TensorFlow defines it.

    The total is what the last window needs to reach the end of the input,
    ``max((ceil(size / stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)``; the
    smaller half goes before (top or left) and the rest after, which is also how PyTorch's
    ``padding="same"`` splits an odd total at stride 1. PyTorch refuses ``padding="same"`` for
    strides above 1; pad explicitly (``F.pad`` with these two numbers) instead.

    Args:
        size: input length along the axis.
        kernel: window length.
        stride: step between neighbouring windows.
        dilation: spacing between the window's taps.

    Returns:
        ``(before, after)``.

    Raises:
        ShapeError: a size, kernel, stride or dilation below 1.
    """
    if size < 1 or kernel < 1 or stride < 1 or dilation < 1:
        raise ShapeError(f"size ({size}), kernel ({kernel}), stride ({stride}) and dilation "
                         f"({dilation}) must be at least 1")
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def conv_output_shape(input_shape: Sequence[int], out_channels: int, kernel: int | Sequence[int],
                      stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                      dilation: int | Sequence[int] = 1) -> tuple[int, int, int]:
    """Shape ``(C_out, H_out, W_out)`` of ``nn.Conv2d`` applied to ``(C_in, H, W)``.

    Args:
        input_shape: ``(C_in, H, W)`` of one input (no batch axis).
        out_channels: number of filters.
        kernel, stride, padding, dilation: an int, or a pair ``(height, width)``.

    Returns:
        ``(out_channels, H_out, W_out)``.

    Raises:
        ShapeError: a malformed shape, fewer than one filter, or a window that does not fit
            (see :func:`output_size`).
    """
    if len(input_shape) != 3:
        raise ShapeError(f"input shape must be (channels, height, width), got {tuple(input_shape)}")
    if out_channels < 1:
        raise ShapeError(f"out_channels must be at least 1, got {out_channels}")
    k, s, p, d = (_pair(kernel, "kernel"), _pair(stride, "stride"), _pair(padding, "padding"),
                  _pair(dilation, "dilation"))
    _, h, w = input_shape
    return (out_channels, output_size(h, k[0], s[0], p[0], d[0]),
            output_size(w, k[1], s[1], p[1], d[1]))


def pool_output_shape(input_shape: Sequence[int], kernel: int | Sequence[int],
                      stride: int | Sequence[int] | None = None,
                      padding: int | Sequence[int] = 0,
                      dilation: int | Sequence[int] = 1) -> tuple[int, ...]:
    """Shape after ``nn.MaxPool2d``/``nn.AvgPool2d`` (floor mode); stride defaults to kernel.

    Args:
        input_shape: any shape ending in ``(H, W)``; leading axes are kept.
        kernel, stride, padding, dilation: an int or a pair (``AvgPool2d`` has no dilation).

    Returns:
        The input shape with ``H`` and ``W`` replaced by the pooled sizes.

    Raises:
        ShapeError: padding above half the kernel (PyTorch refuses it), or a window that does
            not fit (see :func:`output_size`).
    """
    k = _pair(kernel, "kernel")
    s = k if stride is None else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if len(input_shape) < 2:
        raise ShapeError(f"input shape must end with (height, width), got {tuple(input_shape)}")
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ShapeError(f"pool padding {p} must be at most half the kernel {k}")
    *lead, h, w = input_shape
    return (*lead, output_size(h, k[0], s[0], p[0], d[0]), output_size(w, k[1], s[1], p[1], d[1]))


def conv_params(in_channels: int, out_channels: int, kernel: int | Sequence[int],
                bias: bool = True, groups: int = 1) -> int:
    """Learnable parameters of a Conv2d: ``C_out * (C_in/groups) * kh * kw`` (+ ``C_out``).

    Args:
        in_channels: channels of the input.
        out_channels: number of filters.
        kernel: an int or a pair ``(kh, kw)``.
        bias: one bias per filter.
        groups: channel groups (1 for an ordinary convolution).

    Returns:
        The number of weights plus biases.

    Raises:
        ShapeError: non-positive sizes or groups, or channels not divisible by groups.
    """
    kh, kw = _pair(kernel, "kernel")
    if groups < 1:
        raise ShapeError(f"groups must be at least 1, got {groups}")
    if in_channels < 1 or out_channels < 1 or kh < 1 or kw < 1:
        raise ShapeError(f"channels ({in_channels}, {out_channels}) and kernel ({kh}, {kw}) "
                         "must be at least 1")
    if in_channels % groups or out_channels % groups:
        raise ShapeError(f"channels ({in_channels}, {out_channels}) must divide by groups {groups}")
    return out_channels * (in_channels // groups) * kh * kw + (out_channels if bias else 0)


@dataclass(frozen=True)
class Window:
    """One sliding-window layer for receptive-field arithmetic."""
    kernel: int
    stride: int = 1
    dilation: int = 1


def receptive_field(layers: Sequence[Window]) -> tuple[int, int]:
    """Receptive field (pixels) and jump (input pixels between neighbouring outputs) of a stack.

    Args:
        layers: the sliding-window layers in order (see :func:`windows`).

    Returns:
        ``(rf, jump)``: one output of the last layer depends on an ``rf x rf`` square of
        input pixels (its extent: dilated windows leave gaps inside it), and neighbouring
        outputs are ``jump`` input pixels apart.
    """
    rf, jump = 1, 1
    for layer in layers:
        rf += (layer.dilation * (layer.kernel - 1)) * jump
        jump *= layer.stride
    return rf, jump


def windows(model) -> list[Window]:
    """The sliding-window layers of a model, in order, for :func:`receptive_field`.

    Args:
        model: an ``nn.Module``; its ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d`` leaves are
            read in module order (square windows only); every other layer is pointwise or
            flattens and does not change the receptive field before it.

    Returns:
        One :class:`Window` per sliding-window layer.

    Raises:
        ShapeError: a window whose height and width differ.
    """
    from torch import nn

    found = []
    for layer in model.modules():
        if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            continue
        dilation = getattr(layer, "dilation", 1)
        k, s, d = (_pair(v, name) for v, name in
                   ((layer.kernel_size, "kernel"), (layer.stride, "stride"), (dilation, "dilation")))
        if k[0] != k[1] or s[0] != s[1] or d[0] != d[1]:
            raise ShapeError(f"{layer!r} has a non-square window; receptive_field handles square ones")
        found.append(Window(k[0], s[0], d[0]))
    return found


def measure_conv(input_shape: Sequence[int], out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, bias: bool = True) -> tuple[tuple[int, ...], int]:
    """Output shape and parameter count of a real ``nn.Conv2d``, found by running it.

    This is the independent check of :func:`conv_output_shape` and :func:`conv_params`.

    Args:
        input_shape: ``(C_in, H, W)`` of one input.
        out_channels, kernel, stride, padding, dilation, bias: as for ``nn.Conv2d``.

    Returns:
        ``(C_out, H_out, W_out)`` of the output tensor and the number of parameters.
    """
    import torch
    from torch import nn

    layer = nn.Conv2d(input_shape[0], out_channels, kernel, stride=stride, padding=padding,
                      dilation=dilation, bias=bias)
    with torch.no_grad():
        out = layer(torch.zeros(1, *input_shape))
    return tuple(out.shape[1:]), sum(p.numel() for p in layer.parameters())


def configuration_table(input_shape: Sequence[int], out_channels: int,
                        configs: Sequence[dict]):
    """Output shape and parameters of several Conv2d configurations, by formula and by PyTorch.

    Args:
        input_shape: ``(C_in, H, W)``.
        out_channels: filters of every configuration.
        configs: dicts with keys ``kernel`` and optionally ``stride``, ``padding``,
            ``dilation`` and ``bias``.

    Returns:
        A ``pandas.DataFrame``, one row per configuration (numbered from 1): its settings,
        the output shape ``C×H×W`` and parameter count from the formulas, and whether
        ``nn.Conv2d`` agrees (``PyTorch agrees``).
    """
    import pandas as pd

    rows = []
    for c in configs:
        k, s, p, d = c["kernel"], c.get("stride", 1), c.get("padding", 0), c.get("dilation", 1)
        bias = c.get("bias", True)
        shape = conv_output_shape(input_shape, out_channels, k, s, p, d)
        params = conv_params(input_shape[0], out_channels, k, bias)
        torch_shape, torch_params = measure_conv(input_shape, out_channels, k, s, p, d, bias)
        rows.append({"kernel": k, "stride": s, "padding": p, "dilation": d, "bias": "yes" if bias else "no",
                     "output": "×".join(map(str, shape)), "parameters": params,
                     "PyTorch agrees": "yes" if (torch_shape, torch_params) == (shape, params) else "NO"})
    return pd.DataFrame(rows, index=range(1, len(rows) + 1))


def layer_report(input_shape: Sequence[int], out_channels: int, kernel: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1) -> dict[str, int | str | bool]:
    """Everything about one Conv2d layer, by formula and checked against ``nn.Conv2d``.

    Args:
        input_shape: ``(C_in, H, W)``.
        out_channels, kernel, stride, padding, dilation: as for ``nn.Conv2d``.

    Returns:
        ``weights_per_filter`` (``C_in * k * k``), ``params`` and ``params_no_bias`` (formula),
        ``output`` (``"C×H×W"``) and ``output_hwc`` (``"H×W×C"``, the problem set's order),
        ``torch_params``, ``torch_params_no_bias`` and ``torch_output`` (from PyTorch),
        ``agrees`` (all three pairs equal), and ``dense_params``: the parameters a fully
        connected layer with the same input and output sizes would need.
    """
    c_in, h, w = input_shape
    shape = conv_output_shape(input_shape, out_channels, kernel, stride, padding, dilation)
    params, params_nb = conv_params(c_in, out_channels, kernel), conv_params(c_in, out_channels, kernel, False)
    t_shape, t_params = measure_conv(input_shape, out_channels, kernel, stride, padding, dilation)
    _, t_params_nb = measure_conv(input_shape, out_channels, kernel, stride, padding, dilation, bias=False)
    n_in, n_out = c_in * h * w, shape[0] * shape[1] * shape[2]
    return {"weights_per_filter": c_in * kernel * kernel, "params": params, "params_no_bias": params_nb,
            "output": "×".join(map(str, shape)), "output_hwc": "×".join(map(str, (*shape[1:], shape[0]))),
            "torch_params": t_params, "torch_params_no_bias": t_params_nb,
            "torch_output": "×".join(map(str, t_shape)),
            "agrees": bool(t_shape == shape and t_params == params and t_params_nb == params_nb),
            "dense_params": n_in * n_out + n_out}
