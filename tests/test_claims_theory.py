"""Claims of the theory sections (backpropagation, initialisation, convolution, invariance).

Every check is deterministic (float64, fixed draws, or the committed result store) and states
a property that holds on any machine; thresholds come from the chapters' sentences.
"""

from __future__ import annotations

import math

import pytest
import torch

from nnlab.book import backprop_worked as bw
from nnlab.book import cnn_anatomy, invariance, padding
from nnlab.book import initialisation as init


@pytest.fixture(autouse=True)
def _real_results(monkeypatch):
    monkeypatch.delenv("NNLAB_RESULTS", raising=False)


# Backpropagation (book/part1/backprop.md)

def test_worked_example_matches_autograd():
    assert bw.worked_autograd_difference() < 1e-12


def test_worked_example_uses_the_delta_recursion():
    r = bw.worked_by_hand()
    # delta1 = (1 - h^2) * W2^T delta2, written out independently of the module
    w2 = bw.WORKED["W2"][0]
    for j in range(2):
        assert r["delta1"][j] == pytest.approx((1 - r["h"][j] ** 2) * w2[j] * r["delta2"], rel=1e-12)
    assert r["delta2"] == pytest.approx(r["out"] - bw.WORKED["y"], rel=1e-12)


def test_worked_table_has_every_step():
    table = bw.worked_table()
    assert list(table["step"]).count("gradient") == 4 and list(table["step"]).count("backward") == 2


def test_batched_backward_matches_autograd():
    assert bw.batched_check() < 1e-12
    assert bw.batched_check(sizes=(2, 3, 1), batch=1, seed=3) < 1e-12


def test_softmax_cross_entropy_gradient_is_p_minus_y():
    assert bw.softmax_cross_entropy_check() < 1e-12


def test_finite_difference_check_passes_in_float64_and_not_in_float32():
    check = bw.gradient_check(h=1e-6, dtype=torch.float64)
    assert check["relative_error"] < 1e-6
    assert check["parameters"] == 3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2
    assert bw.gradient_check(h=1e-6, dtype=torch.float32)["relative_error"] > 1e-3


def test_gradient_check_detects_a_wrong_gradient(monkeypatch):
    original = bw.batched_backward

    def wrong(params, X, Y):
        grads = original(params, X, Y)
        return [(gW * 1.01, gb) for gW, gb in grads]

    monkeypatch.setattr(bw, "batched_backward", wrong)
    assert bw.gradient_check()["relative_error"] > 1e-3


def _backward_over_forward_flops(widths: list[int], batch: int = 64) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    layers = []
    for n_in, n_out in zip(widths, widths[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    x = torch.randn(batch, widths[0])
    with FlopCounterMode(display=False) as forward:
        out = model(x)
    with FlopCounterMode(display=False) as backward:
        out.sum().backward()
    return backward.get_total_flops() / forward.get_total_flops()


def test_the_backward_pass_costs_about_twice_the_forward_pass():
    """'Every layer but the first therefore costs about twice as much going back as going
    forward ... With layers of similar size, a forward and a backward pass together cost about
    three forward passes (less when one first layer dominates ...)': PyTorch's FLOP counter."""
    equal = _backward_over_forward_flops([256] * 6)  # five layers: (5 + 4) / 5 products
    assert equal == pytest.approx(9 / 5) and 2.5 < 1 + equal <= 3
    mnist = _backward_over_forward_flops([784, 100, 10])
    assert 1 + mnist < 1 + equal and mnist < 1.5


# Initialisation (book/part1/initialisation.md)

@pytest.fixture(scope="module")
def study():
    return init.scale_study(depth=30, width=256)


def test_he_keeps_relu_signals_within_a_factor_of_two(study):
    assert init.spread(study, "relu", "He", "activation_std") < 2
    assert init.spread(study, "relu", "He", "delta_std") < 2


def test_smaller_scales_make_relu_signals_vanish_and_larger_explode(study):
    assert init.ratio(study, "relu", "Xavier", "activation_std") < 1e-2  # 0.5 x He, as in the text
    assert init.ratio(study, "relu", "0.5 × Xavier", "activation_std") < 1e-6
    assert init.ratio(study, "relu", "2 × He", "activation_std") > 1e2
    assert 1 / init.ratio(study, "relu", "Xavier", "delta_std") < 1e-2


@pytest.mark.parametrize("scale", ["0.5 × Xavier", "Xavier", "2 × He"])
def test_relu_measurement_within_an_order_of_magnitude_of_the_prediction(study, scale):
    measured = init.ratio(study, "relu", scale, "activation_std")
    predicted = init.predicted_relu_std_ratio(init.SCALES[scale], 29)
    assert 0.1 < measured / predicted < 10


def test_tanh_small_weights_vanish_large_weights_saturate_and_explode_backwards(study):
    assert init.ratio(study, "tanh", "0.5 × Xavier", "activation_std") < 1e-6
    last = study.query("activation == 'tanh' and scale == '2 × He' and layer == 30").activation_std.iloc[0]
    assert 0.5 < last <= 1
    assert 1 / init.ratio(study, "tanh", "2 × He", "delta_std") > 1e2
    # Xavier: tanh activations shrink, but slowly, not geometrically
    assert 0.05 < init.ratio(study, "tanh", "Xavier", "activation_std") < 1


def test_first_layer_gradients_span_many_orders_of_magnitude(study):
    first = study[(study.layer == 1) & (study.activation == "relu")].set_index("scale")["grad_norm"]
    assert first["0.5 × Xavier"] < first["Xavier"] < first["He"] < first["2 × He"]
    assert math.log10(first["2 × He"] / first["0.5 × Xavier"]) > 15


def test_relu_weight_gradients_move_together_and_saturated_tanh_ones_drift_apart(study):
    """'within each ReLU network the largest and the smallest layer's gradient norm differ by a
    factor of at most ...' (a^(L-1) in every layer; Glorot & Bengio); 'Here, and only here, the
    layers' weight gradients drift apart' (tanh with large weights)."""
    for scale in init.SCALES:
        assert init.spread(study, "relu", scale, "grad_norm") < 2
    assert 1 / init.ratio(study, "tanh", "2 × He", "grad_norm") > 1e2
    assert init.spread(study, "tanh", "2 × He", "grad_norm") > 100 * max(
        init.spread(study, "relu", scale, "grad_norm") for scale in init.SCALES)
    table = init.gradient_table(study)
    assert len(table) == 2 * len(init.SCALES) and {"layer 1", "layer 15", "layer 30"} <= set(table.columns)


# Convolution (book/part3/conv_arithmetic.md)

def test_pytorch_computes_cross_correlation():
    checks = cnn_anatomy.correlation_checks()
    assert checks["loops"] < 1e-12 and checks["flipped"] < 1e-12
    assert checks["unflipped"] > 1e-3


def test_window_counts_for_valid_same_and_full_padding():
    facts = padding.coverage_facts(28, 3)
    assert (facts["valid_corner"], facts["same_corner"], facts["full_corner"]) == (1, 4, 9)
    assert (facts["valid_edge"], facts["same_edge"], facts["full_edge"]) == (3, 6, 9)
    assert facts["same_centre"] == 9
    # "same" padding halves the gap to the centre at an edge, not at a corner (review E5)
    assert facts["same_centre"] - facts["valid_edge"] == 2 * (facts["same_centre"] - facts["same_edge"])
    assert facts["same_centre"] - facts["valid_corner"] != 2 * (facts["same_centre"] - facts["same_corner"])
    full = padding.coverage_by_padding(28, 3)["full"]
    assert int(full.min()) == int(full.max()) == 9
    same = padding.coverage_by_padding(28, 3)["same"]
    assert int(same.min()) < int(same.max())


def test_book_cnn_uses_same_padding():
    model, _, _ = cnn_anatomy.book_cnn()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.padding == ((c.kernel_size[0] - 1) // 2,) * 2 and c.stride == (1, 1) for c in convs)


def test_receptive_field_table_follows_the_recursion_and_flops_agree():
    model, _, shape = cnn_anatomy.book_cnn()
    table = cnn_anatomy.layer_table(model, shape)
    windows = table[table["kernel/stride"] != "–"]
    rf, jump = 1, 1
    for ks, got_rf, got_jump in zip(windows["kernel/stride"], windows["receptive field"], windows["jump"]):
        k, s = (int(v) for v in ks.split("/"))
        rf, jump = rf + (k - 1) * jump, jump * s
        assert (got_rf, got_jump) == (rf, jump)
    assert 2 * int(table["MACs"].sum()) == cnn_anatomy.measured_flops(model, shape)
    assert int(table["parameters"].sum()) == sum(p.numel() for p in model.parameters()
                                                 if p.requires_grad) - sum(
        m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_last_pool_drops_a_row_and_a_column():
    model, _, shape = cnn_anatomy.book_cnn()
    facts = cnn_anatomy.last_pool_facts(model, shape)
    assert (facts["in_size"], facts["out_size"], facts["unread"]) == (7, 3, 13)
    assert facts["max_change"] == 0.0


# Invariance (book/part3/pooling.md)

@pytest.mark.parametrize("kind", ["max", "average"])
def test_pooling_is_equivariant_only_to_shifts_by_multiples_of_its_stride(kind):
    table = invariance.pooling_shift_table(range(6), kind=kind)
    for row in table.itertuples(index=False):
        d, change, best, gap = row
        if d % 2 == 0:
            assert gap == 0.0 and best == d // 2
        else:
            assert gap > 0.1 and best in ((d - 1) // 2, (d + 1) // 2)  # a neighbouring output shift
        if d:
            assert change > 0.1


def test_global_average_pooling_is_invariant():
    checks = invariance.global_pooling_checks()
    assert checks["shift"] < 1e-12 and checks["permutation"] < 1e-12 and checks["conv_shift"] < 1e-12
    assert checks["conv_equivariance"] < 1e-12
    assert checks["conv_shift_no_pool"] > 1


def _robustness():
    from nnlab.book import pooling

    levels = {"shift": [0, 1, 2, 3], "rotate": [0, 10, 20, 30], "noise": [0, 0.1, 0.2, 0.3, 0.4],
              "dropout": [0, 0.1, 0.2, 0.3, 0.4]}
    return pooling.robustness(levels, n=2000)


def test_max_pooling_under_noise_is_lowest_but_not_established():
    """The chapter says: lowest mean at sigma = 0.4, seeds overlapping with average pooling, and
    one verdict, no detectable difference, against each of the other three variants."""
    robust = _robustness()
    tests = {other: invariance.compare_variants(robust, "noise", 0.4, "max-pool", other)
             for other in ("avg-pool", "stride-2", "no-pool")}
    test = tests["avg-pool"]
    assert test["lowest"] == "max-pool"
    assert test["n_a"] == test["n_b"] == 3
    assert test["max_a"] >= test["min_b"]  # the seeds overlap
    for t in tests.values():
        assert t["test"] == "paired" and t["p"] >= 0.05
        assert t["verdict"] == test["verdict"] == "no detectable difference at three seeds"


def test_max_pooling_beats_strides_under_shifts():
    """'By the same paired test ... by three pixels: max-pool ahead of stride-2 by N points,
    Holm-adjusted p = ...'; at two pixels the nominal lead does not survive the correction."""
    tests = invariance.corrected_tests(_robustness())
    for level in (2, 3):
        assert tests[f"shift{level}_acc"].test == "paired" and tests[f"shift{level}_acc"].t > 0
    assert tests["shift3_acc"].verdict().startswith("max-pool ahead of stride-2 by ")
    assert tests["shift2_acc"].p_raw < 0.05 and not tests["shift2_acc"].detected


def test_noise_moves_max_pooled_features_more_than_averaged_or_unpooled_ones():
    from nnlab.book import pooling, stored_studies

    stored = stored_studies.pooling_feature_change()  # the table the chapter reads

    def at(name, table=stored):
        return pooling.pick(table, "relative_change", perturbation="noise", level=0.2, pooling=name)

    assert at("max 2×2") > at("no pooling") > at("average 2×2")
    # an independent check of the stored table: the same digits and noise, computed again
    images, _ = pooling.digit_subset(stored.attrs["n_images"])
    poolings = ("no pooling", "average 2×2", "max 2×2")
    change = pooling.feature_change(images, {"noise": [0, 0.2]}, poolings=poolings)
    assert [at(p, change) for p in poolings] == pytest.approx([at(p) for p in poolings], rel=1e-5)


def test_pooling_gives_no_established_rotation_benefit():
    """'the trained networks show no benefit of pooling over no pooling at all ... nor, after the
    correction, an advantage over stride-2 subsampling' (losses from clean accuracy)."""
    robust = _robustness()
    tests = invariance.corrected_tests(robust)
    assert tests["rotate30_loss_no-pool"].report().startswith("no detectable difference at three seeds")
    assert not tests["rotate30_loss_stride-2"].detected
    for level in (10, 20, 30):
        assert invariance.compare_variants(robust, "rotate", level, "no-pool", "max-pool")["p"] >= 0.05


def test_variant_comparison_is_scipys_paired_t_test():
    stats = pytest.importorskip("scipy.stats")
    robust = _robustness()
    part = robust[(robust.perturbation == "shift") & (robust.level == 2)]
    a, b = (part[part.variant == v].sort_values("seed").accuracy.to_numpy() for v in ("stride-2", "max-pool"))
    ref = stats.ttest_rel(b, a)
    test = invariance.compare_variants(robust, "shift", 2, "stride-2", "max-pool")
    assert test["t"] == pytest.approx(ref.statistic) and test["p"] == pytest.approx(ref.pvalue)
