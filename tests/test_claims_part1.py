"""Claims of Part I added after the 2026-12-07 review: the kink caveat of the gradient check,
the rescaled-sigmoid ablation and the zero-start plateau (1B), the phase of the data-order
gap, the dying-ReLU remedy and the cross-entropy rows (1C).

Each test reads the chapter's stored runs (``nnlab.book.stored_saturation``,
``nnlab.book.stored_dying_relu``) or reruns its computation (seconds of CPU on the Playground
engine), and checks that the sentence the chapter prints is the one its statistical test supports.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnlab import playground as pg
from nnlab.book import backprop_worked as bw
from nnlab.book import dying_relu as dr
from nnlab.book import relu_logic as rl
from nnlab.book import saturation as sat
from nnlab.book import stored_dying_relu, stored_saturation, stored_studies
from nnlab.stats import compare

SEEDS = tuple(range(10))
DR_SEEDS = tuple(range(40))


# Backpropagation: a central difference across ReLU's kink (book/part1/backprop.md)

def test_central_difference_disagrees_only_across_the_kink():
    at_kink = bw.kink_check(s0=2.5e-7, h=1e-6)
    away = bw.kink_check(s0=0.1, h=1e-6)
    assert at_kink["relative_error"] > 0.1  # "can disagree": by a fifth, not by rounding
    assert at_kink["backprop"] == pytest.approx(away["backprop"], rel=0.2)  # the same active slope
    assert away["relative_error"] < 1e-8
    assert bw.kink_check(s0=-0.1)["relative_error"] == 0.0  # off: both exactly zero


# Saturation: slope bound or centring? (book/part1/saturation.md)

def test_speed_phrase_follows_its_test():
    fast = np.array([10.0, 12, 9, 11, 10, 13, 8, 10, 12, 11])
    slow = 20 * fast * np.linspace(0.9, 1.1, 10)
    c = sat.speed_comparison(slow, fast, ("slow one", "fast one"), (4000, 4000), SEEDS)
    assert c.detected and sat.speed_phrase(c).startswith("slow one needs 20 times as many iterations as fast one")
    c = sat.speed_comparison(fast, slow, ("fast one", "slow one"), (4000, 4000), SEEDS)
    assert sat.speed_phrase(c).startswith("slow one needs 20 times")
    tied = sat.speed_comparison(fast, fast[::-1], ("a", "b"), (4000, 4000), SEEDS)
    assert not tied.detected and sat.speed_phrase(tied).startswith("no detectable difference at ten seeds")
    never = np.full(10, np.nan)  # never reached: counted at the budget, a lower bound
    assert sat.censored(never, 2000).tolist() == [2000.0] * 10


PAIRS = {"slope_centred": ("half_centred_sigmoid", "centred_sigmoid"),
         "slope_uncentred": ("sigmoid", "scaled_sigmoid"),
         "centring_quarter": ("sigmoid", "half_centred_sigmoid"),
         "centring_one": ("scaled_sigmoid", "centred_sigmoid")}


@pytest.fixture(scope="module")
def centring():
    # the chapter's stored runs (tests/test_stored_studies.py checks that they are current)
    budgets = {("sigmoid", 0.03): stored_saturation.ITERATIONS,
               ("sigmoid", 0.3): stored_studies.SATURATION_ITERATIONS["sigmoid"],
               **stored_saturation.RESCALED_BUDGETS}
    reach = {("sigmoid", 0.03): pg.iterations_to_loss(stored_saturation.runs()["random"], 0.1),
             ("sigmoid", 0.3): stored_studies.saturation_learning_rates()["sigmoid", 0.3],
             **stored_saturation.centring()}
    assert stored_saturation.SEEDS == SEEDS

    def speed(a, b, lr):
        return sat.speed_comparison(reach[a, lr], reach[b, lr], (a, b), (budgets[a, lr], budgets[b, lr]), SEEDS)

    return {lr: {kind: speed(*pair, lr) for kind, pair in PAIRS.items()} for lr in (0.03, 0.3)}


@pytest.mark.parametrize("lr", [0.03, 0.3])
def test_centring_verdict_follows_the_2x2_tests(centring, lr):
    tests = centring[lr]
    verdict = sat.centring_verdict(tests)
    helps = {k: sat.slower(c) == c.names[0] for k, c in tests.items()}
    assert ("once the outputs are centred" in verdict) == (helps["slope_centred"] and not helps["slope_uncentred"])
    hurts = sat.slower(tests["slope_uncentred"]) == tests["slope_uncentred"].names[1]
    assert ("without centring a steeper slope is slower" in verdict) == (
        "once the outputs are centred" in verdict and hurts)
    assert ("centring matters most when the outputs are large" in verdict) == (
        helps["centring_one"] and sat.faster_by(tests["centring_one"]) > sat.faster_by(tests["centring_quarter"]))
    assert ("detectably" in verdict) == helps["centring_quarter"] or "centring matters most" not in verdict
    for c in tests.values():
        assert ("needs" in sat.speed_phrase(c)) == c.detected
    # a robust fact the chapter rests on: among centred activations the steeper slope is far faster
    assert helps["slope_centred"] and sat.faster_by(tests["slope_centred"]) > 3


def test_centring_verdict_wording_matches_the_tests():
    def fake(a, b):
        return compare(dict(zip(SEEDS, a)), dict(zip(SEEDS, b)), names=("x", "y"), scale=1.0)

    slow, fast = np.arange(10) + 20.0, np.arange(10) * 1.01 + 1.0
    tie = fast[::-1]
    interact = sat.centring_verdict({"slope_centred": fake(slow, fast), "slope_uncentred": fake(fast, tie),
                                     "centring_quarter": fake(fast, tie), "centring_one": fake(slow, fast)})
    assert interact.startswith(f"{sat.SLOPE} matters once the outputs are centred")
    assert "centring matters most when the outputs are large" in interact
    assert "no detectable difference at ten seeds" in interact and "no faster" not in interact
    hurt = sat.centring_verdict({"slope_centred": fake(slow, fast), "slope_uncentred": fake(fast, slow),
                                 "centring_quarter": fake(fast, tie), "centring_one": fake(slow, fast)},
                                {"centring_one": (3, 0)})
    assert "without centring a steeper slope is slower" in hurt and "at slope 1 it is at least" in hurt
    both = sat.centring_verdict({k: fake(slow, fast) for k in PAIRS})
    assert both.startswith(f"{sat.SLOPE} matters whether or not")
    none = sat.centring_verdict({k: fake(fast, tie) for k in PAIRS})
    assert none.startswith(f"{sat.SLOPE} makes no detectable difference")
    assert none.endswith("centring makes no detectable difference at ten seeds")


def test_censored_slower_variant_reads_as_a_lower_bound():
    fast = np.array([10.0, 12, 9, 11, 10, 13, 8, 10, 12, 11])
    slow = np.where(np.arange(10) < 3, np.nan, 200 * fast)
    c = sat.speed_comparison(slow, fast, ("slow one", "fast one"), (4000, 4000), SEEDS)
    phrase = sat.speed_phrase(c, (3, 0))
    assert "needs at least" in phrase and "3 runs of slow one never got there" in phrase
    # censored runs: no t-interval of placeholder values, the sign test on who got there first
    assert "interval" not in phrase and "slow one first on 0 seeds and fast one on 10, exact sign test" in phrase
    assert c.censored == (3, 0) and c.first == (0, 10) and c.detected == (c.sign_p < 0.05)
    assert sat.speed_phrase(c) == phrase  # the comparison knows its own censored runs


def test_censored_verdict_follows_the_sign_test_not_the_placeholder_t_test():
    fast = np.array([10.0, 12, 9, 11, 10, 13, 8, 10, 12, 11])
    # six runs cut off at the budget, four that beat the other variant: the placeholder t-test
    # sees a large ratio, the sign test on who got there first (4 against 6) sees nothing
    slow = np.where(np.arange(10) < 6, np.nan, 0.5 * fast)
    c = sat.speed_comparison(slow, fast, ("slow one", "fast one"), (4000, 4000), SEEDS)
    placeholder_t = compare(dict(zip(SEEDS, np.log10(sat.censored(slow, 4000)))),
                                dict(zip(SEEDS, np.log10(fast))), scale=1.0)
    assert placeholder_t.detected and c.sign_p > 0.05
    assert not c.detected and sat.slower(c) is None
    assert sat.speed_phrase(c).startswith("no detectable difference")


def test_first_to_arrive_is_known_only_where_the_budget_tells():
    a = np.array([10.0, np.nan, np.nan, 50.0, np.nan])
    b = np.array([20.0, 30.0, np.nan, np.nan, 900.0])
    # seed 0: a first; 1: b first (a never got there within 100); 2: both cut off; 3: a first
    # (b never got there within 500); 4: b arrived after a's budget of 100: unknown
    assert sat.first_to_arrive(a, b, (100, 500)) == (2, 1)


def test_plateau_profile_reads_the_stored_snapshots():
    # the facts the chapter states in words about its stored runs: unsaturated and nearly
    # constant up to iteration 200; partly saturated, spread out and lower loss by 600
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    runs = stored_saturation.runs()["random"]
    early = sat.plateau_profile(runs, data.x_train, [0, 100, 200])
    late = sat.plateau_profile(runs, data.x_train, [600])
    assert early["slope"].min() > 0.19 and early["slope"].max() <= 0.25
    assert early["spread"].max() < 0.1 and late["spread"][0] > 0.5
    assert late["slope"].max() < 0.8 * early["slope"].min()
    assert late["test_loss"][0] < early["test_loss"][-1] - 0.1


def test_rate_sentence_follows_the_grid():
    fast, slow, never = np.full(10, 10.0), np.full(10, 100.0), np.full(10, np.nan)
    reach = {("relu", 0.03): fast, ("sigmoid", 0.03): slow, ("relu", 3.0): never, ("sigmoid", 3.0): slow}
    s = sat.rate_sentence(reach, (0.03, 3.0))
    assert s.startswith("the sigmoid is slower at rate 0.03, but not at rate 3")
    assert "ReLU reaches it on 0 of 10 seeds and the sigmoid on 10" in s
    assert sat.rate_sentence(reach, (0.03,)) == "the sigmoid is slower at every rate we tried"


def test_symmetrised_points_have_no_drive():
    d = sat.symmetrised(pg.make_dataset("circle", noise=0.0, seed=0))
    assert np.abs(d.x_train.mean(0)).max() < 1e-15
    assert np.abs((d.y_train[:, None] * d.x_train).mean(0)).max() < 1e-15


def test_zero_start_line_follows_the_sample_asymmetry():
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    final = stored_saturation.runs()["zero"].params  # the chapter's zero start, 4000 iterations
    early = pg.train(pg.PlaygroundConfig(activation="sigmoid", init="zero", iterations=1), data, seeds=[0]).params
    r = sat.zero_start_symmetry(data, early, final, "sigmoid")
    assert r["label_mean_norm"] / r["mean_norm"] < 0.15  # "almost nothing survives the average"
    assert r["grad_angle"] < 1.0  # the first gradient lies along E[y x]
    assert r["final_angle"] < 15.0  # and so, roughly, does the final boundary's normal
    assert r["drive"] == pytest.approx(r["label_mean_norm"], rel=0.1)  # out E[x] is a small correction


# Data order and dying ReLUs (book/part1/dying_relu.md)

def test_grouped_order_trails_at_every_phase_of_the_last_pass():
    r = stored_dying_relu.experiment()  # the chapter's run, stored (tests/test_stored_studies.py checks it)
    assert r.seeds == DR_SEEDS and r.hidden == (4, 2) and r.learning_rate == 0.03
    epochs = r.epochs
    last = r.points_seen > (epochs - 1) * 1000
    grouped, shuffled = r.test_accuracy[0][:, last], r.test_accuracy[1][:, last]
    curve = grouped.mean(0)
    assert curve.max() - curve.min() > 0.05  # "depends on where in the pass"
    assert curve.argmax() not in (4, 9)  # best a little way into a half, not at its end
    for g, s in ((grouped.mean(1), shuffled.mean(1)), (grouped[:, 4], shuffled[:, 4]), (grouped[:, -1], shuffled[:, -1])):
        c = compare(dict(zip(DR_SEEDS, g)), dict(zip(DR_SEEDS, s)), names=("the grouped order", "the shuffled order"))
        assert c.verdict().startswith("the shuffled order ahead of the grouped order")


@pytest.fixture(scope="module")
def remedies():
    # the chapter's stored grids (tests/test_stored_studies.py checks them against seeds trained again)
    assert stored_dying_relu.SEEDS == DR_SEEDS and stored_dying_relu.GRID_EPOCHS == 5
    return {"relu": stored_dying_relu.grid(), **stored_dying_relu.remedies()}


def _runs(grid, key, width, lr, order):
    i, j = list(grid["widths"]).index(width), list(grid["learning_rates"]).index(lr)
    return dict(zip(DR_SEEDS, grid[f"{key}_runs"][i, j, order]))


def test_remedy_sentences_follow_their_tests(remedies):
    relu, leaky, ce = remedies["relu"], remedies["leaky"], remedies["logistic"]
    c = compare(_runs(ce, "dead_fraction", 8, 1.0, 0), _runs(relu, "dead_fraction", 8, 1.0, 0),
                names=("the cross-entropy", "the squared loss"))
    # a chaotic cell: the chapter's sentence must follow the test, whatever the runs give
    holds = c.detected and c.difference > 0
    assert dr.prediction_phrase(c).startswith("The measurement is consistent with the prediction") == holds
    assert dr.higher_phrase(c, "the dead share").startswith("the dead share is higher with") == c.detected
    const_ce = np.array(list(_runs(ce, "constant_output", 2, 1.0, 0).values())) > 0
    const_sq = np.array(list(_runs(relu, "constant_output", 2, 1.0, 0).values())) > 0
    phrase = dr.count_phrase(const_ce, const_sq, ("the cross-entropy", "the squared loss"), "runs")
    assert phrase.startswith(f"{const_ce.sum()} of 40 runs with the cross-entropy against {const_sq.sum()} of 40")
    c = compare(_runs(leaky, "test_accuracy", 2, 3.0, 1), _runs(relu, "test_accuracy", 2, 3.0, 1),
                names=("the leaky ReLU", "ReLU"))
    # the chapter prints this phrase for a chaotic cell: it must follow its test, whatever the run
    assert dr.higher_phrase(c, "test accuracy").startswith("test accuracy is higher with") == c.detected
    # "whole networks end constant at ...": every listed cell has such runs, every other none
    cells = dr.constant_cells(relu)
    runs = relu["constant_output_runs"]
    for i, w in enumerate(relu["widths"]):
        for j, lr in enumerate(relu["learning_rates"]):
            listed = f"width {w}:" in cells and f"rate {lr:g} (" in cells.split(f"width {w}:")[1].split(";")[0]
            assert listed == bool(runs[i, j].sum() > 0)
    # "units still switch off on every point": the leaky ReLU does not prevent it
    assert np.mean(list(_runs(leaky, "dead_fraction", 2, 1.0, 0).values())) > 0.05
    # "the remedy that works across the whole grid is still the smaller learning rate"
    for grid in (relu, leaky):
        dead = grid["dead_fraction"][0, :, 0]
        assert dead[0] < dead[-1] / 2


def test_higher_phrase_names_a_direction_only_when_detected():
    a = {s: 0.5 + 0.01 * s for s in range(5)}
    b = {s: 0.1 + 0.01 * s + 0.001 * (s % 2) for s in range(5)}
    assert dr.higher_phrase(compare(a, b, names=("A", "B")), "x").startswith("x is higher with A than with B")
    assert dr.higher_phrase(compare(b, a, names=("B", "A")), "x").startswith("x is higher with A than with B")
    tied = compare(a, {s: v + (0.01 if s % 2 else -0.01) for s, v in a.items()}, names=("A", "B"))
    assert dr.higher_phrase(tied, "x").startswith("no detectable difference at five seeds")


def test_count_phrases_name_a_direction_only_when_the_exact_test_does():
    a = np.arange(40) < 7
    b = np.arange(40) < 3
    s = dr.count_phrase(a, b, ("A", "B"), "runs")
    assert s.startswith("7 of 40 runs with A against 3 of 40 with B") and s.endswith("not distinguishable at 40 seeds")
    s = dr.count_phrase(np.arange(40) < 20, np.zeros(40, bool), ("A", "B"), "runs")
    assert s.endswith("more with A")
    assert dr.fisher_phrase(3, 1, 240, ("A", "B"), "units").endswith("not distinguishable at 240 units")
    assert dr.fisher_phrase(30, 1, 240, ("A", "B"), "units").endswith("more with A")


def test_cross_entropy_push_fades_more_slowly():
    d = dr.output_deltas(np.array([-2.0, -4.0]))
    assert d["cross_entropy"][0] == pytest.approx(0.119, abs=1e-3)
    assert d["tanh_squared"][0] == pytest.approx(0.0025, abs=1e-4)
    assert (d["cross_entropy"] > 10 * d["tanh_squared"]).all()


def test_wide_robust_and_constant_cells_follow_the_grid():
    runs = np.zeros((2, 3, 2, 4))
    runs[1, 2, 1, 0] = 1  # width 8, rate 3, shuffled: one constant run
    grid = {"widths": np.array([2, 8]), "learning_rates": np.array([0.03, 1.0, 3.0]), "constant_output_runs": runs}
    assert dr.robust_up_to(grid, 8) == 1.0 and dr.robust_up_to(grid, 2) == 3.0
    assert dr.constant_cells(grid) == "width 8: rate 3 (0 grouped / 1 shuffled of 4)"


def test_order_cells_follow_the_mcnemar_test(remedies):
    grid = remedies["relu"]
    cells = dr.order_cells(grid)
    dead = grid["dead_fraction_runs"] > 0
    said = dr.order_sentence(grid)
    for c in cells:
        i, j = list(grid["widths"]).index(c["width"]), list(grid["learning_rates"]).index(c["rate"])
        phrase = dr.count_phrase(dead[i, j, 0], dead[i, j, 1], ("g", "s"), "networks")
        assert phrase.endswith("more with g") == (c["more"] == "grouped")
        assert phrase.endswith("more with s") == (c["more"] == "shuffled")
        assert f"{c['grouped']} / {c['shuffled']}" in dr.order_table(grid)
        segment = said.split(f"width {c['width']} at rate")[1].split(", width")[0] if f"width {c['width']} at" in said else ""
        listed = f"{c['rate']:g}" in segment.replace(",", " ").replace("s ", " ").split()
        assert listed == (c["more"] == "grouped")
    # facts of the stored grid that the chapter states in words
    assert dr.detected_at(grid, 2, 0.03)  # "in narrow layers even at Playground's rate"
    assert not any(c["more"] for c in cells if c["rate"] == 3.0)  # "at the largest rate ... alike"
    assert dr.order_sentence(grid, "shuffled") == "no cell"  # the chapter's wording when none


def test_cross_entropy_prediction_needs_the_interaction(remedies):
    relu, ce = remedies["relu"], remedies["logistic"]

    def effect(grid):
        g, s = _runs(grid, "dead_fraction", 8, 1.0, 0), _runs(grid, "dead_fraction", 8, 1.0, 1)
        return {k: g[k] - s[k] for k in g}

    main = compare(_runs(ce, "dead_fraction", 8, 1.0, 0), _runs(relu, "dead_fraction", 8, 1.0, 0),
                   names=("the cross-entropy", "the squared loss"))
    inter = compare(effect(ce), effect(relu), names=("the cross-entropy", "the squared loss"))
    holds = main.detected and main.difference > 0 and inter.detected and inter.difference > 0
    assert dr.prediction_phrase(main, inter).startswith("The prediction holds") == holds
    assert dr.prediction_phrase(main).startswith("The measurement is consistent") == (main.detected and main.difference > 0)


# OR and XOR (book/part1/or_xor.md)

def test_trained_xor_solutions_come_in_three_kinds():
    from nnlab.book import relu_logic as rl
    two = stored_studies.or_xor_networks()["xor_2"]  # the chapter's stored runs
    inputs = np.array([[0.0, 0.0], [1, 0], [0, 1], [1, 1]])
    kinds = {"sum": 0, "and": 0, "nor": 0}
    for run in np.flatnonzero(two["success"]):
        (w1, b1), (w2, _) = rl.trained_network(two, run)
        h = np.maximum(inputs @ w1 + b1, 0)  # (inputs, units)
        if (w2[:, 0] > 0).all():
            kinds["sum"] += 1  # each unit detects a different one-bit input
            assert sorted(h[1:3].argmax(0).tolist()) == [0, 1]
            continue
        neg, pos = int(np.argmin(w2[:, 0])), int(np.argmax(w2[:, 0]))
        # the subtracted unit fires on one input only, (1, 1) for an AND, (0, 0) for a NOR
        on = np.flatnonzero(h[:, neg] > 0.1 * h[:, neg].max())
        assert len(on) == 1 and on[0] in (0, 3)
        kinds["and" if on[0] == 3 else "nor"] += 1
        # the other unit counts the bits on (AND) or off (NOR): equal on the two one-bit inputs
        assert h[1, pos] == pytest.approx(h[2, pos], rel=0.05)
        assert h[3 if on[0] == 3 else 0, pos] == pytest.approx(2 * h[1, pos], rel=0.05)
    assert kinds["sum"] > 0 and kinds["and"] > 0 and kinds["nor"] > 0  # "several kinds", each named
    assert sum(kinds.values()) == int(two["success"].sum())


# Initialisation: the ReLU prediction across gains and across seeds (book/part1/initialisation.md)

def test_relu_gains_are_one_network_rescaled():
    from nnlab.book import initialisation as init
    per_gain = [init.relu_seed_ratios(g, seeds=(0,))[0] for g in init.SCALES.values()]
    assert max(per_gain) == pytest.approx(min(per_gain), rel=1e-9)  # "the same for all four"
    t = init.signal_propagation("relu", 1.0, seed=0)  # the forward pass uses the study's draws
    measured = t["activation_std"].iloc[-1] / t["activation_std"].iloc[0]
    assert per_gain[0] == pytest.approx(measured / init.predicted_relu_std_ratio(1.0, 29), rel=1e-9)
    over_seeds = init.relu_seed_ratios(1.0, seeds=tuple(range(10)))
    assert over_seeds.max() / over_seeds.min() > 1.5  # the scatter shows across seeds only


# Backpropagation: where the float32 gradient check loses its accuracy (book/part1/backprop.md)

def test_float32_check_is_dominated_by_the_rounding_of_the_loss():
    import torch
    nominal = bw.gradient_check(h=1e-6, dtype=torch.float32)["relative_error"]
    realised = bw.gradient_check(h=1e-6, dtype=torch.float32, realised_step=True)["relative_error"]
    assert nominal > 1e-2 and realised > 1e-2  # far from float64's agreement either way
    assert realised == pytest.approx(nominal, rel=0.2)  # the stored step changes little
    assert bw.gradient_check(h=1e-6, realised_step=True)["relative_error"] < 1e-6


# Saturation: the slope factor split into starting scale and slope (book/part1/saturation.md)

def test_scale_control_starts_from_the_centred_network_function():
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    start = pg.init_params((4, 2), "playground", SEEDS)
    same = pg.predict(sat.scaled_downstream(start), data.x_train, "half_centred_sigmoid")
    assert np.abs(same - pg.predict(start, data.x_train, "centred_sigmoid")).max() < 1e-12
    assert np.abs(start[1][0]).max() <= 0.5  # scaled_downstream copies, it does not scale in place


def test_scale_split_follows_its_two_tests():
    budgets = stored_saturation.CONTROL_BUDGETS
    reach = {("half_centred_sigmoid", lr): v for (a, lr), v in stored_saturation.centring().items()
             if a == "half_centred_sigmoid"}
    centred = {lr: v for (a, lr), v in stored_saturation.centring().items() if a == "centred_sigmoid"}
    control = stored_saturation.control()
    for lr in (0.03, 0.3):
        scale = sat.speed_comparison(reach["half_centred_sigmoid", lr], control[lr], ("half", "control"),
                                     (stored_saturation.RESCALED_BUDGETS["half_centred_sigmoid", lr], budgets[lr]),
                                     SEEDS)
        slope = sat.speed_comparison(control[lr], centred[lr], ("control", "centred"),
                                     (budgets[lr], stored_saturation.RESCALED_BUDGETS["centred_sigmoid", lr]), SEEDS)
        split = sat.scale_split(scale, slope)
        by_scale, by_slope = sat.slower(scale) == "half", sat.slower(slope) == "control"
        assert split.startswith("both parts count") == (by_scale and by_slope)
        assert split.startswith("the starting scale accounts") == (by_scale and not by_slope)
        assert split.startswith("the slope itself accounts") == (by_slope and not by_scale)
        assert split.startswith("neither part") == (not by_scale and not by_slope)
    fast, slow = np.arange(10) + 10.0, (np.arange(10) + 10.0) * 5
    tie = fast[::-1]
    c = {k: sat.speed_comparison(a, b, ("x", "y"), (4000, 4000), SEEDS)
         for k, (a, b) in {"slow": (slow, fast), "tie": (fast, tie)}.items()}
    assert sat.scale_split(c["slow"], c["tie"]).startswith("the starting scale accounts for it (5.0 times")
    assert sat.scale_split(c["tie"], c["slow"]).startswith("the slope itself accounts")
    assert sat.scale_split(c["tie"], c["tie"]).startswith("neither part")


def test_longer_budget_covers_exactly_the_cells_with_missing_seeds():
    short = stored_studies.saturation_learning_rates()
    long = stored_saturation.longer()
    missing = {k for k, v in short.items() if not np.isfinite(v).all()}
    assert set(long) == missing == set(stored_saturation.LONGER_CELLS)
    for k, v in long.items():  # the same training, only longer: seeds that got there agree
        reached = np.isfinite(short[k])
        assert np.array_equal(v[reached], short[k][reached])
    said = sat.late_arrivals(short, long, stored_saturation.LONGER_ITERATIONS, {"sigmoid": "S", "relu": "R"})
    for activation, lr in long:
        assert f"{'S' if activation == 'sigmoid' else 'R'} at rate {lr:g}:" in said


def test_late_arrivals_wording():
    nan = np.nan
    short = {("a", 1.0): np.array([1.0, nan, nan]), ("a", 2.0): np.array([nan, 5.0, 6.0]),
             ("a", 3.0): np.array([nan, nan, nan])}
    long = {("a", 1.0): np.array([1.0, 40.0, nan]), ("a", 2.0): np.array([70.0, 5.0, 6.0]),
            ("a", 3.0): np.array([nan, nan, nan])}
    said = sat.late_arrivals(short, long, 100, {"a": "A"})
    assert said == ("A at rate 1: 1 of 2 missing seeds gets there (after 40 iterations); "
                    "A at rate 2: the missing seed gets there (after 70 iterations); "
                    "A at rate 3: none of the 3 missing seeds gets there")


def test_single_unit_grid_of_the_or_xor_page_counts_exactly():
    # the page's grid, step 1/16: floating point must agree with the same count in integers
    k = np.arange(-48, 49)
    counts = rl.search_single_unit(k / 16)
    w1, w2, b = (g.ravel() for g in np.meshgrid(k, k, k, indexing="ij"))
    pre = np.stack([w1 * x1 + w2 * x2 + b for x1, x2 in rl.INPUTS.astype(int)], 1)  # in units of 1/16
    for name, target in rl.TARGETS.items():
        exact = np.all(pre[:, target == 0] <= 0, 1) & np.all(pre[:, target == 1] >= 16, 1)
        assert counts[name] == int(exact.sum()), name
    assert counts["xor"] == 0 and counts["and"] > 0 and counts["or"] > 0
    # the old step of 0.05 is not exact: rounding loses units that compute AND
    k20 = np.arange(-60, 61)
    w1, w2, b = (g.ravel() for g in np.meshgrid(k20, k20, k20, indexing="ij"))
    pre20 = np.stack([w1 * x1 + w2 * x2 + b for x1, x2 in rl.INPUTS.astype(int)], 1)
    t = rl.TARGETS["and"]
    exact_and = int((np.all(pre20[:, t == 0] <= 0, 1) & np.all(pre20[:, t == 1] >= 20, 1)).sum())
    assert rl.search_single_unit(np.linspace(-3, 3, 121))["and"] < exact_and


def test_paired_units_phrase_tests_networks_not_pooled_units():
    g = np.zeros(40, int)
    s = np.zeros(40, int)
    g[:3] = 1
    s[3] = 1
    phrase = dr.paired_units_phrase(g, s, 6, ("A", "B"))
    assert phrase.startswith("3 of 240 units with A against 1 of 240 with B")
    assert "more with A on 3 seeds and with B on 1; exact sign test" in phrase
    assert phrase.endswith("not distinguishable at 40 seeds")
    g[:20] = 2
    assert dr.paired_units_phrase(g, s, 6, ("A", "B")).endswith("more with A")
    assert "no difference to test" in dr.paired_units_phrase(s, s, 6, ("A", "B"))


def test_count_phrase_without_discordant_seeds_reports_no_test():
    none = np.zeros(40, bool)
    assert dr.count_phrase(none, none, ("A", "B"), "runs") == "no runs with A or with B (of 40 seeds each)"
    same = np.arange(40) < 2
    assert "McNemar" not in dr.count_phrase(same, same, ("A", "B"), "runs")
