"""Every kind of model trains, in every memory layout, and resumes bit-identically.

nnlab.train picks a layout (:func:`~nnlab.train.fast_memory_format`) and an evaluation chunk
(:func:`~nnlab.train.eval_chunk`) by rules about the model; the zoo below has a model on
each side of each rule, including the convolutions whose weights have the same bytes in
both layouts (one input channel, 1x1 kernels). Each trains two epochs on tiny learnable data
in every ``memory_format``; an interrupted run resumes to the uninterrupted one's numbers
and weights, and the evaluation agrees with a plain forward pass in the default layout.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnlab.models import build
from nnlab.train import EVAL_SMALL_CHUNK, MEMORY_FORMATS, TrainConfig, eval_chunk, evaluate, train

CLASSES = 3
# name: (spec, input shape, layout under "auto" on the CPU, whether evaluation takes chunks
# sized to the cache rather than EVAL_SMALL_CHUNK)
ZOO = {
    "one-channel-conv-bn": (["conv 4 3 p=1", "bn", "relu", "maxpool 2", "flatten", f"linear {CLASSES}"],
                            (1, 8, 8), "channels_last", False),
    "one-by-one-convs-bn": (["conv 4 1", "bn", "relu", "conv 4 1", "bn", "relu", "flatten", f"linear {CLASSES}"],
                            (3, 8, 8), "channels_last", False),
    "one-by-one-convs": (["conv 4 1", "relu", "conv 4 1 bias=0", "relu", "flatten", f"linear {CLASSES}"],
                         (3, 8, 8), "contiguous", False),
    "conv-bn-dropout": (["conv 4 3 p=1", "bn", "relu", "conv 8 3 p=1", "bn", "relu", "maxpool 2", "flatten",
                         "dropout 0.3", f"linear {CLASSES}"], (1, 8, 8), "channels_last", False),
    "conv-avgpool-dropout": (["conv 4 3 p=1", "relu", "conv 8 3", "relu", "avgpool 2", "flatten", "dropout 0.2",
                              f"linear {CLASSES}"], (1, 8, 8), "contiguous", False),
    "wide-conv-bn": (["conv 64 3 p=1", "bn", "relu", "avgpool 16", "flatten", f"linear {CLASSES}"],
                     (1, 16, 16), "channels_last", True),
    "mlp-dropout": (["flatten", "linear 16", "relu", "dropout 0.1", f"linear {CLASSES}"],
                    (1, 8, 8), "contiguous", False),
    "mlp-bn": (["flatten", "linear 16", "bn", "relu", f"linear {CLASSES}"], (12,), "contiguous", False),
}
SIZES = {"train": 160, "val": 96, "test": 64}
CONFIG = TrainConfig(epochs=2, batch_size=32, lr=1e-2, eval_batch=40)


def _data(shape: tuple[int, ...]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Three classes, one random prototype each plus a little noise: learnable in a few steps."""
    protos = torch.randn(CLASSES, *shape, generator=torch.Generator().manual_seed(7))
    out = {}
    for i, (split, n) in enumerate(SIZES.items()):
        g = torch.Generator().manual_seed(i)
        labels = torch.arange(n) % CLASSES
        out[split] = (protos[labels] + 0.5 * torch.randn(n, *shape, generator=g), labels)
    return out


def _model(name: str) -> torch.nn.Module:
    spec, shape, *_ = ZOO[name]
    torch.manual_seed(0)
    return build(spec, shape)


def _without_time(history: dict) -> dict:
    return {k: v for k, v in history.items() if k != "seconds"}


@pytest.mark.parametrize("name", ZOO)
def test_the_zoo_covers_each_side_of_the_speed_rules(name, one_thread):
    spec, shape, auto_layout, cache_chunks = ZOO[name]
    model, data = _model(name), _data(shape)
    chunk = eval_chunk(model, data["val"][0][:1], 5000)
    assert (chunk != EVAL_SMALL_CHUNK) == cache_chunks
    if cache_chunks:
        assert 16 <= chunk < SIZES["val"] + SIZES["test"]  # several chunks even here
    result = train(model, CONFIG, seed=0, data=data, device="cpu")
    assert result.extra["memory_format"] == auto_layout


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("name", ZOO)
def test_every_model_trains_in_every_layout_and_resumes_bit_identically(name, memory_format, tmp_path, one_thread):
    from dataclasses import replace

    config = replace(CONFIG, memory_format=memory_format)
    data = _data(ZOO[name][1])
    model = _model(name)
    whole = train(model, config, seed=3, data=data, device="cpu")
    assert whole.val_acc > 1 / CLASSES + 0.2  # it learned
    assert not any(p.is_inference() for p in model.parameters())

    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_model(name), config, seed=3, data=data, device="cpu", checkpoint=ckpt,
              stop_after_epoch=lambda epoch: epoch == 1)
    resumed_model = _model(name)
    resumed = train(resumed_model, config, seed=3, data=data, device="cpu", checkpoint=ckpt, resume=True)
    assert len(resumed.history["train_loss"]) == config.epochs
    assert _without_time(resumed.history) == _without_time(whole.history)
    assert (resumed.val_loss, resumed.val_acc, resumed.test_loss, resumed.test_acc) == (
        whole.val_loss, whole.val_acc, whole.test_loss, whole.test_acc)
    for (key, a), b in zip(model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), key

    # the evaluation (layout, chunks, inference mode) agrees with a plain forward pass
    x, y = data["test"]
    model.eval()
    with torch.no_grad():
        logits = model.double()(x.double())
    model.float()
    plain = (float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).double().mean()))
    loss, acc = evaluate(model, x, y, batch=config.eval_batch, memory_format=memory_format)
    assert loss == pytest.approx(plain[0], rel=1e-5, abs=1e-6) and acc == plain[1]
