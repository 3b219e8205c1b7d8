"""The course's regression experiment: scikit-learn's diabetes data, two small MLPs.

Ten measurements of 442 patients (age, sex, body mass index, blood pressure and six blood
serum values) predict a measure of disease progression one year later (Efron et al. 2004).
The targets are numbers, not classes, so ``ArrayData`` is told they are values and the
recipe names the regression task: mean squared error as the loss, RMSE and R² as metrics.
"""

import numpy as np
from sklearn.datasets import load_diabetes

from nnlab.data import ArrayData
from nnlab.experiments import Experiment, Variant, register
from nnlab.train import TrainConfig

# A seeded fifth of the patients is the test set; nnlab holds out a seeded tenth of the rest
# for validation, which chooses the variant (the lower mean validation RMSE wins).
inputs, progression = load_diabetes(return_X_y=True)
order = np.random.default_rng(0).permutation(len(inputs))
test, rest = order[: len(inputs) // 5], order[len(inputs) // 5:]
DIABETES = ArrayData("sklearn-diabetes", train=(inputs[rest], progression[rest]),
                     test=(inputs[test], progression[test]), targets="values",
                     description="scikit-learn load_diabetes; 88 test patients drawn with seed 0")

register(Experiment(
    name="diabetes-mlp",
    purpose="Two small MLPs predict diabetes progression after a year (regression).",
    chapter="week 7",
    data=DIABETES,
    variants=(Variant("mlp-16", ("linear 16", "relu", "linear 1")),
              Variant("mlp-64", ("linear 64", "relu", "linear 1"))),
    train=TrainConfig(task="regression", epochs=40, batch_size=32, optimizer="adam", lr=0.03),
    seeds=(0, 1, 2),
    save_weights=False,
))
