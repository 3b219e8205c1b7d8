"""Backpropagation through pooling and convolution, written out by hand and checked.

Every backward pass here is plain NumPy, coded from its equation in the book (no autograd):

* :func:`max_pool_backward`: the output gradient of each window goes to the window's
  arg-max only (on a tie, to the first tied cell in reading order, as PyTorch's CPU kernel
  does); overlapping windows add up.
* :func:`avg_pool_backward`: the output gradient of each window is spread evenly, ``1/k^2``
  to each of its cells.
* :func:`conv_weight_grad`, :func:`conv_bias_grad` and :func:`conv_input_grad`: the weight
  gradient is a cross-correlation of the input with the output gradient; the input gradient
  is a "full" cross-correlation of the (stride-dilated) output gradient with the flipped
  kernel, i.e. a transposed convolution.

:func:`pool_backward_check` and :func:`conv_backward_check` compare them with PyTorch's
autograd in float64; :func:`argmax_moves` measures how often pixel noise changes which cell
of a max-pooling window receives the gradient.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _windows(size: int, kernel: int, stride: int) -> range:
    """Start of every window along one axis (floor mode, no padding)."""
    return range(0, size - kernel + 1, stride)


def max_pool_backward(x: np.ndarray, grad_out: np.ndarray, kernel: int, stride: int | None = None) -> np.ndarray:
    """Gradient of a loss with respect to the input of a max pooling, by routing.

    Args:
        x: the pooling's input ``(N, C, H, W)``.
        grad_out: the loss's gradient with respect to the pooled output.
        kernel: window side length.
        stride: step between windows (default: ``kernel``).

    Returns:
        ``(N, C, H, W)``: for every window, its output gradient added at the position of its
        maximum (the first maximum in reading order when several cells tie), zero elsewhere.
    """
    stride = stride or kernel
    n, c, h, w = x.shape
    grad = np.zeros_like(x, dtype=np.float64)
    rows, cols = np.indices((n, c))
    for i, top in enumerate(_windows(h, kernel, stride)):
        for j, left in enumerate(_windows(w, kernel, stride)):
            window = x[:, :, top:top + kernel, left:left + kernel].reshape(n, c, -1)
            first = window.argmax(axis=2)  # NumPy returns the first maximum
            grad[rows, cols, top + first // kernel, left + first % kernel] += grad_out[:, :, i, j]
    return grad


def avg_pool_backward(shape: tuple[int, ...], grad_out: np.ndarray, kernel: int,
                      stride: int | None = None) -> np.ndarray:
    """Gradient with respect to the input of an average pooling: each window's output
    gradient divided by ``kernel**2`` and added to every cell of the window.

    Args:
        shape: the input's shape ``(N, C, H, W)`` (the values do not matter: the layer is linear).
        grad_out: the gradient with respect to the pooled output.
        kernel, stride: as for :func:`max_pool_backward`.
    """
    stride = stride or kernel
    grad = np.zeros(shape, dtype=np.float64)
    for i, top in enumerate(_windows(shape[2], kernel, stride)):
        for j, left in enumerate(_windows(shape[3], kernel, stride)):
            grad[:, :, top:top + kernel, left:left + kernel] += grad_out[:, :, i, j, None, None] / kernel**2
    return grad


def correlate(x: np.ndarray, w: np.ndarray, stride: int = 1) -> np.ndarray:
    """The multichannel cross-correlation of the conv chapter, without bias or padding:
    ``out[n, o, i, j] = sum over c, u, v of w[o, c, u, v] * x[n, c, s*i + u, s*j + v]``."""
    kh, kw = w.shape[2:]
    oh, ow = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for u in range(kh):
        for v in range(kw):
            patch = x[:, :, u:u + stride * (oh - 1) + 1:stride, v:v + stride * (ow - 1) + 1:stride]
            out += np.einsum("ncij,oc->noij", patch, w[:, :, u, v])
    return out


def conv_weight_grad(x: np.ndarray, grad_out: np.ndarray, kernel: int, stride: int = 1,
                     padding: int = 0) -> np.ndarray:
    """``dL/dw[o, c, u, v] = sum over n, i, j of grad_out[n, o, i, j] * xp[n, c, s*i + u, s*j + v]``,
    with ``xp`` the zero-padded input: a cross-correlation of the input with the output
    gradient (summed over the batch), one tap ``(u, v)`` at a time.

    Returns:
        ``(C_out, C_in, kernel, kernel)``.
    """
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = grad_out.shape[2:]
    grad = np.zeros((grad_out.shape[1], x.shape[1], kernel, kernel))
    for u in range(kernel):
        for v in range(kernel):
            patch = xp[:, :, u:u + stride * (oh - 1) + 1:stride, v:v + stride * (ow - 1) + 1:stride]
            grad[:, :, u, v] = np.einsum("noij,ncij->oc", grad_out, patch)
    return grad


def conv_bias_grad(grad_out: np.ndarray) -> np.ndarray:
    """``dL/db[o]``: the output gradient summed over the batch and every position."""
    return grad_out.sum(axis=(0, 2, 3))


def dilate(grad_out: np.ndarray, stride: int) -> np.ndarray:
    """Insert ``stride - 1`` zeros between neighbouring entries along height and width."""
    n, o, h, w = grad_out.shape
    out = np.zeros((n, o, (h - 1) * stride + 1, (w - 1) * stride + 1))
    out[:, :, ::stride, ::stride] = grad_out
    return out


def conv_input_grad(grad_out: np.ndarray, w: np.ndarray, input_size: tuple[int, int], stride: int = 1,
                    padding: int = 0) -> np.ndarray:
    """Gradient with respect to a convolution's input, as a full correlation with the flipped kernel.

    The output gradient is dilated by the stride, padded with ``kernel - 1`` zeros on every
    side, and cross-correlated with the kernel flipped in both axes and with its input and
    output channels swapped. Rows and columns of the padded input that no window reached
    (when the stride does not divide the span) get zero; the padding is then cut off.

    Args:
        grad_out: ``(N, C_out, H_out, W_out)``.
        w: the weights ``(C_out, C_in, k, k)``.
        input_size: ``(H, W)`` of the unpadded input.
        stride, padding: of the forward convolution.

    Returns:
        ``(N, C_in, H, W)``.
    """
    k = w.shape[-1]
    full = np.pad(dilate(grad_out, stride), ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    reached = correlate(full, flipped)
    h, wd = input_size[0] + 2 * padding, input_size[1] + 2 * padding
    grad = np.zeros((grad_out.shape[0], w.shape[1], h, wd))
    grad[:, :, :reached.shape[2], :reached.shape[3]] = reached
    return grad[:, :, padding:h - padding, padding:wd - padding]


def _random(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64)


def conv_backward_check(configs: tuple[tuple[int, int], ...] = ((1, 0), (1, 1), (2, 1), (3, 2)),
                        seed: int = 0) -> dict[str, float]:
    """The hand-written convolution gradients against autograd, in float64.

    A random batch of 2 images of 3 channels, 9x9, goes through 4 random 3x3 filters with
    each ``(stride, padding)`` of ``configs``; the loss is the sum of the outputs times a
    random output gradient, so that autograd's gradients are exactly the ones coded here.

    Returns:
        The largest absolute differences over all configurations: ``weight``, ``bias`` and
        ``input`` (hand against autograd), ``transpose`` (the hand input gradient against
        ``F.conv_transpose2d`` of the output gradient), and ``scale`` (the largest gradient
        entry, for comparison).
    """
    g = torch.Generator().manual_seed(seed)
    diffs = {"weight": 0.0, "bias": 0.0, "input": 0.0, "transpose": 0.0, "scale": 0.0}
    for stride, padding in configs:
        x, w, b = (_random(s, g).requires_grad_() for s in ((2, 3, 9, 9), (4, 3, 3, 3), (4,)))
        y = F.conv2d(x, w, b, stride=stride, padding=padding)
        delta = _random(tuple(y.shape), g)
        (y * delta).sum().backward()
        d = delta.numpy()
        hand = {"weight": conv_weight_grad(x.detach().numpy(), d, 3, stride, padding),
                "bias": conv_bias_grad(d),
                "input": conv_input_grad(d, w.detach().numpy(), (9, 9), stride, padding)}
        for name, auto in (("weight", w.grad), ("bias", b.grad), ("input", x.grad)):
            diffs[name] = max(diffs[name], float(np.abs(hand[name] - auto.numpy()).max()))
            diffs["scale"] = max(diffs["scale"], float(auto.abs().max()))
        transposed = F.conv_transpose2d(delta, w.detach(), stride=stride, padding=padding,
                                        output_padding=(9 + 2 * padding - 3) % stride)
        diffs["transpose"] = max(diffs["transpose"], float(np.abs(hand["input"] - transposed.numpy()).max()))
    return diffs


def _autograd_pool(x: np.ndarray, grad_out: np.ndarray, kind: str, kernel: int, stride: int) -> np.ndarray:
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    pool = F.max_pool2d if kind == "max" else F.avg_pool2d
    (pool(xt, kernel, stride) * torch.tensor(grad_out)).sum().backward()
    return xt.grad.numpy()


def pool_backward_check(seed: int = 0) -> dict[str, float]:
    """The hand-written pooling gradients against autograd, in float64.

    Random ``(2, 3, 8, 8)`` maps (no ties, almost surely) and the four matrices of problems
    3D/3E (full of ties) are pooled with 2x2 windows at stride 2 and 3x3 windows at stride 1
    (overlapping); a random output gradient is passed back.

    Returns:
        The largest absolute differences: ``max_random``, ``max_ties`` (the problem's
        matrices), ``average_random`` and ``average_ties``.
    """
    from nnlab.book.pooling import PROBLEM_MATRICES

    g = np.random.default_rng(seed)
    inputs = {"random": g.standard_normal((2, 3, 8, 8)),
              "ties": PROBLEM_MATRICES.unsqueeze(1).double().numpy()}
    diffs = {}
    for name, x in inputs.items():
        for kind, backward in (("max", max_pool_backward), ("average", None)):
            worst = 0.0
            for kernel, stride in ((2, 2), (3, 1)):
                out = (x.shape[2] - kernel) // stride + 1
                grad_out = g.standard_normal((*x.shape[:2], out, out))
                hand = (backward(x, grad_out, kernel, stride) if backward
                        else avg_pool_backward(x.shape, grad_out, kernel, stride))
                worst = max(worst, float(np.abs(hand - _autograd_pool(x, grad_out, kind, kernel, stride)).max()))
            diffs[f"{kind}_{name}"] = worst
    return diffs


def problem_matrix_gradients(index: int = 0, grad_out: tuple[tuple[float, ...], ...] = ((1, 2), (3, 4))
                             ) -> dict[str, np.ndarray | int]:
    """Gradients through the 2x2, stride-2 pools of one matrix of problems 3D/3E.

    Args:
        index: which of the four matrices.
        grad_out: the gradient arriving at the 2x2 pooled output (distinct values, so the
            picture shows where each one goes).

    Returns:
        ``input`` (4x4), ``grad_out`` (2x2), ``max`` and ``average`` (4x4 gradients by hand),
        ``max_autograd`` (PyTorch's), ``tied_windows`` (windows whose maximum occurs more
        than once) and ``receiving`` (cells that receive a non-zero gradient under max pooling).
    """
    from nnlab.book.pooling import PROBLEM_MATRICES

    x = PROBLEM_MATRICES[index].double().numpy()[None, None]
    d = np.asarray(grad_out, dtype=np.float64)[None, None]
    windows = x[0, 0].reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(4, 4)
    max_grad = max_pool_backward(x, d, 2)
    return {"input": x[0, 0], "grad_out": d[0, 0], "max": max_grad[0, 0],
            "average": avg_pool_backward(x.shape, d, 2)[0, 0],
            "max_autograd": _autograd_pool(x, d, "max", 2, 2)[0, 0],
            "tied_windows": int(((windows == windows.max(1, keepdims=True)).sum(1) > 1).sum()),
            "receiving": int((max_grad != 0).sum())}


@torch.no_grad()
def argmax_moves(images: torch.Tensor, sigmas: tuple[float, ...] = (0.2, 0.4), seed: int = 0) -> dict[str, float]:
    """How often pixel noise changes which cell of a 2x2 max-pooling window gets the gradient.

    The chapter's fixed random convolution (``pooling.fixed_conv``) and a ReLU give 16 maps
    per digit; they are cut into 2x2 windows (stride 2). A window passes a gradient only if
    its maximum is positive (ReLU's derivative is 0 at 0).

    Args:
        images: ``(N, 1, 28, 28)`` in [0, 1].
        sigmas: Gaussian noise levels, added as in the chapter (``pooling.perturb``).
        seed: seeds the noise.

    Returns:
        ``active``: the share of clean windows with a positive maximum; ``tied``: the share
        of all clean windows whose maximum occurs more than once, ``tied_zero``: the share of
        those ties at the value 0; and for each sigma ``moved_{sigma}``: among the clean
        active windows, the share whose arg-max is a different cell on the noisy digit.
    """
    from nnlab.book.pooling import fixed_conv, perturb

    layer = fixed_conv()

    def windows(x: torch.Tensor) -> torch.Tensor:
        maps = F.relu(layer(x))
        n, c, h, w = maps.shape
        cells = maps.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5)
        return cells.reshape(n * c * (h // 2) * (w // 2), 4).T  # (4 cells in reading order, windows)

    clean = windows(images)
    top, where = clean.max(0)
    active = top > 0
    ties = (clean == top).sum(0) > 1
    out = {"active": float(active.double().mean()), "tied": float(ties.double().mean()),
           "tied_zero": float((ties & ~active).double().sum() / ties.double().sum().clamp_min(1))}
    for sigma in sigmas:
        noisy_where = windows(perturb(images, "noise", sigma, seed)).argmax(0)
        out[f"moved_{sigma:g}"] = float((noisy_where != where)[active].double().mean())
    return out
