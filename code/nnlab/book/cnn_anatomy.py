"""The convolution sum written out and checked, and the book's CNN taken apart layer by layer:
receptive field, stride (jump), output shape and cost of every sliding-window layer, and the
row and column its last pooling layer never reads.

The architecture is read from the experiment catalogue (:mod:`nnlab.book.experiments`) and
the stored result's chosen variant, never retyped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from nnlab import conv


def cross_correlation_loops(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The multichannel cross-correlation of one image, by its definition in plain loops:
    ``y[o, i, j] = b[o] + sum_c sum_u sum_v w[o, c, u, v] x[c, i + u, j + v]`` (stride 1,
    no padding).

    Args:
        x: ``(C_in, H, W)``; w: ``(C_out, C_in, k, k)``; b: ``(C_out,)``.
    """
    c_out, c_in, k, _ = w.shape
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    y = torch.zeros(c_out, h, wd, dtype=x.dtype)
    for o in range(c_out):
        for i in range(h):
            for j in range(wd):
                y[o, i, j] = b[o] + sum(w[o, c, u, v] * x[c, i + u, j + v]
                                        for c in range(c_in) for u in range(k) for v in range(k))
    return y


def true_convolution(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Convolution in the mathematical sense, coded from its definition:
    ``(x * w)[i, j] = sum_{u, v} w[u, v] x[i - u, j - v]``, summed over input channels, keeping
    the outputs whose window lies inside the image (``"valid"``, like ``F.conv2d`` without
    padding). Written independently of PyTorch, with no kernel flip in the code.

    Args:
        x: ``(C_in, H, W)``; w: ``(C_out, C_in, k, k)``.

    Returns:
        ``(C_out, H - k + 1, W - k + 1)``.
    """
    c_out, c_in, k, _ = w.shape
    h, wd = x.shape[1:]
    full = np.zeros((c_out, h + k - 1, wd + k - 1))
    for o in range(c_out):
        for i in range(h + k - 1):
            for j in range(wd + k - 1):
                full[o, i, j] = sum(w[o, c, u, v] * x[c, i - u, j - v]
                                    for c in range(c_in) for u in range(k) for v in range(k)
                                    if 0 <= i - u < h and 0 <= j - v < wd)
    return full[:, k - 1:h, k - 1:wd]


def correlation_checks(seed: int = 0) -> dict[str, float]:
    """What ``F.conv2d`` computes, on a random 2-channel 6x6 image and 3 filters of 3x3 (float64).

    Returns:
        ``loops``: largest difference between ``F.conv2d`` and :func:`cross_correlation_loops`;
        ``flipped``: between ``F.conv2d`` with the kernel flipped in both axes and
        :func:`true_convolution`; ``unflipped``: between ``F.conv2d`` with the kernel as given
        and :func:`true_convolution` (large: they are different operations).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 6, generator=g, dtype=torch.float64)
    w = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    torch_out = F.conv2d(x[None], w, b)[0]
    reference = torch.from_numpy(true_convolution(x.numpy(), w.numpy()))
    flipped = F.conv2d(x[None], w.flip(-1, -2))[0]
    return {"loops": float((torch_out - cross_correlation_loops(x, w, b)).abs().max()),
            "flipped": float((flipped - reference).abs().max()),
            "unflipped": float((torch_out - b[:, None, None] - reference).abs().max())}


def book_cnn(name: str = "cnn-final") -> tuple[nn.Module, tuple[str, ...], tuple[int, int, int]]:
    """The chosen variant of a stored CNN experiment, built untrained: ``(model, spec,
    input_shape)``."""
    from nnlab import results as store
    from nnlab.book import experiments
    from nnlab.models import build

    exp = experiments.get(name)
    chosen = store.chosen_variant(name)
    spec = next(v.spec for v in exp.variants if v.name == chosen)
    return build(spec, exp.data.input_shape), tuple(spec), (1, 28, 28)


def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> pd.DataFrame:
    """One row per convolution, pooling and linear layer of ``model``, in order.

    Columns: ``layer``, ``in → out`` shape, ``kernel/stride``, ``receptive field`` (pixels of
    the input one output depends on), ``jump`` (input pixels between neighbouring outputs),
    ``MACs`` (multiply-accumulates for one image: ``C_out H_out W_out C_in k^2`` for a
    convolution, ``n_in n_out`` for a linear layer, 0 for pooling) and ``parameters``.
    """
    rows, x, windows = [], torch.zeros(1, *input_shape), []
    for layer in model.children() if isinstance(model, nn.Sequential) else [model]:
        y = layer(x)
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)):
            if isinstance(layer, nn.Linear):
                kind, ks, macs = "linear", "–", layer.in_features * layer.out_features
                rf, jump = conv.receptive_field(windows) if windows else (1, 1)
                rf = "whole image"
            else:
                windows += conv.windows(layer)
                rf, jump = conv.receptive_field(windows)
                w = windows[-1]
                ks = f"{w.kernel}/{w.stride}"
                if isinstance(layer, nn.Conv2d):
                    kind = "conv"
                    macs = y[0].numel() * layer.in_channels * w.kernel**2 // layer.groups
                else:
                    kind, macs = "max pool" if isinstance(layer, nn.MaxPool2d) else "avg pool", 0
            shape = lambda t: "×".join(str(d) for d in t.shape[1:])  # noqa: E731
            rows.append({"layer": f"{len(rows) + 1}. {kind}", "in → out": f"{shape(x)} → {shape(y)}",
                         "kernel/stride": ks, "receptive field": rf, "jump": jump, "MACs": macs,
                         "parameters": sum(p.numel() for p in layer.parameters())})
        x = y
    return pd.DataFrame(rows)


def measured_flops(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """FLOPs of one forward pass of one image as PyTorch's ``FlopCounterMode`` counts them
    (two per multiply-accumulate of convolutions and matrix products), an independent check
    of :func:`layer_table`'s ``MACs``."""
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    return int(counter.get_total_flops())


def last_pool_facts(model: nn.Module, input_shape: tuple[int, int, int], seed: int = 0) -> dict:
    """What the last pooling layer of ``model`` reads of its input.

    A 2x2, stride-2 pool with floor rounding on an odd side ``n`` has ``n // 2`` windows, which
    cover rows and columns ``0 .. 2 (n // 2) - 1``: the last row and column are never read.
    The check feeds the pool a random map, then the same map with its unread row and column
    replaced by large random values, and compares the outputs.

    Returns:
        ``in_size``, ``out_size``, ``unread`` (positions never read per channel), ``positions``,
        ``unread_share`` and ``max_change`` (largest output difference of the check; 0 when
        the row and column are really ignored).
    """
    pools = [m for m in model.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    last = pools[-1]
    x = torch.zeros(1, *input_shape)
    captured = {}
    hook = last.register_forward_hook(lambda m, i, o: captured.update(inp=i[0], out=o))
    with torch.no_grad():
        model.eval()(x)
    hook.remove()
    n, m = captured["inp"].shape[-1], captured["out"].shape[-1]
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(captured["inp"].shape, generator=g)
    b = a.clone()
    covered = (m - 1) * conv._pair(last.stride, "stride")[0] + conv._pair(last.kernel_size, "kernel")[0]
    b[..., covered:, :] = 100 * torch.randn(b[..., covered:, :].shape, generator=g)
    b[..., :, covered:] = 100 * torch.randn(b[..., :, covered:].shape, generator=g)
    unread = n * n - covered * covered
    return {"in_size": n, "out_size": m, "covered": covered, "unread": unread, "positions": n * n,
            "unread_share": unread / (n * n), "max_change": float((last(a) - last(b)).abs().max())}


def last_pool_fields(model: nn.Module, input_shape: tuple[int, int, int]) -> dict:
    """Where the receptive fields of the last sliding-window layer's outputs lie on the image,
    along one axis (the layers are square).

    Each layer with padding ``p`` moves the first field's start by ``-p`` times the jump before
    it. Returns ``rf`` (field width), ``jump``, ``outputs`` (per side), ``spans`` (first and last
    input row of each output's field, padding included: negative or beyond the image),
    ``inside`` (rows of the image in each field) and ``centre``: the middle output's span.
    """
    layers = [layer for layer in model.children() if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    start, rf, jump = 0, 1, 1
    for layer in layers:
        (w,) = conv.windows(layer)
        pad = layer.padding[0] if isinstance(layer.padding, tuple) else layer.padding
        start -= pad * jump
        rf += w.dilation * (w.kernel - 1) * jump
        jump *= w.stride
    size = input_shape[-1]
    outputs, x = 0, torch.zeros(1, *input_shape)
    for layer in model.children():
        x = layer(x)
        if layer is layers[-1]:
            outputs = int(x.shape[-1])
            break
    spans = [(start + i * jump, start + i * jump + rf - 1) for i in range(outputs)]
    inside = [min(hi, size - 1) - max(lo, 0) + 1 for lo, hi in spans]
    return {"rf": rf, "jump": jump, "outputs": outputs, "spans": spans, "inside": inside,
            "centre": spans[outputs // 2], "size": size}


def scale_invariant_weights(model: nn.Module) -> dict[str, int]:
    """Which of ``model``'s parameters the loss ignores the scale of.

    A convolution or linear layer followed directly by batch norm gives the same output when its
    weights (and bias) are multiplied by any ``c > 0``: batch norm divides the scale out again
    (up to its ε). An L2 penalty on such weights shrinks their norm without constraining the
    function; it only changes the effective step size. Returns ``parameters`` (all),
    ``invariant`` (those in such layers) and ``other``.
    """
    children = list(model.children()) if isinstance(model, nn.Sequential) else [model]
    invariant = sum(p.numel() for layer, nxt in zip(children, children[1:])
                    if isinstance(layer, (nn.Conv2d, nn.Linear))
                    and isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d))
                    for p in layer.parameters())
    total = sum(p.numel() for p in model.parameters())
    return {"parameters": total, "invariant": invariant, "other": total - invariant}


def mac_shares(model: nn.Module, input_shape: tuple[int, int, int]) -> dict[str, float]:
    """Shares (in %) of one image's multiply-accumulates (:func:`layer_table`): ``head``, all
    linear layers together, and ``top_conv``, the costliest single convolution."""
    layers = layer_table(model, input_shape)
    total = layers["MACs"].sum()
    convs = layers[layers["layer"].str.contains("conv")]
    return {"head": float(100 * layers[layers["layer"].str.contains("linear")]["MACs"].sum() / total),
            "top_conv": float(100 * convs["MACs"].max() / total)}
