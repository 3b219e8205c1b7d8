"""nnlab.pooling: the problem's pooled matrices, the perturbations and the invariance measure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from nnlab.book import pooling


def pool_by_hand(m: np.ndarray, fn) -> np.ndarray:
    """Non-overlapping 2x2 pooling with plain loops (the reference)."""
    h, w = m.shape
    return np.array([[fn(m[i:i + 2, j:j + 2]) for j in range(0, w, 2)] for i in range(0, h, 2)])


def test_problem_matrices_pooled_like_by_hand():
    pooled = pooling.pooled_problem_matrices()
    for i, m in enumerate(pooling.PROBLEM_MATRICES.numpy()):
        assert np.allclose(pooled["average"][i].numpy(), pool_by_hand(m, np.mean))
        assert np.allclose(pooled["max"][i].numpy(), pool_by_hand(m, np.max))
    # the four matrices are one 3x3 block moved by a pixel: max pooling cannot tell them apart,
    # average pooling can
    assert pooling.distinct(pooled["max"]) == 1
    assert pooling.distinct(pooled["average"]) == 4


def test_shift_moves_content_and_fills_with_zeros():
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 4:6, 3:7] = torch.arange(1.0, 9.0).view(2, 4)
    for dy, dx in [(0, 2), (-3, 0), (1, -2), (2, 3)]:
        moved = pooling.shift(x, dy, dx)
        assert torch.equal(moved, torch.roll(x, (dy, dx), dims=(2, 3)))  # nothing wraps here
    edge = torch.ones(1, 1, 4, 4)
    assert torch.equal(pooling.shift(edge, 0, 1)[..., 0], torch.zeros(1, 1, 4))


def centre_of_mass(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ys, xs = torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype)
    mass = x.sum(dim=(-2, -1))
    return torch.stack([(x.sum(-1) * ys).sum(-1) / mass, (x.sum(-2) * xs).sum(-1) / mass], -1)


def test_shift_each_moves_every_image_by_the_distance_along_one_axis():
    x = torch.zeros(40, 1, 16, 16)
    x[:, :, 6:10, 5:11] = torch.rand(40, 1, 4, 6, generator=torch.Generator().manual_seed(1))
    moved = pooling.perturb(x, "shift", 3, seed=0)
    delta = (centre_of_mass(moved) - centre_of_mass(x)).squeeze(1)
    assert torch.allclose(delta.abs().sum(-1), torch.full((40,), 3.0), atol=1e-5)
    assert torch.equal((delta.abs() < 1e-4).sum(-1), torch.ones(40, dtype=torch.long))  # one axis only


def test_rotation_by_a_right_angle_is_rot90():
    x = torch.rand(8, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    out = pooling.perturb(x, "rotate", 90, seed=0)
    for i in range(8):
        a, b = torch.rot90(x[i], 1, dims=(1, 2)), torch.rot90(x[i], -1, dims=(1, 2))
        assert torch.allclose(out[i], a, atol=1e-5) or torch.allclose(out[i], b, atol=1e-5)
    assert torch.equal(pooling.perturb(x, "rotate", 0), x)


def test_noise_and_dropout_strengths():
    x = torch.full((20, 1, 50, 50), 0.5)
    noise = pooling.perturb(x, "noise", 0.1, seed=0) - x
    assert noise.std().item() == pytest.approx(0.1, rel=0.05)
    assert pooling.perturb(torch.zeros(5, 1, 8, 8), "noise", 0.5).min() >= 0  # clipped to [0, 1]
    ones = torch.ones(20, 1, 50, 50)
    dropped = 1 - pooling.perturb(ones, "dropout", 0.3, seed=0).mean().item()
    n = ones.numel()
    assert abs(dropped - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    with pytest.raises(ValueError, match="unknown perturbation"):
        pooling.perturb(x, "blur", 1)


def test_feature_change_on_digits():
    images, _ = pooling.digit_subset(100)
    table = pooling.feature_change(images, {"shift": [0, 1]})
    clean = table[table["level"] == 0]
    assert np.allclose(clean["relative_change"], 0) and np.allclose(clean["cosine"], 1)
    one = table[table["level"] == 1].set_index("pooling")["relative_change"]
    # pooling over a neighbourhood makes the features less sensitive to a one-pixel shift
    assert one["max 2×2"] < one["no pooling"] and one["average 2×2"] < one["no pooling"]
    assert one["max 4×4"] < one["max 2×2"]
    # a bias-free convolution is translation-equivariant, so a global max cannot see the shift
    # (up to digits whose strokes reach the image's edge)
    assert one["global max"] < 0.01


def test_robustness_summary_and_table():
    rows = [{"variant": v, "seed": s, "perturbation": k, "level": lv, "accuracy": a}
            for v, base in (("a", 0.9), ("b", 0.8)) for s in (0, 1)
            for k, lv, a in (("shift", 0, base), ("shift", 1, base - 0.1 * (s + 1)))]
    summary = pooling.robustness_summary(pd.DataFrame(rows))
    row = summary[(summary["variant"] == "a") & (summary["level"] == 1)].iloc[0]
    assert row["mean"] == pytest.approx(0.75) and row["std"] == pytest.approx(0.1 / math.sqrt(2))
    table = pooling.robustness_table(summary)
    assert list(table.columns) == ["a", "b"] and list(table.index) == ["clean", "shift 1 px"]


def test_robustness_is_cached_and_keyed(tiny_experiment, results_dir, monkeypatch):
    from nnlab import runner

    runner.run_experiment(tiny_experiment.name)
    levels = {"shift": [0, 1], "noise": [0.2]}
    first = pooling.robustness(levels, tiny_experiment.name, n=50)
    assert len(first) == len(tiny_experiment.seeds) * 3
    assert first["accuracy"].between(0, 1).all()
    assert (results_dir / tiny_experiment.name / "robustness.json").exists()

    def must_not_run(*args, **kwargs):
        raise AssertionError("recomputed although the cache matches")

    monkeypatch.setattr(pooling, "accuracy_under", must_not_run)
    pd.testing.assert_frame_equal(first, pooling.robustness(levels, tiny_experiment.name, n=50))
    with pytest.raises(AssertionError, match="recomputed"):
        pooling.robustness(levels, tiny_experiment.name, n=60)  # other arguments: a new key
