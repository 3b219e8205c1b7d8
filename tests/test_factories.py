"""Models from a course's own code: a variant names a factory by import path.

Spec variants hash as they always did (every stored result of the book stays current); a
factory variant's hash covers its path, its kwargs and its module's source, so editing the
module makes its runs stale, and ``results check`` says that the model's code changed. Every
way a factory can be wrong is one line; the rules, ``describe`` (in the order layers run) and
``load_model`` work on factory models.
"""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from nnlab import experiments as E
from nnlab import results as store
from nnlab import rules as R
from nnlab.data import ArrayData
from nnlab.factories import FactoryError
from nnlab.models import SpecError, build, describe, mlp
from nnlab.rules import Rules, RuleViolation, hidden_units, violations
from nnlab.runner import build_checked, run_experiment
from nnlab.train import TrainConfig, evaluate

ROOT = Path(__file__).resolve().parents[1]

MODELS = '''
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.conv(x))


def small_resnet(input_shape, classes, width=4):
    return nn.Sequential(nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), Block(width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


def no_shape(width=4):
    return nn.Linear(width, 3)


def not_a_module(input_shape, classes):
    return "a model"


def raises(input_shape, classes):
    raise RuntimeError("the course's bug\\nsecond line")


NOT_CALLABLE = 3
'''


def shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three shapes of 6x6 images (bars and a square) in noise: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.3, (n, 6, 6)).astype(np.float32)
    x[y == 0, 2:4, :] += 1.0
    x[y == 1, :, 2:4] += 1.0
    x[y == 2, 1:5, 1:5] += 0.6
    return x, y


DATA = ArrayData("shapes-6x6", train=shapes(256, 0), test=shapes(96, 1))


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A package of the course's own, importable under a fresh name: ``(package, models.py)``."""
    package = f"course_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    models = tmp_path / package / "models.py"
    models.write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package, models
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        del sys.modules[name]


def experiment(package: str, rules: Rules = R.NONE, **variant) -> E.Experiment:
    v = E.Variant("resnet", factory=f"{package}.models:small_resnet", kwargs={"width": 4}, **variant)
    return E.Experiment(name="test-factory", purpose="", chapter="tests", variants=(v,), data=DATA, rules=rules,
                        train=TrainConfig(epochs=1, batch_size=32, lr=3e-3), seeds=(0,))


def test_spec_variants_hash_as_before_so_stored_results_stay_current():
    v = E.Variant("v", tuple(mlp([16], classes=10)))
    assert list(v.to_dict()) == ["name", "spec", "train", "info"] and v.factory is None and v.source() is None
    for name in ("mlp-100", "cnn", "pooling-ablation"):
        stored = json.loads((ROOT / "results" / name / "result.json").read_text())
        assert E.variant_hashes(stored["config"]) == E.get(name).variant_hashes()


def test_the_hash_covers_the_path_the_kwargs_and_the_modules_source(course):
    package, models = course
    exp = experiment(package)
    before = exp.variant_hashes()["resnet"]
    stored = exp.config()["variants"][0]
    assert stored["factory"] == f"{package}.models:small_resnet" and stored["kwargs"] == {"width": 4}
    assert stored["source"]["file"] == f"{package}/models.py" and len(stored["source"]["sha256"]) == 16
    wider = E.Experiment(**{**exp.__dict__, "variants": (E.Variant("resnet", factory=exp.variants[0].factory,
                                                                   kwargs={"width": 8}),)})
    assert wider.variant_hashes()["resnet"] != before
    models.write_text(MODELS.replace("padding=1)", "padding=1, bias=False)"))
    assert exp.variant_hashes()["resnet"] != before
    models.write_text(MODELS.replace("\n", "\r\n"))  # a Windows checkout of the same file
    assert exp.variant_hashes()["resnet"] == before


def test_editing_the_factorys_module_makes_its_runs_stale_and_load_model_rebuilds_it(course, results_dir):
    package, models = course
    exp = experiment(package)
    run_experiment(exp, device="cpu", progress=False, log=lambda line: None)
    (run,) = store.load(exp)["runs"].values()
    assert run["model_source"] == {"factory": f"{package}.models:small_resnet", **exp.variants[0].source()}
    model = store.load_model(exp, seed=0)
    assert isinstance(model[2], nn.Module) and type(model[2]).__name__ == "Block" and not model.training
    x, y = DATA.load("test")
    assert evaluate(model, x, y)[1] == run["test_acc"]
    models.write_text(MODELS + "\n# tuned the model\n")
    status = store.status(exp)
    assert status.state == "stale"
    assert f"resnet: model code in {package}/models.py" in status.detail
    with pytest.raises(store.StaleResult, match="model code"):
        store.load(exp)


def test_rules_check_and_describe_work_on_a_factory_model(course):
    package, _ = course
    exp = experiment(package, rules=Rules("no convolutions", {"Linear", "ReLU", "Flatten"}))
    with pytest.raises(RuleViolation, match="Conv2d"):
        build_checked(exp, exp.variants[0])
    with pytest.raises(RuleViolation, match="variant 'resnet': .*Conv2d"):
        run_experiment(exp, device="cpu", progress=False)
    allowed = experiment(package, rules=Rules("a small CNN", {"Conv2d", "ReLU", "AdaptiveAvgPool2d", "Flatten",
                                                             "Linear"}, max_parameters=10_000))
    model = build_checked(allowed, allowed.variants[0])
    assert violations(model, allowed.rules, input_shape=DATA) == [] and hidden_units(model, input_shape=DATA) == 0
    assert [r["type"] for r in describe(model, DATA)] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "AdaptiveAvgPool2d",
                                                           "Flatten", "Linear"]


def test_describe_follows_the_order_layers_run_in_not_the_order_they_are_defined():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 3)  # defined first, runs last
            self.act = nn.ReLU()
            self.body = nn.Linear(4, 8)

        def forward(self, x):
            h = self.act(self.body(x))
            return self.head(self.act(h))  # the ReLU runs twice

    rows = describe(Backwards(), (4,))
    assert [(r["type"], r["output"]) for r in rows] == [("Linear", (8,)), ("ReLU", (8,)), ("ReLU", (8,)),
                                                         ("Linear", (3,))]
    assert [r["parameters"] for r in rows] == [40, 0, 0, 27]


@pytest.mark.parametrize("factory, kwargs, message", [
    ("nowhere_at_all.models:f", {}, r"cannot import module 'nowhere_at_all.models' \(No module named"),
    ("{p}.models:missing", {}, r"module '{p}.models' has no attribute 'missing'; check the name after the ':'"),
    ("{p}.models:NOT_CALLABLE", {}, "is a int, not a function or class"),
    ("{p}.models:no_shape", {}, r"cannot be called as no_shape\(input_shape=..., classes=...\) .*give it the "
                               "parameters input_shape and classes"),
    ("{p}.models:small_resnet", {"depth": 3}, r"small_resnet\(input_shape=..., classes=..., depth=...\)"),
    ("{p}.models:not_a_module", {}, "returned a str, not a torch.nn.Module"),
    ("{p}.models:raises", {}, "raised RuntimeError: the course's bug$"),
])
def test_a_wrong_factory_is_one_line_naming_it(course, results_dir, factory, kwargs, message):
    package, _ = course
    factory, message = factory.format(p=package), message.format(p=package)
    exp = experiment(package)
    exp = E.Experiment(**{**exp.__dict__, "variants": (E.Variant("resnet", factory=factory, kwargs=kwargs),)})
    with pytest.raises(FactoryError, match=message) as info:
        exp.variants[0].build(DATA)
    assert "\n" not in str(info.value) and factory in str(info.value)
    with pytest.raises(FactoryError, match="variant 'resnet': "):
        run_experiment(exp, device="cpu", progress=False)
    assert not (results_dir / exp.name).exists()


def test_a_variant_names_a_spec_or_a_factory_in_a_form_that_travels():
    with pytest.raises(ValueError, match="give either spec .* or factory .*, not both"):
        E.Variant("v", ("flatten",), factory="m:f")
    with pytest.raises(ValueError, match="give either spec .* or factory .*, not neither"):
        E.Variant("v")
    with pytest.raises(FactoryError, match="import path 'module:function'"):
        E.Variant("v", factory="mycourse.models.small_resnet")
    with pytest.raises(FactoryError, match="__main__, which worker processes cannot import"):
        E.Variant("v", factory="__main__:small_resnet")
    with pytest.raises(FactoryError, match="must be JSON values"):
        E.Variant("v", factory="m:f", kwargs={"act": nn.ReLU})
    with pytest.raises(FactoryError, match="name classes, which nnlab passes"):
        E.Variant("v", factory="m:f", kwargs={"classes": 3})
    with pytest.raises(ValueError, match="kwargs go with a factory"):
        E.Variant("v", ("flatten",), kwargs={"width": 3})
    v = E.Variant("v", factory="m:f", kwargs={"width": 3, "act": "gelu"})
    assert v.kwargs == (("act", "gelu"), ("width", 3)) and v.spec is None


def test_a_missing_shape_or_class_count_says_what_to_pass():
    model = build(["flatten", "linear 3"], DATA)  # a data source stands for its shape
    assert model(torch.zeros(2, 1, 6, 6)).shape == (2, 3)
    for call in (lambda: build(["flatten", "linear 3"]), lambda: describe(model),
                 lambda: violations(model, R.NONE), lambda: hidden_units(model)):
        with pytest.raises(TypeError, match=r"needs input_shape, .* pass input_shape=data.input_shape"):
            call()
    with pytest.raises(TypeError, match="mlp needs classes, the number of outputs: pass classes=data.num_classes"):
        mlp([8])
    assert mlp([8], classes=DATA)[-1] == "linear 3"
    with pytest.raises(ValueError, match=r"input_shape must be positive integers such as \(1, 28, 28\)"):
        build(["flatten"], (1, 0, 8))
    with pytest.raises(SpecError, match="classes must be a positive integer"):
        mlp([8], classes=0)


def test_a_factory_module_in_a_package_hashes_its_file_relative_to_the_import_root(tmp_path, monkeypatch):
    package = f"course_{uuid.uuid4().hex[:8]}"
    (tmp_path / package / "nets").mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "nets" / "__init__.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        source = E.Variant("v", factory=f"{package}.nets:small_resnet").source()
        assert source["file"] == f"{package}/nets/__init__.py"
    finally:
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]
