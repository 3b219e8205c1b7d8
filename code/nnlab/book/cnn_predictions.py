"""The final CNN's predictions for the test set, stored once (a stored analysis).

Evaluating the final model on the 10,000 test images takes seconds of every build of the CNN
chapter; ``nnlab train cnn-final-predictions`` stores them instead (:mod:`nnlab.analyses`),
and :func:`nnlab.book.cnn_report.test_predictions` reads them. The model runs as
:func:`nnlab.train.evaluate` runs it (the layout and chunks of this device), so the stored
predictions agree with the stored run's test accuracy.
"""

from __future__ import annotations

import torch

from nnlab import analyses
from nnlab import experiments as E
from nnlab import results as store
from nnlab.data import mnist

FINAL = "cnn-final"
ANALYSIS = "cnn-final-predictions"


@torch.inference_mode()
def predict_test(name: str = FINAL) -> dict:
    """The predicted and the true class of every test image for the first seed of ``name``,
    as strings of digits (``predicted``, ``true``), with ``experiment`` and ``seed``."""
    from nnlab.train import eval_chunk, fast_memory_format

    seed = E.get(name).seeds[0]
    model = store.load_model(name, seed)
    x, y = mnist("test")
    layout = fast_memory_format(model, torch.device("cpu"))
    model.to(memory_format=layout)
    step = eval_chunk(model, x[:1], 5000)
    pred = torch.cat([model(x[i:i + step].to(memory_format=layout)).argmax(1) for i in range(0, len(x), step)])
    return {"experiment": name, "seed": seed, "predicted": "".join(map(str, pred.tolist())),
            "true": "".join(map(str, y.tolist()))}


analyses.register(analyses.Analysis(
    name=ANALYSIS, chapter="book/part3/cnn", experiments=(FINAL,), compute=predict_test,
    purpose="The final CNN's (first seed's) predicted class for every test image."))
