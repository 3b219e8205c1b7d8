"""Dropout in front of batch norm: the running statistics of the stored models, measured once.

Re-estimating the batch-norm statistics of nine stored CNNs takes minutes on a CPU, so the
measurement is a stored analysis (:mod:`nnlab.analyses`): ``nnlab train dropout-bn-analysis``
computes :func:`bn_statistics_rows` from the stored runs of :data:`BN_STATS` and stores it;
the chapter and the claims tests read it (:func:`nnlab.book.cnn_report.bn_statistics_table`).
The analysis's hash covers this module's source: an edit here makes the stored table stale.
"""

from __future__ import annotations

import torch

from nnlab import analyses
from nnlab import experiments as E
from nnlab import results as store
from nnlab.data import mnist

BN_STATS = "dropout-bn-statistics"
BN_IMAGES = 10_000  # training images the corrected statistics are estimated on
ANALYSIS = "dropout-bn-analysis"


@torch.inference_mode()
def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 2500,
              classes: bool = False) -> tuple:
    """(accuracy, mean cross-entropy in nats) of ``model`` as it stands (eval mode), and with
    ``classes`` the number of distinct classes it predicts.

    The model runs in the layout and chunks :func:`nnlab.train.evaluate` uses on this device
    (channels-last and cache-sized chunks for the book's CNN on a CPU, several times faster
    than batches of 2500 in the default layout) and is handed back in the default layout.
    """
    from nnlab.train import eval_chunk, fast_memory_format

    model.eval()
    device = next(model.parameters()).device
    layout = fast_memory_format(model, device)
    model.to(memory_format=layout)
    step = eval_chunk(model, x[:1], batch) if device.type == "cpu" and len(x) else batch
    correct, loss, predicted = 0, 0.0, torch.zeros(0, dtype=torch.long)
    for i in range(0, len(x), step):
        out = model(x[i:i + step].to(memory_format=layout) if x.dim() == 4 else x[i:i + step])
        guess = out.argmax(1)
        correct += int((guess == y[i:i + step]).sum())
        loss += float(torch.nn.functional.cross_entropy(out, y[i:i + step], reduction="sum"))
        if classes:
            predicted = torch.unique(torch.cat([predicted, guess]))
    model.to(memory_format=torch.contiguous_format)
    return (correct / len(x), loss / len(x)) + ((len(predicted),) if classes else ())


@torch.inference_mode()
def reestimate_bn(model: torch.nn.Module, x: torch.Tensor, batch: int = 500) -> torch.nn.Module:
    """Replace every batch-norm layer's running mean and variance by their averages over the
    batches of ``x`` passed through the network as it runs at evaluation (dropout off).

    The weights are untouched: only the statistics that evaluation divides by change.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over all batches, not an exponential one
        m.train()
    for i in range(0, len(x), batch):
        model(x[i:i + batch])
    model.eval()
    return model


@torch.inference_mode()
def variance_ratio(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Median over channels of running variance / actual variance of the input of the first
    batch-norm layer that follows a dropout layer, on images ``x`` at evaluation (dropout off).

    Above 1, the stored statistics expect more spread than evaluation delivers, and the layer
    shrinks every normalised activation by the square root of the ratio.
    """
    layers = list(model)
    first_dropout = next(i for i, m in enumerate(layers) if isinstance(m, torch.nn.Dropout))
    bn = next(m for m in layers[first_dropout:] if isinstance(m, torch.nn.BatchNorm2d))
    seen = {}
    handle = bn.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    model.eval()
    model(x)
    handle.remove()
    actual = seen["x"].var(dim=(0, 2, 3))
    return float((bn.running_var / actual).median())


def bn_statistics_rows(images: int = BN_IMAGES) -> dict:
    """``rows``: one per (p, seed) of :data:`BN_STATS`, with ``p``, ``seed``, the last epoch's
    training accuracy (dropout active, ``train_acc``), validation accuracy and loss with the
    running statistics learned in training (``val_acc``, ``val_loss``) and re-estimated
    without dropout on the first ``images`` training images (``fixed_val_acc``,
    ``fixed_val_loss``), the variance ratio of the first batch norm after a dropout (stored
    statistics, validation images, ``variance_ratio``), and how many distinct classes the
    model with its stored statistics predicts for the validation images
    (``classes_predicted``); ``images`` is echoed."""
    x_train, _ = mnist("train")
    x_val, y_val = mnist("val")
    exp = E.get(BN_STATS)
    rows = []
    for r in store.runs(BN_STATS):
        model = store.load_model(BN_STATS, r["seed"], r["variant"])
        p = dict(exp.variant(r["variant"]).info)["p"]
        ratio = variance_ratio(model, x_val[:2000])
        acc, loss, classes = _evaluate(model, x_val, y_val, classes=True)
        fixed_acc, fixed_loss = _evaluate(reestimate_bn(model, x_train[:images]), x_val, y_val)
        rows.append({"p": p, "seed": r["seed"], "train_acc": r["history"]["train_acc"][-1],
                     "val_acc": acc, "val_loss": loss, "fixed_val_acc": fixed_acc, "fixed_val_loss": fixed_loss,
                     "variance_ratio": ratio, "classes_predicted": classes})
    return {"rows": rows, "images": images}


analyses.register(analyses.Analysis(
    name=ANALYSIS, chapter="book/part3/cnn", experiments=(BN_STATS,), compute=bn_statistics_rows,
    purpose="Batch-norm statistics of the dropout-bn-statistics models: the variance ratio behind "
            "dropout, and validation accuracy with the stored and the re-estimated statistics."))
