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


def conv_output_shape(input_shape: Sequence[int], out_channels: int, kernel: int | Sequence[int],
                      stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                      dilation: int | Sequence[int] = 1) -> tuple[int, int, int]:
    """Shape ``(C_out, H_out, W_out)`` of ``nn.Conv2d`` applied to ``(C_in, H, W)``."""
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
    """Shape after ``nn.MaxPool2d``/``nn.AvgPool2d`` (floor mode); stride defaults to kernel."""
    k = _pair(kernel, "kernel")
    s = k if stride is None else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ShapeError(f"pool padding {p} must be at most half the kernel {k}")
    *lead, h, w = input_shape
    return (*lead, output_size(h, k[0], s[0], p[0], d[0]), output_size(w, k[1], s[1], p[1], d[1]))


def conv_params(in_channels: int, out_channels: int, kernel: int | Sequence[int],
                bias: bool = True, groups: int = 1) -> int:
    """Learnable parameters of a Conv2d: ``C_out * (C_in/groups) * kh * kw`` (+ ``C_out``)."""
    kh, kw = _pair(kernel, "kernel")
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
    """Receptive field (pixels) and jump (input pixels between neighbouring outputs) of a stack."""
    rf, jump = 1, 1
    for layer in layers:
        rf += (layer.dilation * (layer.kernel - 1)) * jump
        jump *= layer.stride
    return rf, jump
