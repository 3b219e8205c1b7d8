"""Backpropagation through pooling and convolution by hand (nnlab.book.backward) against
torch autograd, "same" padding at any stride (nnlab.conv.same_padding), padding modes, and
pooling across channels. Everything runs in float64 on small random tensors, in milliseconds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnlab import conv
from nnlab.book import backward, padding, pooling


def _autograd_conv(x, w, b, delta, stride, pad):
    x, w, b = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    (F.conv2d(x, w, b, stride=stride, padding=pad) * torch.tensor(delta)).sum().backward()
    return x.grad.numpy(), w.grad.numpy(), b.grad.numpy()


@pytest.mark.parametrize("seed", range(12))
def test_conv_gradients_match_autograd(seed):
    """Our math (eq-conv-grad-w, eq-conv-grad-x-full) against autograd on random shapes."""
    g = np.random.default_rng(seed)
    k, stride = int(g.integers(1, 5)), int(g.integers(1, 4))
    pad, size = int(g.integers(0, k)), int(g.integers(k + 1, 12))
    n, c_in, c_out = (int(v) for v in g.integers(1, 4, size=3))
    x, w, b = g.standard_normal((n, c_in, size, size)), g.standard_normal((c_out, c_in, k, k)), g.standard_normal(c_out)
    out = conv.output_size(size, k, stride, pad)
    delta = g.standard_normal((n, c_out, out, out))
    gx, gw, gb = _autograd_conv(x, w, b, delta, stride, pad)
    np.testing.assert_allclose(backward.conv_weight_grad(x, delta, k, stride, pad), gw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(backward.conv_bias_grad(delta), gb, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(backward.conv_input_grad(delta, w, (size, size), stride, pad), gx,
                               rtol=1e-10, atol=1e-10)


def test_input_gradient_is_a_transposed_convolution_and_a_true_convolution():
    g = np.random.default_rng(1)
    x_size, k = 7, 3
    w = g.standard_normal((2, 3, k, k))
    delta = g.standard_normal((1, 2, x_size - k + 1, x_size - k + 1))
    ours = backward.conv_input_grad(delta, w, (x_size, x_size))
    transposed = F.conv_transpose2d(torch.tensor(delta), torch.tensor(w)).numpy()
    np.testing.assert_allclose(ours, transposed, atol=1e-12)
    # stride 1: a true convolution of delta with the kernel, summed over output channels
    m, q, c = 4, 2, 1
    direct = sum(w[o, c, u, v] * delta[0, o, m - u, q - v] for o in range(2) for u in range(k) for v in range(k)
                 if 0 <= m - u < delta.shape[2] and 0 <= q - v < delta.shape[3])
    assert ours[0, c, m, q] == pytest.approx(direct, abs=1e-12)


def test_weight_gradient_is_a_correlation_of_input_with_delta():
    g = np.random.default_rng(2)
    x, delta = g.standard_normal((1, 1, 6, 6)), g.standard_normal((1, 1, 4, 4))
    # stride 1: dL/dw is eq-conv-sum with delta in the place of the filter
    as_correlation = backward.correlate(x, delta)[0, 0]
    np.testing.assert_allclose(backward.conv_weight_grad(x, delta, 3)[0, 0], as_correlation, atol=1e-12)


def test_coverage_is_the_input_gradient_of_ones():
    """pixel_coverage (a transposed conv of ones) is eq-conv-grad-x with w = delta = 1."""
    for size, k, p in ((6, 3, 0), (6, 3, 1), (8, 4, 3)):
        out = conv.output_size(size, k, 1, p)
        grad = backward.conv_input_grad(np.ones((1, 1, out, out)), np.ones((1, 1, k, k)), (size, size), 1, p)
        assert np.array_equal(grad[0, 0].round().astype(int), padding.pixel_coverage(size, k, p).numpy())


def _autograd_pool(x, delta, kind, k, s):
    xt = torch.tensor(x, requires_grad=True)
    ((F.max_pool2d if kind == "max" else F.avg_pool2d)(xt, k, s) * torch.tensor(delta)).sum().backward()
    return xt.grad.numpy()


@pytest.mark.parametrize("k,s", [(2, 2), (3, 1), (3, 2), (2, 1), (4, 3)])
def test_pool_gradients_match_autograd(k, s):
    g = np.random.default_rng(k * 10 + s)
    x = g.standard_normal((2, 3, 9, 9))
    out = (9 - k) // s + 1
    delta = g.standard_normal((2, 3, out, out))
    np.testing.assert_allclose(backward.max_pool_backward(x, delta, k, s), _autograd_pool(x, delta, "max", k, s),
                               atol=1e-12)
    np.testing.assert_allclose(backward.avg_pool_backward(x.shape, delta, k, s),
                               _autograd_pool(x, delta, "average", k, s), atol=1e-12)
    # both pass the whole gradient back: nothing is lost or created
    assert backward.max_pool_backward(x, delta, k, s).sum() == pytest.approx(delta.sum())
    assert backward.avg_pool_backward(x.shape, delta, k, s).sum() == pytest.approx(delta.sum())


def test_max_pool_routes_to_the_argmax_only_and_average_spreads_evenly():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 0], x[0, 0, 0, 3], x[0, 0, 3, 3] = 5.0, 2.0, -1.0  # last window: max 0 tied at 3 cells
    delta = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    grad = backward.max_pool_backward(x, delta, 2)[0, 0]
    assert grad[1, 0] == 1 and grad[0, 3] == 2
    assert grad[2, 0] == 3  # window of zeros: all tied, the first in reading order
    assert grad[2, 2] == 4  # tie between the zeros at (2, 2), (2, 3), (3, 2): the first
    assert np.count_nonzero(grad) == 4
    avg = backward.avg_pool_backward(x.shape, delta, 2)[0, 0]
    assert np.allclose(avg[:2, :2], 1 / 4) and np.allclose(avg[2:, 2:], 4 / 4)


def test_ties_in_the_problem_matrices_follow_pytorch():
    routed = backward.problem_matrix_gradients(0)
    assert routed["tied_windows"] == 3 and routed["receiving"] == 4
    assert np.array_equal(routed["max"], routed["max_autograd"])
    assert np.array_equal(routed["max"], [[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])
    assert all(v < 1e-12 for v in backward.pool_backward_check().values())


def test_conv_backward_check_is_rounding_error():
    diffs = backward.conv_backward_check()
    assert diffs["scale"] > 1
    assert max(diffs[k] for k in ("weight", "bias", "input", "transpose")) < 1e-10 * diffs["scale"]


def test_argmax_moves_counts_noise_only():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(6, 1, 28, 28)
    images[:, :, 8:20, 8:20] = torch.rand(6, 1, 12, 12, generator=g)
    shares = backward.argmax_moves(images, sigmas=(0, 0.4))
    assert shares["moved_0"] == 0.0  # no noise: every arg-max stays
    assert 0 < shares["moved_0.4"] <= 1
    assert 0 < shares["active"] < 1 and shares["tied_zero"] > 0.9  # the empty frame is tied zeros


# ---------------------------------------------------------------- "same" padding, any stride

@pytest.mark.parametrize("seed", range(40))
def test_same_padding_gives_ceil_n_over_s(seed):
    g = np.random.default_rng(seed)
    n, k, s, d = int(g.integers(1, 30)), int(g.integers(1, 8)), int(g.integers(1, 5)), int(g.integers(1, 3))
    before, after = conv.same_padding(n, k, s, d)
    assert 0 <= after - before <= 1
    if n + before + after < d * (k - 1) + 1:
        pytest.skip("window longer than the padded input")
    out = F.conv1d(torch.zeros(1, 1, n + before + after), torch.zeros(1, 1, k), stride=s, dilation=d)
    assert out.shape[-1] == -(-n // s)
    # minimal: one pixel less of padding loses the last output (unless no padding was needed)
    if before + after and -(-n // s) > 1:
        assert conv.output_size(n + before + after - 1, k, s, 0, d) == -(-n // s) - 1
    elif before + after:
        with pytest.raises(conv.ShapeError):  # one pixel less and the only window no longer fits
            conv.output_size(n + before + after - 1, k, s, 0, d)


def test_same_padding_at_stride_one_is_pytorchs():
    g = torch.Generator().manual_seed(0)
    for n, k in ((20, 8), (28, 3), (9, 4), (5, 5)):
        x = torch.randn(1, 1, n, n, generator=g, dtype=torch.float64)
        w = torch.randn(1, 1, k, k, generator=g, dtype=torch.float64)
        b, a = conv.same_padding(n, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # even kernels: PyTorch warns (once) that it copies the input
            same = F.conv2d(x, w, padding="same")
        assert torch.equal(same, F.conv2d(F.pad(x, (b, a, b, a)), w))


def test_pytorch_refuses_strided_same_and_the_table_checks_it():
    assert "not supported" in padding.torch_same_refusal(2)
    table = padding.strided_same_table([(28, 3, 2), (7, 3, 2), (20, 8, 1)])
    assert (table["output"] == table["⌈n/s⌉"]).all()
    assert list(table['padding="same"']) == ["refused", "refused", "identical"]
    assert conv.same_padding(28, 3, 2) == (0, 1)


def test_padding_one_at_stride_two_never_reads_its_bottom_row():
    """The book's remark: with padding=1 a 3x3 stride-2 layer on 28 pixels reads the top zero row only."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 1, 28, 28, generator=g, dtype=torch.float64)
    w = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    assert torch.equal(F.conv2d(x, w, stride=2, padding=1), F.conv2d(F.pad(x, (1, 0, 1, 0)), w, stride=2))


def test_same_padding_refuses_nonsense():
    for args in ((0, 3, 1), (5, 0, 1), (5, 3, 0), (5, 3, 1, 0)):
        with pytest.raises(conv.ShapeError):
            conv.same_padding(*args)


# ---------------------------------------------------------------- padding modes and channel pooling

def test_padding_modes_on_an_empty_border():
    images = torch.zeros(4, 1, 16, 16)
    images[:, :, 5:11, 5:11] = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    background = -0.4
    scaled = images + background
    errors = padding.border_distortion_modes(scaled, background, layers=3)
    assert list(errors) == list(padding.PADDING_MODES)
    assert torch.equal(errors["reflect"], padding.border_distortion(scaled, background, layers=3, mode="reflect"))
    # copying the (empty) border continues the background exactly; zeros do not
    for mode in ("replicate", "circular", "reflect"):
        assert float(errors[mode].max()) < 1e-6
    assert float(errors["zeros"][0, 0]) > 0.01
    # the default is zero padding, as before
    assert torch.equal(padding.border_distortion(scaled, background, layers=3), errors["zeros"])
    with pytest.raises(ValueError, match="padding mode"):
        padding.border_distortion(scaled, background, mode="mirror")
    with pytest.raises(ValueError, match="padding mode"):
        padding.border_distortion_modes(scaled, background, ("zeros", "mirror"))


def test_channel_pooling_over_quarter_turns_is_rotation_invariant():
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(5, 1, 28, 28)
    images[:, :, 6:22, 9:19] = torch.rand(5, 1, 16, 10, generator=g)
    out = pooling.channel_pooling_rotation(images, degrees=30)
    assert out["channel_quarter"] < 1e-12 and out["channel_map_quarter"] < 1e-12
    assert out["single_quarter"] > 0.01  # a single filter is not invariant
    bank = pooling.rotated_copies(torch.arange(9.0).view(1, 1, 3, 3))
    assert torch.equal(bank[1, 0], torch.rot90(bank[0, 0], 1)) and bank.shape == (4, 1, 3, 3)


# ---------------------------------------------------------------- the chapters' sentences, on MNIST

def test_pooling_chapter_claims_on_digits():
    """pooling.md: 'only X% of the windows have a positive maximum'; ties are nearly all at 0;
    noise moves the arg-max of some active windows, more at the larger sigma; the 2x2 max-pooled
    fixed features change more under noise than the 2x2 average-pooled ones; channel pooling over
    quarter turns is invariant to them, a single filter is not."""
    images, _ = pooling.digit_subset(300)
    routing = backward.argmax_moves(images, sigmas=(0.2, 0.4))
    assert routing["active"] < 0.5 and routing["tied_zero"] > 0.99
    assert 0 < routing["moved_0.2"] < routing["moved_0.4"] < 1
    change = pooling.feature_change(images, {"noise": [0.2]}, poolings=("average 2×2", "max 2×2"))
    assert (pooling.pick(change, "relative_change", level=0.2, pooling="max 2×2")
            > pooling.pick(change, "relative_change", level=0.2, pooling="average 2×2"))
    rot = pooling.channel_pooling_rotation(images)
    assert rot["channel_quarter"] < 1e-12 and rot["single_quarter"] > 0.05


def test_conv_chapter_padding_mode_claim_on_digits():
    """conv_arithmetic.md: on normalised digits the three copying modes nearly remove the frame
    that zero padding draws (their largest error is below a tenth of the zeros' largest)."""
    from nnlab import data

    digits, _ = data.mnist("test")
    mean, std = data.normalisation()
    errors = {m: float(e.max()) for m, e in padding.border_distortion_modes(digits[:200], (0 - mean) / std).items()}
    assert max(v for m, v in errors.items() if m != "zeros") < errors["zeros"] / 10
