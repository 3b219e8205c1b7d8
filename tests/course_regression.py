"""A course's regression experiment: scikit-learn's diabetes data, two small MLPs.

Ten blood measurements of 442 patients predict a measure of disease progression one year
later (Efron et al. 2004); the data ships with scikit-learn. Its targets are whole numbers
stored as floats, so ``ArrayData`` is told they are values, not classes. The test set is a
fixed fifth of the patients; a seeded tenth of the rest is held out for validation, which
chooses between the two widths (the lower mean validation RMSE wins).

Register it with ``--experiments course_regression`` (this file on ``PYTHONPATH``) or name the
module in a course's ``[tool.nnlab] experiments``; every run trains in well under a second.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes

from nnlab import experiments as E
from nnlab.data import ArrayData
from nnlab.train import TrainConfig

inputs, progression = load_diabetes(return_X_y=True)
test = np.random.default_rng(0).permutation(len(inputs))[: len(inputs) // 5]
rest = np.setdiff1d(np.arange(len(inputs)), test)

DIABETES = ArrayData("sklearn-diabetes", train=(inputs[rest], progression[rest]),
                     test=(inputs[test], progression[test]), targets="values",
                     description="scikit-learn's diabetes: 10 measurements -> progression after a year")

REGRESSION = E.register(E.Experiment(
    name="diabetes-mlp",
    purpose="Two small MLPs predict diabetes progression (regression: RMSE and R²).",
    chapter="course appendix",
    variants=(E.Variant("mlp-16", ("linear 16", "relu", "linear 1")),
              E.Variant("mlp-64", ("linear 64", "relu", "linear 1"))),
    train=TrainConfig(task="regression", epochs=40, batch_size=32, optimizer="adam", lr=0.03),
    seeds=(0, 1, 2),
    data=DIABETES,
    save_weights=False,
))
