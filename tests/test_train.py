"""nnlab.train: learning, bit-identical reruns, divergence, config validation, resuming."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import tiny_experiments as T
import torch
from torch import nn

from nnlab import experiments as E
from nnlab import rules as R
from nnlab import runner
from nnlab.models import SpecError, build, mlp
from nnlab.train import ConfigError, DivergedError, TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over ten classes
SHAPE = (1, 28, 28)  # one MNIST-shaped input, without the batch axis


def fit(spec, config, seed=0, data=None, **kwargs):
    model = T.seeded_model(spec, seed)
    result = train(model, config, seed, data=data or T.synthetic_data(), device="cpu", **kwargs)
    return model, result


def without_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "seconds"}


def test_loss_goes_down_on_a_small_problem():
    model, res = fit(mlp([32], classes=10), TrainConfig(epochs=3, batch_size=64, lr=3e-3))
    h = res.history
    assert len(h["train_loss"]) == 3
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert h["val_loss"][-1] < h["val_loss"][0]
    # far better than guessing: the classes are separable by construction
    assert res.val_loss < 0.5 * CHANCE_LOSS
    assert res.val_acc > 0.5 and res.test_acc > 0.5


def test_one_seed_gives_bit_identical_runs():
    spec = mlp([32, 16], dropout=0.3, classes=10)
    cfg = TrainConfig(epochs=2, batch_size=50, lr=3e-3, schedule="onecycle", augment="affine")
    m1, r1 = fit(spec, cfg, seed=7)
    m2, r2 = fit(spec, cfg, seed=7)
    assert without_time(r1.history) == without_time(r2.history)
    assert (r1.val_loss, r1.val_acc, r1.test_loss, r1.test_acc) == (r2.val_loss, r2.val_acc,
                                                                     r2.test_loss, r2.test_acc)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    # and the seed matters: the test above could fail
    m3, r3 = fit(spec, cfg, seed=8)
    assert r3.history["train_loss"] != r1.history["train_loss"]
    assert not torch.equal(m3[1].weight, m1[1].weight)


def test_interrupted_and_resumed_training_is_bit_identical(tmp_path):
    spec = mlp([32, 16], dropout=0.3, classes=10)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3, schedule="onecycle", augment="shift")
    ref_model, ref = fit(spec, cfg, seed=3)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(spec, cfg, seed=3, checkpoint=ckpt, stop_after_epoch=lambda e: e == 2)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    model, res = fit(spec, cfg, seed=3, checkpoint=ckpt, resume=True)
    assert res.extra["resumed_from_epoch"] == 2 and "resumed_from_epoch" not in ref.extra
    assert without_time(res.history) == without_time(ref.history)
    assert (res.val_loss, res.test_acc) == (ref.val_loss, ref.test_acc)
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    spec = mlp([16], classes=10)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(spec, replace(cfg, lr=1e-2), seed=0, checkpoint=ckpt, stop_after_epoch=lambda e: e == 1)
    _, ref = fit(spec, cfg, seed=0)
    _, res = fit(spec, cfg, seed=0, checkpoint=ckpt, resume=True)
    assert "resumed_from_epoch" not in res.extra  # it started afresh
    assert without_time(res.history) == without_time(ref.history)


class InfAfter(nn.Module):
    """Wraps a model; from the given training step on, its outputs are infinite."""

    def __init__(self, inner: nn.Module, bad_step: int):
        super().__init__()
        self.inner, self.bad_step, self.steps = inner, bad_step, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.steps += 1
            if self.steps >= self.bad_step:
                out = out * float("inf")
        return out


def store_files(results_dir):
    return sorted(p.relative_to(results_dir) for p in results_dir.rglob("*") if p.is_file())


def test_huge_learning_rate_raises_diverged_and_stores_nothing(results_dir, synthetic_data,
                                                                register_experiment):
    exp = register_experiment(replace(T.TINY, name="test-diverge",
                                      train=TrainConfig(epochs=2, batch_size=64, optimizer="sgd", lr=1e6)))
    with pytest.raises(DivergedError, match=r"non-finite training loss at epoch 1, step \d+") as info:
        runner.run_experiment(exp.name, device="cpu")
    assert "Nothing was saved" in str(info.value)
    assert store_files(results_dir) == []


def test_divergence_in_a_later_epoch_names_it_and_leaves_no_checkpoint(results_dir, synthetic_data,
                                                                        register_experiment, monkeypatch):
    exp = register_experiment(replace(T.TINY, name="test-diverge-late", rules=R.NONE, seeds=(0,)))
    bad_step = T.STEPS_PER_EPOCH + 5  # the fifth step of the second epoch
    monkeypatch.setattr(E, "build", lambda spec, *shape: InfAfter(build(spec, *shape), bad_step))
    with pytest.raises(DivergedError, match="at epoch 2, step 5 "):
        runner.run_experiment(exp.name, device="cpu")
    assert store_files(results_dir) == []


def test_a_run_blown_up_from_its_first_steps_is_refused_whatever_its_length():
    # Adam at lr 1e6: finite losses, but ~1e12 from the first window on, so never ten times
    # the first window; 2 x 64 steps, fewer than CHANCE_STEPS
    config = TrainConfig(epochs=2, batch_size=32, lr=1e6)
    with pytest.raises(DivergedError, match=r"at epoch 1, step 50 .* more than 20 times that of a uniform guess "
                                            r"over 10 classes \(ln 10 = 2.3\)"):
        fit(mlp([16], classes=10), config)


class Stuck(nn.Module):
    """A model that never learns: confident logits for class 0, whatever its weights."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(1, 1)
        self.register_buffer("logits", torch.tensor([3.0] + [0.0] * 9))

    def forward(self, x):
        return self.logits.expand(len(x), -1) + 0 * self.inner(x[:, :1, 0, 0])


class Blind(nn.Module):
    """A model that never looks at its input: it can learn only how often each class comes."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))

    def forward(self, x):
        return self.bias.expand(len(x), -1)


def test_a_short_run_is_judged_at_its_end_on_accuracy_and_loss():
    config = TrainConfig(epochs=2, batch_size=64, lr=1e-3)  # 64 steps
    with pytest.raises(DivergedError, match=r"validation accuracy after epoch 2 is 0\.\d+, at chance for 10 "
                                            r"classes, and its loss 3\.\d+ is above a uniform guess's \(2.3\)"):
        train(Stuck(), config, data=T.synthetic_data(), device="cpu")
    # at chance but with the loss of a guess: it may still be warming up (a grader marks it down)
    result = train(Blind(), config, data=T.synthetic_data(), device="cpu")
    assert result.val_acc < 0.15 and result.val_loss < 1.05 * CHANCE_LOSS
    # a longer run at chance is refused on its accuracy alone
    with pytest.raises(DivergedError, match="accuracy after epoch 7 is .*, at chance for 10 classes where it "
                                            "started; lower"):
        train(Blind(), replace(config, epochs=8), data=T.synthetic_data(), device="cpu")


@pytest.mark.parametrize("optimizer, lr, accuracy", [("adam", 1e-3, 0.8), ("sgd", 1e-4, 0.0)])
def test_short_honest_runs_on_digits_are_kept(optimizer, lr, accuracy, results_dir, register_experiment):
    """Five epochs on scikit-learn's digits, 22 steps each: a sane rate learns, a very slow
    one is still warming up; neither is refused."""
    from sklearn.datasets import load_digits

    from nnlab.data import ArrayData
    from nnlab.results import load

    x, y = load_digits(return_X_y=True)
    digits = ArrayData("sklearn-digits", train=(x[:1500].reshape(-1, 8, 8), y[:1500]),
                       test=(x[1500:].reshape(-1, 8, 8), y[1500:]))
    exp = register_experiment(E.Experiment(
        name="test-digits", purpose="short runs", chapter="tests", variants=(E.Variant("mlp", tuple(mlp([32], classes=10))),),
        train=TrainConfig(epochs=5, batch_size=64, optimizer=optimizer, lr=lr), seeds=(0,), data=digits))
    runner.run_experiment(exp, device="cpu", log=lambda line: None)
    (run,) = load(exp)["runs"].values()
    assert run["val_acc"] >= accuracy and "failed" not in run


@pytest.mark.parametrize("field, value, words", [
    ("batch_size", 0, "batch_size must be a positive integer, got 0"),
    ("batch_size", 2.5, "batch_size must be a positive integer"),
    ("epochs", 0, "epochs must be a positive integer"),
    ("lr", -1e-3, "lr must be a positive finite number, got -0.001"),
    ("lr", 0.0, "lr must be a positive finite number"),
    ("lr", float("nan"), "lr must be a positive finite number"),
    ("lr", float("inf"), "lr must be a positive finite number"),
    ("optimizer", "adamm", "unknown optimizer 'adamm'; choose one of adam, adamw, rmsprop, sgd"),
    ("schedule", "linear", "unknown schedule 'linear'; choose one of none, onecycle, cosine, step"),
    ("augment", "mixup", "unknown augment 'mixup'"),
    ("momentum", 1.0, "momentum must be in [0, 1)"),
    ("weight_decay", -0.1, "weight_decay must be >= 0"),
    ("warmup", 1.0, "warmup must be in [0, 1)"),
    ("label_smoothing", -0.1, "label_smoothing must be in [0, 1)"),
    ("eval_batch", 0, "eval_batch must be a positive integer"),
    ("fit_on", "val", "unknown fit_on 'val'; choose one of train, train+val"),
])
def test_config_is_validated_when_built(field, value, words):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**{field: value})
    assert words in str(info.value)
    assert str(info.value).startswith("invalid TrainConfig: ")


def test_config_lists_every_problem_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig(batch_size=0, lr=-1.0, optimizer="adamm", schedule="linear")
    for name in ("batch_size", "lr", "optimizer", "schedule"):
        assert name in str(info.value)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
def test_dropout_outside_unit_interval_is_refused_when_built(p, results_dir, register_experiment):
    with pytest.raises(SpecError, match=r"dropout probability must be in \[0, 1\]"):
        build(mlp([10], dropout=p, classes=10), SHAPE)
    # a registered experiment with such a spec is refused before any training or writing
    spec = ("flatten", "linear 10", "relu", f"dropout {p}", "linear 10")
    exp = register_experiment(E.Experiment(
        name="test-bad-dropout", purpose="", chapter="tests",
        variants=(E.Variant("main", spec),), train=TrainConfig()))
    with pytest.raises(SpecError, match=rf"dropout probability .* in 'dropout {p}'"):
        runner.run_experiment(exp.name, device="cpu")
    assert store_files(results_dir) == []


def test_unknown_device_is_a_config_error():
    from nnlab.train import pick_device

    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        pick_device("gpu0")


def test_cnn_evaluates_in_channels_last_and_is_handed_back_unchanged():
    """evaluate() runs a CNN in channels-last layout; the caller's model keeps its layout and
    the metrics agree with a plain forward pass in the default layout."""
    import torch.nn.functional as F

    from nnlab.models import build
    from nnlab.train import evaluate

    torch.manual_seed(0)
    model = build(("conv 4 3 p=1", "bn", "relu", "conv 8 3 p=1", "relu", "maxpool 2", "flatten", "linear 10"), SHAPE).eval()
    x, y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    with torch.no_grad():
        logits = model(x)
    loss, acc = evaluate(model, x, y)
    assert acc == int((logits.argmax(1) == y).sum()) / len(y)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())
    model.to(memory_format=torch.channels_last)
    evaluate(model, x, y)
    assert model[3].weight.is_contiguous(memory_format=torch.channels_last)  # left as it was given


class SampleCounter(nn.Module):
    """Counts the samples it sees in training mode; the identity otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def forward(self, x):
        if self.training:
            self.seen += len(x)
        return x


def test_fit_on_train_and_val_fits_both_and_reports_no_validation():
    data = T.synthetic_data()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=3e-3)
    results = {}
    for fit_on in ("train", "train+val"):
        torch.manual_seed(0)
        counter = SampleCounter()
        model = nn.Sequential(counter, *build(mlp([16], classes=10), SHAPE))
        results[fit_on] = (counter, train(model, replace(cfg, fit_on=fit_on), 0, data=data, device="cpu"))
    (plain, r_plain), (both, r_both) = results["train"], results["train+val"]
    assert plain.seen == 2 * len(data["train"][1])
    assert both.seen == 2 * (len(data["train"][1]) + len(data["val"][1]))
    assert r_plain.val_acc is not None and len(r_plain.history["val_acc"]) == 2
    # the validation images were trained on: no validation measurement is reported
    assert r_both.val_acc is None and r_both.val_loss is None and r_both.history["val_acc"] == []
    assert r_both.test_acc > 0.5 and len(r_both.history["train_loss"]) == 2


def test_default_fit_on_leaves_stored_configs_unchanged():
    """Configs stored before ``fit_on`` existed hash the same: the default is left out."""
    assert "fit_on" not in TrainConfig().to_dict()
    assert TrainConfig(fit_on="train+val").to_dict()["fit_on"] == "train+val"


def test_new_recipe_fields_are_validated_and_left_out_of_stored_configs_when_default():
    """precision and memory_format join the recipe only when set, so the configs (and hashes)
    of every stored result stay what they were."""
    assert not {"precision", "memory_format"} & set(TrainConfig().to_dict())
    assert TrainConfig(precision="bf16", memory_format="contiguous").to_dict()["precision"] == "bf16"
    with pytest.raises(ConfigError, match="unknown precision 'fp16'; choose one of fp32, bf16"):
        TrainConfig(precision="fp16")
    with pytest.raises(ConfigError, match="unknown memory_format 'nhwc'"):
        TrainConfig(memory_format="nhwc")


def test_bf16_is_refused_without_native_support(monkeypatch):
    import nnlab.train as nt

    monkeypatch.setattr(nt, "bf16_native", lambda device: False)
    with pytest.raises(ConfigError, match="precision='bf16' needs native bfloat16 arithmetic.*use precision='fp32'"):
        fit(mlp([16], classes=10), TrainConfig(epochs=1, precision="bf16"))


def test_bf16_autocast_trains_with_fp32_weights(monkeypatch):
    """Where bfloat16 is native, the forward pass runs in it (the numbers differ from fp32)
    while weights and optimiser state stay fp32 and the model still learns."""
    import nnlab.train as nt

    monkeypatch.setattr(nt, "bf16_native", lambda device: True)  # the CPU emulates it if it must
    config = TrainConfig(epochs=2, batch_size=64, lr=3e-3)
    model16, res16 = fit(mlp([32], classes=10), replace(config, precision="bf16"))
    _, res32 = fit(mlp([32], classes=10), config)
    assert all(p.dtype == torch.float32 for p in model16.parameters())
    assert res16.history["train_loss"] != res32.history["train_loss"]
    assert res16.val_acc > 0.8 and abs(res16.val_acc - res32.val_acc) < 0.05


def test_memory_format_rule_and_override():
    from nnlab.train import fast_memory_format

    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    with_bn = build(("conv 32 3", "bn", "relu", "conv 64 3", "relu", "flatten", "linear 10"), SHAPE)
    without = build(("conv 32 3", "relu", "conv 64 3", "relu", "maxpool 2", "flatten", "linear 10"), SHAPE)
    for device in (cpu, cuda):  # the rule looks at the model and the device type only
        assert fast_memory_format(with_bn, device) == torch.channels_last
        assert fast_memory_format(without, device) == torch.contiguous_format
    assert fast_memory_format(with_bn, mps) == torch.contiguous_format
    assert fast_memory_format(build(mlp([32], classes=10), SHAPE), cpu) == torch.contiguous_format
    assert fast_memory_format(with_bn, cpu, "contiguous") == torch.contiguous_format
    assert fast_memory_format(without, cpu, "channels_last") == torch.channels_last


def test_the_layout_is_recorded_and_both_layouts_learn_alike():
    spec = ("conv 4 3 p=1", "bn", "relu", "maxpool 2", "flatten", "linear 10")
    config = TrainConfig(epochs=1, batch_size=64, lr=3e-3)
    _, auto = fit(spec, config)
    _, plain = fit(spec, replace(config, memory_format="contiguous"))
    assert auto.extra["memory_format"] == "channels_last" and plain.extra["memory_format"] == "contiguous"
    assert auto.val_acc == pytest.approx(plain.val_acc, abs=0.02)  # other kernels, the same training


def test_epoch_loss_and_accuracy_weigh_a_ragged_last_batch_correctly():
    """With a learning rate too small to move the weights, the epoch's training loss and
    accuracy are those of the training set itself: the bookkeeping (per-batch mean losses
    weighted by batch size, predictions compared once per window) must get a last batch of
    another size right."""
    from nnlab.train import evaluate

    data = T.synthetic_data()
    x, y = data["train"][0][:100], data["train"][1][:100]  # 100 = 3 x 32 + 4
    model = T.seeded_model(mlp([32], classes=10), 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train(model, TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=1e-30, momentum=0.0),
                data={"train": (x, y), "val": data["val"]}, device="cpu", keep_failed=True)  # learns nothing
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    loss, acc = evaluate(model, x, y)
    assert res.history["train_acc"][0] == acc
    assert res.history["train_loss"][0] == pytest.approx(loss, rel=1e-5)


def test_evaluation_chunk_follows_the_largest_layer():
    from nnlab.train import (
        EVAL_CACHE_BYTES,
        EVAL_SMALL_BYTES,
        EVAL_SMALL_CHUNK,
        eval_chunk,
        evaluate,
    )

    x, y = torch.randn(200, 1, 28, 28), torch.randint(0, 10, (200,))
    assert eval_chunk(build(mlp([100], classes=10), SHAPE).eval(), x, 5000) == EVAL_SMALL_CHUNK  # no convolution
    lenet_like = build(("conv 6 5 p=2", "relu", "maxpool 2", "flatten", "linear 10"), SHAPE).eval()
    assert eval_chunk(lenet_like, x, 5000) == EVAL_SMALL_CHUNK  # 2 x 6 x 28 x 28 x 4 bytes is small
    cnn = build(("conv 48 3 p=1", "relu", "conv 48 3 p=1", "relu", "flatten", "linear 10"), SHAPE).eval()
    largest = 2 * 48 * 28 * 28 * 4  # the second convolution's input and output, per image
    assert largest >= EVAL_SMALL_BYTES
    assert eval_chunk(cnn, x, 5000) == EVAL_CACHE_BYTES // largest
    assert eval_chunk(cnn, x, 10) == 10 and eval_chunk(build(mlp([100], classes=10), SHAPE), x, 10) == 10
    with torch.no_grad():
        logits = cnn(x)
    loss, acc = evaluate(cnn, x, y)  # chunked, and still the metrics of one pass
    assert acc == int((logits.argmax(1) == y).sum()) / len(y)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_adadelta_learns():
    _, res = fit(mlp([32], classes=10), TrainConfig(epochs=2, batch_size=64, optimizer="adadelta", lr=1.0))
    assert res.history["train_loss"][-1] < res.history["train_loss"][0] and res.val_acc > 0.8
