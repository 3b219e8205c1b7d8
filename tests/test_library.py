"""nnlab as a library for another course: its own data, experiments, folder and results.

These tests play an instructor of another course: a folder of their own with a
``pyproject.toml`` whose ``[tool.nnlab]`` table names their experiment module, data that is
not MNIST, and the ``nnlab`` command run from there (in parallel too).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlab import augment, project
from nnlab import experiments as E
from nnlab.data import MNIST, ArrayData, DataError, fashion_mnist, kmnist
from nnlab.models import ModelDataMismatch, build, check_fits, mlp
from nnlab.runner import run_experiment
from nnlab.train import ConfigError, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]

COURSE_MODULE = '''
"""A small course: three shapes of 6x6 images, told apart by a two-layer MLP."""
import numpy as np

from nnlab.data import ArrayData
from nnlab.experiments import Experiment, Variant, register
from nnlab.models import mlp
from nnlab.rules import Rules
from nnlab.train import TrainConfig


def shapes(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 6, 6)).astype(np.float32)
    x[y == 0, 2:4, :] += 1.0     # a horizontal bar
    x[y == 1, :, 2:4] += 1.0     # a vertical bar
    x[y == 2, 1:5, 1:5] += 0.6   # a square
    return x, y


SHAPES = ArrayData("shapes-6x6", train=shapes(600, 0), test=shapes(300, 1))
RULES = Rules("at most 24 hidden units, at least 2 hidden layers", {"Flatten", "Linear", "ReLU"},
              max_hidden_units=24, min_hidden_layers=2)

register(Experiment(
    name="shapes-mlp", purpose="Tell three shapes apart.", chapter="lecture 3",
    variants=(Variant("16-8", tuple(mlp([16, 8], classes=3))), Variant("12-12", tuple(mlp([12, 12], classes=3)))),
    train=TrainConfig(epochs=3, batch_size=32, lr=3e-3), seeds=(0, 1), rules=RULES, data=SHAPES))
'''


COURSE_MODELS = '''
"""The course's own model: a residual network small enough for 6x6 images."""
from torch import nn


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.conv(x))


def small_resnet(input_shape, classes, width=8):
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), Residual(width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))
'''

COURSE_FACTORY_EXPERIMENT = '''
register(Experiment(
    name="shapes-resnet", purpose="The course's own residual network.", chapter="lecture 4",
    variants=(Variant("resnet-8", factory="mycourse.models:small_resnet", kwargs={"width": 8}),),
    train=TrainConfig(epochs=2, batch_size=32, lr=3e-3), seeds=(0, 1), data=SHAPES))
'''

COURSE_REGRESSION_EXPERIMENT = '''

def wave(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (n, 2)).astype(np.float32)
    return x, np.sin(x[:, 0]) + 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.1, n).astype(np.float32)


register(Experiment(
    name="wave-mlp", purpose="Fit a smooth function of two inputs.", chapter="lecture 5",
    variants=(Variant("mlp-4", ("linear 4", "relu", "linear 1")), Variant("mlp-32", ("linear 32", "relu", "linear 1"))),
    train=TrainConfig(task="regression", epochs=8, batch_size=32, optimizer="adam", lr=0.01), seeds=(0, 1),
    data=ArrayData("wave-2d", train=wave(400, 0), test=wave(200, 1), targets="values"), save_weights=False))
'''


def _course(tmp_path: Path, results: str = "my-results") -> Path:
    """A course folder: pyproject.toml with [tool.nnlab] and a package with its experiments."""
    folder = tmp_path / "course"
    (folder / "mycourse").mkdir(parents=True)
    (folder / "mycourse" / "__init__.py").write_text("")
    (folder / "mycourse" / "experiments.py").write_text(COURSE_MODULE)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [project]
        name = "mycourse"
        version = "1.0"

        [tool.nnlab]
        experiments = ["mycourse.experiments"]
        results = "{results}"
        """))
    return folder


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNLAB_")}
    env.update(NNLAB_DATA=os.environ["NNLAB_DATA"], OMP_NUM_THREADS="1", **extra)
    return env


def _nnlab(args: list[str], cwd: Path, env: dict | None = None, python: str = sys.executable):
    return subprocess.run([python, "-m", "nnlab", *args], cwd=cwd, env=env or _env(), capture_output=True,
                          text=True, timeout=300)


def test_importing_the_core_registers_nothing_and_imports_no_book(tmp_path):
    code = ("import sys, nnlab, nnlab.experiments as E, nnlab.results, nnlab.runner, nnlab.cli, nnlab.data, "
            "nnlab.plots, nnlab.playground, nnlab.widgets\n"
            "assert E.REGISTRY == {}, E.REGISTRY\n"
            "print(sorted(m for m in sys.modules if m.startswith('nnlab.book')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_book_declares_its_catalogue_in_pyproject():
    proj = project.current(ROOT / "book" / "part2")  # where a chapter runs
    assert proj.config_file == ROOT / "pyproject.toml"
    assert proj.experiments == ("nnlab.book.experiments", "nnlab.book.stored_catalogue")
    assert proj.results == ROOT / "results"


def test_mnist_description_is_unchanged_so_stored_results_stay_current():
    assert MNIST.describe() == {"dataset": "MNIST", "val_size": 5000, "split_seed": 0}
    assert E.get("mlp-100").config()["data"] == MNIST.describe()


def test_a_course_lists_trains_in_parallel_and_stores_its_own_data(tmp_path):
    course = _course(tmp_path)
    listing = _nnlab(["list"], cwd=course / "mycourse")  # from a subfolder, as pytest finds its config
    assert listing.returncode == 0, listing.stderr
    assert "shapes-mlp" in listing.stdout and "mlp-100" not in listing.stdout
    assert f"results:     {course / 'my-results'}" in listing.stdout
    assert "mycourse.experiments" in listing.stdout

    proc = _nnlab(["train", "shapes-mlp", "--jobs", "2", "--device", "cpu"], cwd=course)
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((course / "my-results" / "shapes-mlp" / "result.json").read_text())
    assert stored["config"]["data"]["dataset"] == "shapes-6x6"
    assert stored["config"]["data"]["input_shape"] == [1, 6, 6]
    assert len(stored["runs"]) == 4
    for run in stored["runs"].values():
        assert run["data"] == stored["config"]["data"]  # what the worker really trained on
        assert run["val_acc"] > 0.9 and run["test_acc"] > 0.9  # chance is 1/3: it learned the shapes
        assert (course / "my-results" / "shapes-mlp" / run["weights"]["file"]).is_file()
    assert not (ROOT / "results" / "shapes-mlp").exists()

    check = _nnlab(["results", "check", "shapes-mlp"], cwd=course)
    assert check.returncode == 0 and "all 1 results present and current" in check.stdout


def test_experiments_from_the_environment_or_the_flag_override_the_table(tmp_path):
    course = _course(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    proc = _nnlab(["list"], cwd=other, env=_env(PYTHONPATH=str(course), NNLAB_EXPERIMENTS="mycourse.experiments"))
    assert "shapes-mlp" in proc.stdout and "from $NNLAB_EXPERIMENTS" in proc.stdout
    proc = _nnlab(["train", "shapes-mlpp", "--experiments", "mycourse.experiments"], cwd=other,
                  env=_env(PYTHONPATH=str(course)))
    assert proc.returncode == 1
    assert "Did you mean shapes-mlp?" in proc.stderr
    assert "`nnlab list --experiments mycourse.experiments`" in proc.stderr  # a hint that works here


def test_no_experiments_and_bad_modules_get_one_clear_line(tmp_path):
    proc = _nnlab(["train", "anything"], cwd=tmp_path)
    assert proc.returncode == 1 and "no experiments are registered" in proc.stderr
    assert "[tool.nnlab]" in proc.stderr and "Traceback" not in proc.stderr
    listing = _nnlab(["list"], cwd=tmp_path)
    assert listing.returncode == 0 and f"results:     {tmp_path / 'results'}" in listing.stdout
    proc = _nnlab(["list", "--experiments", "no_such_course.experiments"], cwd=tmp_path)
    assert proc.returncode == 1 and "cannot import experiment module 'no_such_course.experiments'" in proc.stderr
    (tmp_path / "pyproject.toml").write_text('[tool.nnlab]\nexperiment = ["x"]\n')
    proc = _nnlab(["list"], cwd=tmp_path)
    assert proc.returncode == 1 and "unknown key(s) experiment in [tool.nnlab]" in proc.stderr


def test_results_check_names_a_results_folder_that_does_not_exist(tmp_path):
    course = _course(tmp_path)
    proc = _nnlab(["results", "check"], cwd=course, env=_env(NNLAB_RESULTS=str(tmp_path / "typo")))
    assert proc.returncode == 1 and f"the results folder {tmp_path / 'typo'} does not exist" in proc.stdout


def test_an_experiment_defined_in_a_script_trains_in_parallel_without_registering(tmp_path):
    """Workers get the experiment by value: one built inside main() of a script read from
    standard input needs no registry and no importable module."""
    script = COURSE_MODULE.replace("register(Experiment(", "EXP = (Experiment(") + textwrap.dedent("""
        from nnlab.runner import run_experiment
        from nnlab import results

        def main():
            run_experiment(EXP, jobs=2, device="cpu", log=lambda m: None)
            print(results.summary(EXP, "test_acc", "16-8")["n"])

        if __name__ == "__main__":
            main()
        """)
    proc = subprocess.run([sys.executable, "-"], input=script, cwd=tmp_path, capture_output=True, text=True,
                          env=_env(NNLAB_RESULTS=str(tmp_path / "r")), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"


def test_register_is_idempotent_for_equal_experiments_and_refuses_a_different_one(register_experiment):
    exp = E.get("mlp-100")
    assert E.register(exp) is exp  # a module imported again
    from dataclasses import replace

    with pytest.raises(ValueError, match="registered twice with different settings"):
        E.register(replace(exp, seeds=(5,)))


# --------------------------------------------------------------------------------------
# Data and shapes

def test_array_data_holds_out_a_seeded_validation_split_and_normalises():
    x = np.arange(200 * 4, dtype=np.float64).reshape(200, 4)
    y = np.arange(200) % 4
    a, b = ArrayData("ramp", train=(x, y)), ArrayData("ramp", train=(x, y))
    assert a.input_shape == (4,) and a.num_classes == 4 and not a.has_split("test")
    xa, ya = a.load("val")
    assert len(ya) == 20 and torch.equal(xa, b.load("val")[0])
    xt, _ = a.load("train")
    assert torch.allclose(xt.mean(0), torch.zeros(4), atol=1e-5)
    assert a == b and a.describe()["sha256"] != ArrayData("ramp", train=(x + 1, y)).describe()["sha256"]
    with pytest.raises(DataError, match="labels must lie in 0..2"):
        ArrayData("bad", train=(x, y), num_classes=3)
    with pytest.raises(DataError, match="no test split"):
        a.load("test")


def test_train_takes_numpy_arrays_and_names_a_missing_validation_split(one_thread):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)  # learnable: a run that learns nothing is refused
    torch.manual_seed(0)  # 40 steps learn it from any of 40 seeds tried; 4 steps left 8 of them at chance
    model = build(["linear 8", "relu", "linear 2"], input_shape=(5,))
    res = train(model, TrainConfig(epochs=10, batch_size=64, lr=1e-2),
                data={"train": (x, y), "val": (x[:64], y[:64])}, device="cpu")
    assert res.val_acc is not None and res.test_acc is None
    with pytest.raises(ConfigError, match="no 'val' split"):
        train(model, TrainConfig(epochs=1), data={"train": (x, y)}, device="cpu")
    with pytest.raises(ConfigError, match="augment='shift' distorts images"):
        train(model, TrainConfig(epochs=1, augment="shift"), data={"train": (x, y), "val": (x, y)}, device="cpu")


def test_a_model_that_does_not_fit_its_data_is_refused_before_training(tmp_path, results_dir):
    digits = ArrayData("tiny-8x8", train=(np.zeros((40, 8, 8)), np.arange(40) % 5))
    check_fits(build(mlp([8], classes=5), input_shape=digits.input_shape), digits.input_shape, 5)
    with pytest.raises(ModelDataMismatch, match=r"returns \(10,\) per input of shape \(1, 8, 8\), but the data has 5"):
        check_fits(build(mlp([8], classes=10), input_shape=digits.input_shape), digits.input_shape, 5)
    with pytest.raises(ModelDataMismatch, match=r"does not take the data's inputs of shape \(1, 8, 8\)"):
        check_fits(build(mlp([8], classes=5), (1, 28, 28)), digits.input_shape, 5)  # built for 28x28
    exp = E.Experiment("wrong-classes", "", "", (E.Variant("v", tuple(mlp([8], classes=10))),), TrainConfig(epochs=1),
                       seeds=(0,), data=digits)
    with pytest.raises(ModelDataMismatch, match="the data has 5 classes"):
        run_experiment(exp, device="cpu")
    assert not (results_dir / "wrong-classes").exists()


def test_shift_moves_every_channel_of_an_image_together():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(6, 3, 10, 10)
    out = augment.distort(img, "shift", torch.Generator().manual_seed(1), background=0.0)
    for c in range(3):  # each channel shifted alone, with the same random draws, moves the same way
        alone = augment.distort(img[:, c:c + 1].contiguous(), "shift", torch.Generator().manual_seed(1),
                                background=0.0)
        assert torch.equal(out[:, c:c + 1], alone)
    assert not torch.equal(out[:, 0], out[:, 1])  # not channel 0 copied everywhere
    with pytest.raises(ValueError, match=r"needs a float batch of images \(N, C, H, W\)"):
        augment.distort(torch.rand(6, 64), "affine", g, background=0.0)


def test_other_torchvision_sets_name_their_own_folder_when_missing(tmp_path, monkeypatch):
    from nnlab import data

    monkeypatch.setenv("NNLAB_DATA", str(tmp_path))
    data.clear_cache()
    try:
        for source, folder in ((fashion_mnist(), "FashionMNIST"), (kmnist(), "KMNIST")):
            assert source.describe()["dataset"] == folder and source.input_shape == (1, 28, 28)
            with pytest.raises(DataError, match=f"{folder}/raw") as info:
                source.load("train")
            assert "NNLAB_DATA" in str(info.value)
    finally:
        monkeypatch.undo()
        data.clear_cache()


# --------------------------------------------------------------------------------------
# The installed wheel, outside the repository

@pytest.mark.slow
def test_the_built_wheel_trains_a_course_outside_the_repository(tmp_path, built_package):
    target = built_package["site"]
    course = _course(tmp_path, results="results")
    (course / "mycourse" / "models.py").write_text(COURSE_MODELS)  # and a model of the course's own
    with open(course / "mycourse" / "experiments.py", "a") as f:
        f.write(COURSE_FACTORY_EXPERIMENT + COURSE_REGRESSION_EXPERIMENT)  # and a regression
    env = _env(PYTHONPATH=str(target))
    where = subprocess.run([sys.executable, "-c", "import nnlab; print(nnlab.__file__)"], cwd=course, env=env,
                           capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(target))  # the installed copy, not the repository's
    listing = _nnlab(["list"], cwd=course, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "shapes-mlp" in listing.stdout
    assert not any(name in listing.stdout for name in ("mlp-100", "cnn-final", "pooling-ablation"))
    proc = _nnlab(["train", "--all", "--jobs", "2", "--device", "cpu"], cwd=course, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (course / "results" / "shapes-mlp" / "result.json").is_file()
    assert not list(target.rglob("result.json"))  # nothing lands inside the installed package
    runs = json.loads((course / "results" / "shapes-resnet" / "result.json").read_text())["runs"]
    assert sorted(runs) == ["resnet-8/seed=0", "resnet-8/seed=1"]  # trained by pool workers, imported by path
    assert {r["model_source"]["file"] for r in runs.values()} == {"mycourse/models.py"}
    assert _nnlab(["results", "check"], cwd=course, env=env).returncode == 0
    _assert_tables_show(course, env)
    with open(course / "mycourse" / "models.py", "a") as f:  # the instructor edits the model
        f.write("# a wider head next week\n")
    check = _nnlab(["results", "check"], cwd=course, env=env)
    assert check.returncode == 1
    (stale,) = [line for line in check.stdout.splitlines() if "stale" in line]
    assert stale.startswith("shapes-resnet: stale: ") and "resnet-8: model code in mycourse/models.py" in stale


def _assert_tables_show(course: Path, env: dict) -> None:
    """`nnlab results show` prints each task's table with its own metrics, and writes it as CSV."""
    regression = json.loads((course / "results" / "wave-mlp" / "result.json").read_text())["runs"]
    assert len(regression) == 4 and all(r["val_rmse"] > 0 and r["test_r2"] < 1 for r in regression.values())
    assert all(r["test_r2"] > 0.5 for r in regression.values())  # better than predicting the mean
    shown = _nnlab(["results", "show", "wave-mlp"], cwd=course, env=env)
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert "val rmse" in header and "val r2" in header and "test r2" in header and "acc" not in header
    (starred,) = [row.split()[0] for row in rows if row.split()[1:2] == ["*"]]
    assert starred in ("mlp-4", "mlp-32") and f"chosen on validation ({starred})" in shown.stdout
    resnet = _nnlab(["results", "show", "shapes-resnet"], cwd=course, env=env)
    assert resnet.returncode == 0 and "val acc" in resnet.stdout.splitlines()[0]
    assert "resnet-8 *" in resnet.stdout
    csv_proc = _nnlab(["results", "show", "wave-mlp", "--csv", "wave.csv"], cwd=course, env=env)
    assert csv_proc.returncode == 0, csv_proc.stderr
    with open(course / "wave.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["variant"] for row in table] == ["mlp-4", "mlp-32"]
    assert [row["variant"] for row in table if row["chosen"] == "1"] == [starred]
    for row in table:  # each mean is the mean of the variant's stored runs
        assert row["seeds"] == "2"
        stored = [r["test_r2"] for key, r in regression.items() if key.startswith(row["variant"] + "/")]
        assert float(row["test_r2_mean"]) == pytest.approx(np.mean(stored), rel=1e-9)
def test_every_refused_variant_is_named_before_anything_trains(results_dir):
    digits = ArrayData("tiny-8x8", train=(np.zeros((40, 8, 8)), np.arange(40) % 5))
    from nnlab.rules import Rules

    exp = E.Experiment("two-wrong", "", "", (E.Variant("too-wide", tuple(mlp([32], classes=5))),
                                           E.Variant("ok", tuple(mlp([8], classes=5))),
                                           E.Variant("ten-out", tuple(mlp([8], classes=10)))),
                       TrainConfig(epochs=1), seeds=(0,), data=digits,
                       rules=Rules("at most 16 hidden units", {"Flatten", "Linear", "ReLU"}, max_hidden_units=16))
    with pytest.raises(ValueError) as info:
        run_experiment(exp, device="cpu")
    assert "variant 'too-wide': " in str(info.value) and "variant 'ten-out': " in str(info.value)
    assert "variant 'ok'" not in str(info.value) and "mlp(widths, classes=5)" in str(info.value)
    assert not (results_dir / "two-wrong").exists()


def test_a_results_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    course = _course(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = _nnlab(["train", "shapes-mlp", "--jobs", "1"], cwd=course, env=_env(NNLAB_RESULTS=str(blocker / "r")))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"nnlab: error: cannot write results to {blocker / 'r'} (Not a directory); "
                                   "point NNLAB_RESULTS or [tool.nnlab] results at a folder you can write")
