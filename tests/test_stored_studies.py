"""The chapters' slow studies stored as analyses (nnlab.book.stored_studies): each stored
value is what its computation returns, checked on a cheap part computed again."""

from __future__ import annotations

import numpy as np
import pytest

from nnlab import analyses
from nnlab.book import stored_studies as S


@pytest.mark.parametrize("name", [S.SOFTMAX_GRADIENTS, S.OR_XOR, S.POOLING_CHANGE, S.SATURATION_LR])
def test_every_study_is_a_current_analysis_of_fixed_data(name):
    a = analyses.get(name)
    assert a.experiments == () and "nnlab.book.stored_studies" in a.code
    assert analyses.status(name).state == "ok"


def test_arrays_come_back_with_their_dtype_shape_and_values():
    value = [np.arange(6, dtype=np.float32).reshape(2, 3) / 7, np.array([True, False])]
    back = S._decode(S._encode(value))
    assert [b.dtype for b in back] == [np.float32, np.bool_] and back[0].shape == (2, 3)
    assert all(np.array_equal(a, b) for a, b in zip(value, back))


def test_stored_or_xor_networks_match_a_seed_trained_again():
    from nnlab.book import relu_logic as rl

    stored = S.or_xor_networks()
    assert set(stored) == set(S.OR_XOR_SHAPES) and len(stored["xor_2"]["success"]) == len(S.OR_XOR_SEEDS)
    hidden, function = S.OR_XOR_SHAPES["xor_0"]
    again = rl.train_relu_networks(hidden, function, seeds=S.OR_XOR_SEEDS[:2])
    assert np.array_equal(again["success"], stored["xor_0"]["success"][:2])
    assert again["final_loss"] == pytest.approx(stored["xor_0"]["final_loss"][:2], rel=1e-9, abs=1e-12)


def test_stored_saturation_grid_matches_a_rate_trained_again():
    from nnlab import playground as pg

    stored = S.saturation_learning_rates()
    assert set(stored) == {(a, lr) for a in ("relu", "sigmoid") for lr in S.SATURATION_GRID}
    cfg = pg.PlaygroundConfig(activation="relu", learning_rate=1.0, iterations=S.SATURATION_ITERATIONS["relu"])
    runs = pg.train(cfg, pg.make_dataset("circle", noise=0.0, seed=0), seeds=S.SATURATION_SEEDS)
    assert np.array_equal(pg.iterations_to_loss(runs, 0.1), stored["relu", 1.0], equal_nan=True)


def test_stored_dying_relu_studies_match_seeds_trained_again():
    from nnlab import playground as pg
    from nnlab.book import stored_dying_relu as D

    for name in (D.EXPERIMENT, D.GRID, D.REMEDIES):
        assert analyses.get(name).experiments == () and analyses.status(name).state == "ok"
    r = D.experiment()
    assert r.seeds == D.SEEDS and r.dead_fraction.shape[:2] == (2, len(D.SEEDS))
    again = pg.dying_relu_experiment(seeds=D.SEEDS[:3], hidden=D.HIDDEN, learning_rate=D.LEARNING_RATE,
                                     epochs=D.EPOCHS, checkpoint_every=100)
    assert np.array_equal(again.test_accuracy, r.test_accuracy[:, :3])
    grid = D.grid()
    assert list(grid["widths"]) == list(D.GRID_WIDTHS) and grid["dead_fraction_runs"].shape[-1] == len(D.SEEDS)
    small = pg.dying_relu_grid(widths=(2,), learning_rates=(1.0,), seeds=D.SEEDS[:3], epochs=D.GRID_EPOCHS)
    i, j = D.GRID_WIDTHS.index(2), D.GRID_LEARNING_RATES.index(1.0)
    assert np.array_equal(small["dead_fraction_runs"][0, 0], grid["dead_fraction_runs"][i, j][:, :3])


def test_stored_saturation_runs_match_runs_trained_again():
    from nnlab import playground as pg
    from nnlab.book import stored_saturation as T

    for name in (T.RUNS, T.CENTRING):
        assert analyses.get(name).experiments == () and analyses.status(name).state == "ok"
    runs = T.runs()
    assert set(runs) == {"random", "zero", "relu", "symmetrised"}
    assert sorted(runs["random"].snapshots) == list(T.FRAMES) and runs["zero"].seeds == (0,)
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    short = pg.PlaygroundConfig(activation="relu", iterations=50)  # the same seeds, fewer iterations
    again = pg.train(short, data, seeds=T.SEEDS[:2])
    assert np.array_equal(again.test_loss, runs["relu"].test_loss[:2, :51])
    assert np.array_equal(again.grad_norm, runs["relu"].grad_norm[:2, :51])
    assert runs["relu"].config == T.configs()["relu"]
    ablation = T.centring()
    assert set(ablation) == set(T.RESCALED_BUDGETS) and ablation["centred_sigmoid", 0.3].shape == (len(T.SEEDS),)
    cfg = pg.PlaygroundConfig(activation="centred_sigmoid", learning_rate=0.3, iterations=T.RESCALED_BUDGETS[
        "centred_sigmoid", 0.3])
    assert np.array_equal(pg.iterations_to_loss(pg.train(cfg, data, seeds=T.SEEDS[:2]), 0.1),
                          ablation["centred_sigmoid", 0.3][:2], equal_nan=True)


def test_stored_scale_control_matches_seeds_trained_again():
    from nnlab import playground as pg
    from nnlab.book import saturation as sat
    from nnlab.book import stored_saturation as T

    assert analyses.get(T.CONTROL).experiments == () and analyses.status(T.CONTROL).state == "ok"
    control = T.control()
    assert set(control) == set(T.CONTROL_BUDGETS) and control[0.3].shape == (len(T.SEEDS),)
    data = pg.make_dataset("circle", noise=0.0, seed=0)
    again = sat.scale_control(data, T.SEEDS[:2], {0.3: T.CONTROL_BUDGETS[0.3]})
    assert np.array_equal(again[0.3], control[0.3][:2], equal_nan=True)


@pytest.mark.parametrize("dtype", ["<f8", ">f4", "<i8", "|b1"])
def test_binary_arrays_come_back_bit_for_bit(dtype):
    from nnlab.book import stored_saturation as T

    value = (np.arange(12).reshape(3, 4) / 7 - 0.5).astype(dtype)
    back = T.array_from_json(T.array_to_json(value))
    assert back.shape == (3, 4) and np.array_equal(back, value) and back.flags.writeable
    assert back.dtype.kind == value.dtype.kind and back.dtype.itemsize == value.dtype.itemsize


def test_stored_dying_relu_remedies_match_seeds_trained_again():
    from nnlab import playground as pg
    from nnlab.book import stored_dying_relu as D

    stored = D.remedies()
    assert list(stored["leaky"]["widths"]) == list(D.LEAKY_WIDTHS)
    assert list(stored["logistic"]["widths"]) == list(D.LOGISTIC_WIDTHS)
    again = pg.dying_relu_grid(widths=(8,), learning_rates=(3.0,), seeds=D.SEEDS[:3], epochs=D.GRID_EPOCHS,
                               loss="logistic")
    i, j = D.LOGISTIC_WIDTHS.index(8), D.GRID_LEARNING_RATES.index(3.0)
    for key in ("dead_fraction_runs", "test_accuracy_runs"):
        assert np.array_equal(again[key][0, 0], stored["logistic"][key][i, j][:, :3])
