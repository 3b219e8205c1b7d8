"""A small course built on nnlab: scikit-learn's 8x8 digits, one rule set, one experiment."""

import numpy as np
from sklearn.datasets import load_digits

from nnlab.data import ArrayData
from nnlab.experiments import Experiment, Variant, register
from nnlab.models import mlp
from nnlab.rules import Rules
from nnlab.train import TrainConfig

# The data: 1,797 images of 8x8 pixels (values 0-16). A seeded 360 of them are the test set;
# nnlab holds out a seeded 20% of the rest for validation and standardises every pixel.
images, labels = load_digits(return_X_y=True)
images = images.reshape(-1, 8, 8)
order = np.random.default_rng(0).permutation(len(labels))
test, rest = order[:360], order[360:]
DIGITS = ArrayData("sklearn-digits-8x8", train=(images[rest], labels[rest]),
                   test=(images[test], labels[test]), val_size=0.2,
                   description="scikit-learn load_digits; 360 test images drawn with seed 0")

# The rules of this course's homework.
HOMEWORK = Rules("at most 64 hidden units, at least 2 hidden layers",
                 allowed={"Flatten", "Linear", "ReLU", "Dropout"},
                 max_hidden_units=64, min_hidden_layers=2)

# One experiment: two ways to spend the 64 units, three seeds each, one recipe.
register(Experiment(
    name="digits-mlp",
    purpose="The best MLP for 8x8 digits with at most 64 hidden units in at least 2 layers.",
    chapter="week 4",
    data=DIGITS,
    rules=HOMEWORK,
    variants=(Variant("32-32", tuple(mlp([32, 32], classes=DIGITS.num_classes))),
              Variant("48-16", tuple(mlp([48, 16], classes=DIGITS.num_classes)))),
    train=TrainConfig(epochs=15, batch_size=64, optimizer="adam", lr=3e-3, schedule="onecycle"),
    seeds=(0, 1, 2),
))

# A second experiment: the course's own residual network (digits_models.py), named by its
# import path; nnlab calls it with the data's input shape and classes, plus the kwargs.
CONVOLUTIONS = Rules("convolutions, batch norm and a linear read-out",
                     allowed={"Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"})
register(Experiment(
    name="digits-resnet",
    purpose="A small residual network of the course's own code on 8x8 digits.",
    chapter="week 6",
    data=DIGITS,
    rules=CONVOLUTIONS,
    variants=(Variant("resnet-16", factory="digits_models:small_resnet", kwargs={"width": 16}),),
    train=TrainConfig(epochs=6, batch_size=64, optimizer="adam", lr=3e-3, schedule="onecycle"),
    seeds=(0, 1),
))
