"""Tasks beyond classification: regression and a task by import path, their divergence
checks, data validation, unchanged classification hashes, and torch Datasets in memory."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from nnlab import experiments as E
from nnlab import plots, tasks
from nnlab.data import ArrayData, DataError, from_dataset
from nnlab.models import build
from nnlab.train import ConfigError, DivergedError, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

# TrainConfig().to_dict() before tasks existed: the default recipe's hashed form
DEFAULT_RECIPE_BEFORE = {"epochs": 10, "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                         "momentum": 0.9, "schedule": "none", "warmup": 0.2, "milestones": [], "augment": "none",
                         "max_shift": 2.0, "label_smoothing": 0.0, "eval_batch": 5000}


def linear_problem(n: int = 600, outputs: tuple[int, ...] = (), scale: float = 1.0, offset: float = 0.0, seed: int = 0):
    """Inputs (n, 4) and float32 targets of shape (n, *outputs): a linear map plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    w = torch.randn(4, max(1, math.prod(outputs)), generator=g)
    y = (x @ w + 0.1 * torch.randn(n, w.shape[1], generator=g)).reshape(n, *outputs) * scale + offset
    return x, y.float()


def regression_data(**kw) -> dict:
    x, y = linear_problem(**kw)
    return {"train": (x[:400], y[:400]), "val": (x[400:500], y[400:500]), "test": (x[500:], y[500:])}


def mlp_for(outputs: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return build(("linear 32", "relu", f"linear {outputs}"), (4,))


def test_default_recipe_hashes_as_before():
    assert TrainConfig().to_dict() == DEFAULT_RECIPE_BEFORE
    assert TrainConfig(task="classification").to_dict() == DEFAULT_RECIPE_BEFORE
    assert TrainConfig(task="regression").to_dict() == {**DEFAULT_RECIPE_BEFORE, "task": "regression"}


def test_every_stored_book_result_keeps_its_variant_hashes():
    """The stored configs of the book's results hash as the registered experiments do now."""
    stored = sorted((ROOT / "results").glob("*/result.json"))
    assert stored, "the book's results are missing"
    for path in stored:
        config = json.loads(path.read_text())["config"]
        now, then = E.get(config["name"]).variant_hashes(), E.variant_hashes(config)
        assert {v: h for v, h in then.items() if v in now} == {v: now[v] for v in then if v in now}, path


def test_regression_learns_and_reports_rmse_and_r2(one_thread):
    data = regression_data()
    res = train(mlp_for(), TrainConfig(task="regression", epochs=15, lr=1e-2), data=data, device="cpu")
    assert set(res.val_metrics) == set(res.test_metrics) == {"loss", "rmse", "r2"}
    assert res.val_acc is None and res.test_acc is None
    assert res.test_metrics["rmse"] == pytest.approx(math.sqrt(res.test_metrics["loss"]), rel=1e-9)
    assert res.val_metrics["r2"] > 0.95 and res.test_metrics["r2"] > 0.95
    assert set(res.history) == {"train_loss", "val_loss", "val_rmse", "val_r2", "lr", "seconds"}
    assert res.history["val_rmse"][-1] == res.val_metrics["rmse"]
    assert res.record()["test_r2"] == res.test_metrics["r2"]


def test_rmse_and_r2_agree_with_scikit_learn():
    from sklearn.metrics import mean_squared_error, r2_score

    g = np.random.default_rng(1)
    y, out = g.normal(size=(50, 3)), g.normal(size=(50, 3))
    y[:, 2] = 5.0  # a constant column: scored 1 if exact, else 0, as scikit-learn does
    out_t, y_t = torch.from_numpy(out), torch.from_numpy(y)
    assert tasks.rmse(out_t, y_t) == pytest.approx(math.sqrt(mean_squared_error(y, out)), rel=1e-12)
    assert tasks.r2(out_t, y_t) == pytest.approx(r2_score(y, out), rel=1e-12)


def test_regression_targets_of_any_shape(one_thread):
    data = ArrayData("linear-2x3", train=linear_problem(outputs=(2, 3)))
    assert data.targets == "values" and data.target_shape == (2, 3) and data.num_classes == 6
    assert "classes" not in data.describe() and data.describe()["targets"] == {"kind": "values", "shape": [2, 3]}
    res = train(mlp_for(6), TrainConfig(task="regression", epochs=10, lr=1e-2), data=data, device="cpu")
    assert res.val_metrics["r2"] > 0.9
    with pytest.raises(tasks.TaskError, match=r"returns \(5,\) per sample but the targets have shape \(2, 3\).*6 "):
        train(mlp_for(5), TrainConfig(task="regression", epochs=1), data=data, device="cpu")


def test_whole_number_float_targets_are_values_when_asked():
    x, y = linear_problem()
    y = y.round()  # whole numbers, some negative: read as class labels, as ever, and refused so
    with pytest.raises(DataError, match=r"labels must lie in .*for a regression's float targets, targets='values'"):
        ArrayData("r", train=(x, y))
    assert ArrayData("r", train=(x, y), targets="values").targets == "values"
    with pytest.raises(DataError, match="must be floating-point values for regression"):
        ArrayData("r", train=(x, y.long()), targets="values")


@pytest.mark.parametrize("task, targets, message", [
    ("regression", "labels", r"int64 class labels, but task 'regression' learns float values.*targets='values'"),
    ("classification", "values", r"float32 values, but task 'classification' needs integer class labels"),
    ("classification", "too-many", r"labels include class 9, but the model has 3 outputs"),
])
def test_targets_of_the_wrong_kind_are_refused_in_one_line(task, targets, message, one_thread):
    x, y = linear_problem()
    y = {"labels": torch.arange(len(x)) % 3, "values": y, "too-many": torch.arange(len(x)) % 10}[targets]
    data = {"train": (x[:400], y[:400]), "val": (x[400:], y[400:])}
    with pytest.raises((DataError, tasks.TaskError), match=message) as info:
        train(mlp_for(3 if task == "classification" else 1), TrainConfig(task=task, epochs=1), data=data,
              device="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "ranking"}, "unknown task 'ranking'; choose one of classification, regression, or 'module:attr'"),
    ({"task": "regression", "label_smoothing": 0.1}, "label_smoothing applies to classification only"),
])
def test_bad_task_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_regression_blow_up_is_refused(one_thread):
    with pytest.raises(DivergedError, match="training diverged"):
        train(mlp_for(), TrainConfig(task="regression", optimizer="sgd", momentum=0.0, lr=50.0, epochs=3),
              data=regression_data(scale=30.0), device="cpu")


def test_regression_that_learns_nothing_is_judged_against_the_training_mean(one_thread):
    """Targets far from zero: a network that barely moves stays far worse than their mean."""
    data = regression_data(offset=100.0)
    frozen = TrainConfig(task="regression", optimizer="sgd", momentum=0.0, lr=1e-9, epochs=2)
    with pytest.raises(DivergedError, match=r"validation loss after epoch 2 is .*, no better than predicting the "
                                            r"training mean"):
        train(mlp_for(), frozen, data=data, device="cpu")
    kept = train(mlp_for(), frozen, data=data, device="cpu", keep_failed=True)
    assert "no better than predicting the training mean" in kept.extra["failed"]
    # long enough to be judged on its training R²
    with pytest.raises(DivergedError, match=r"training R² after epoch \d+ is -\d+.*no better than predicting the "
                                            "training mean where it started"):
        train(mlp_for(), TrainConfig(task="regression", optimizer="sgd", momentum=0.0, lr=1e-9, epochs=20,
                                     batch_size=16), data=data, device="cpu")
    # an honest run on the same data is kept: the mean, not zero, is what it must beat
    honest = train(mlp_for(), TrainConfig(task="regression", lr=3e-2, epochs=30), data=data, device="cpu")
    assert honest.val_metrics["r2"] > 0.5 and "failed" not in honest.extra


def test_a_task_by_import_path_trains_with_its_loss_and_metrics(one_thread):
    res = train(mlp_for(), TrainConfig(task="custom_tasks:L1", epochs=10, lr=1e-2), data=regression_data(),
                device="cpu")
    assert set(res.val_metrics) == {"loss", "mae"}
    assert res.val_metrics["loss"] == pytest.approx(res.val_metrics["mae"], rel=1e-5)  # both mean |error|
    assert res.val_metrics["mae"] < 0.3  # the noise is 0.1; targets vary by about 2
    assert repr(tasks.get("custom_tasks:L1")).startswith("Task('l1'")


@pytest.mark.parametrize("path, message", [
    ("no_such_course.tasks:L1", r"cannot import no_such_course.tasks .*PYTHONPATH"),
    ("custom_tasks:NOT_A_TASK", r"NOT_A_TASK in custom_tasks is str, not an nnlab.tasks.Task"),
])
def test_a_task_that_cannot_be_found_is_one_line(path, message):
    cfg = TrainConfig(task=path)  # well-formed: found only where it trains
    with pytest.raises(ConfigError, match=message):
        train(mlp_for(), cfg, data=regression_data(), device="cpu")


def test_a_small_dataset_is_held_in_memory_and_a_large_one_refused(one_thread):
    x, y = linear_problem()
    held = from_dataset("linear", TensorDataset(x, y))
    assert held.describe() == ArrayData("linear", train=(x, y)).describe()  # same data, same hash
    with pytest.raises(DataError, match=r"the train dataset needs about .* GiB in memory \(600 items\), more than "):
        from_dataset("linear", TensorDataset(x, y), max_bytes=1000)
    with pytest.raises(DataError, match="a torch Dataset.*nnlab.data.from_dataset"):
        train(mlp_for(), TrainConfig(task="regression"), data=TensorDataset(x, y), device="cpu")


def test_plots_name_the_tasks_metrics():
    assert plots.metric_label("val_rmse") == "validation RMSE"
    assert plots.metric_label("test_r2") == "test R²"
    assert plots.metric_label("val_acc") == "validation accuracy"
    fig = plots.curves({"mlp": [{"val_rmse": [2.0, 1.0]}]}, keys=("val_rmse",))
    assert fig.axes[0].get_ylabel() == "RMSE" and fig.axes[0].get_title() == "validation RMSE"


def test_a_submitted_recipe_cannot_name_a_task():
    """A graded submission's recipe() may tune training, never name the task: a task by import
    path would import a module of the student's choosing on the grader's trusted side."""
    from nnlab.grade import Problem
    from nnlab.grade.grader import _submitted_recipe
    from nnlab.rules import Rules

    problem = Problem("D", ArrayData("tiny", train=(torch.zeros(40, 1, 2, 2), torch.zeros(40).long())),
                      Rules("any", frozenset()), 0.5)
    for task in ("regression", "os:system"):
        recipe, why = _submitted_recipe(problem, {"task": task, "epochs": 1})
        assert recipe is None and why == "recipe() gave unknown or wrongly typed fields: task"
    assert _submitted_recipe(problem, {"epochs": 1})[0].task == "classification"


def test_an_interrupted_regression_resumes_to_the_uninterrupted_result(tmp_path, one_thread):
    cfg = TrainConfig(task="regression", epochs=4, lr=1e-2)
    data = regression_data(offset=3.0)
    whole = train(mlp_for(), cfg, data=data, device="cpu")
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(mlp_for(), cfg, data=data, device="cpu", checkpoint=ckpt, stop_after_epoch=lambda e: e == 2)
    resumed = train(mlp_for(), cfg, data=data, device="cpu", checkpoint=ckpt, resume=True)
    assert resumed.extra["resumed_from_epoch"] == 2
    assert resumed.history["val_rmse"] == whole.history["val_rmse"] and resumed.test_metrics == whole.test_metrics
