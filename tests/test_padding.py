"""nnlab.padding: window coverage and exposure against brute force, and the border error's reach."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnlab.book import padding


def windows(size: int, kernel: int, pad: int):
    """Every window of a stride-1 scan as (top, left) in unpadded coordinates."""
    last = size + 2 * pad - kernel
    return [(r - pad, c - pad) for r in range(last + 1) for c in range(last + 1)]


def inside(r: int, c: int, size: int) -> bool:
    return 0 <= r < size and 0 <= c < size


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 12), kernel=st.integers(1, 6), pad=st.integers(0, 5))
def test_coverage_and_exposure_match_brute_force(size, kernel, pad):
    if size + 2 * pad < kernel:
        return
    cover = torch.zeros(size, size, dtype=torch.long)
    padded_share = []
    for top, left in windows(size, kernel, pad):
        real = 0
        for r in range(top, top + kernel):
            for c in range(left, left + kernel):
                if inside(r, c, size):
                    cover[r, c] += 1
                    real += 1
        padded_share.append(1 - real / kernel**2)
    assert torch.equal(padding.pixel_coverage(size, kernel, pad), cover)
    exp = padding.padding_exposure(size, kernel, pad)
    assert exp["windows"] == len(padded_share)
    assert exp["windows_with_padding"] == sum(s > 0 for s in padded_share)
    assert exp["mean_padded_fraction"] == pytest.approx(sum(padded_share) / len(padded_share))
    assert exp["max_padded_fraction"] == pytest.approx(max(padded_share))


@given(size=st.integers(1, 60), kernel=st.integers(2, 7))
def test_max_depth_closed_form(size, kernel):
    # each valid layer removes kernel - 1 pixels; the image must keep at least one
    assert padding.max_depth(size, kernel) == (size - 1) // (kernel - 1)
    sizes = padding.stack_sizes(size, 5, kernel, padding=(kernel - 1) // 2)
    if kernel % 2:
        assert sizes == [size] * 6  # "same" padding for odd kernels


def test_problem_3a_sizes():
    facts = padding.problem_facts(size=20, kernel=8)
    assert facts["valid_out"] == 13 and facts["full_out"] == 27
    assert facts["pad_lo_out"] == 19 and facts["pad_hi_out"] == 21  # no symmetric padding keeps 20
    assert facts["same_out"] == 20
    assert facts["valid_corner_cov"] == 1 and facts["valid_centre_cov"] == 64
    assert facts["full_min_cov"] == facts["full_max_cov"] == 64
    assert facts["full_max_padded_fraction"] == pytest.approx(63 / 64)  # a corner window holds one pixel
    assert facts["digit_max_depth"] == 13 and facts["digit_padded_after_10"] == 28


def test_constant_image_dims_at_the_border():
    out = padding.constant_image_response(size=6, kernel=3)
    assert out[0, 0] == pytest.approx(4 / 9) and out[0, 3] == pytest.approx(6 / 9)
    assert torch.allclose(out[1:-1, 1:-1], torch.ones(4, 4, dtype=out.dtype))


def blobs(n: int = 6, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    x[:, :, 5:11, 5:11] = torch.rand(n, 1, 6, 6, generator=g)
    return x


def test_border_error_reaches_one_pixel_per_layer():
    layers = 3
    background = -0.5
    x = blobs() + background
    err = padding.border_distortion(x, background, layers=layers)
    for layer in range(layers):
        assert err[layer, 0] > 0  # the edge pixels see the wrong padding value
        assert torch.all(err[layer, layer + 1:] == 0)  # beyond the reach the two computations agree
    unit = padding.border_distortion(blobs(), 0.0, layers=layers)
    assert torch.all(unit[0] == 0)  # zero padding is right for an input whose background is 0 ...
    assert unit[1, 0] > 0  # ... but not for a hidden layer, whose background is a bias after ReLU


def test_blur_stack_sizes():
    x = torch.rand(1, 1, 28, 28)
    assert [t.shape[-1] for t in padding.box_blur_stack(x, 3, 0)] == [28, 26, 24, 22]
    assert [t.shape[-1] for t in padding.box_blur_stack(x, 3, 1)] == [28] * 4
    assert len(padding.box_blur_stack(x, 20, 0)) == 14  # the image plus 13 layers that fit
