"""The problem set's rules and the book's accuracy targets, as data.

The rules are the problem set's own (problems 2C-2E and 3G); the targets put beside each
problem its required accuracy, the student's reported number and the goal this book sets
itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from nnlab.rules import Rules

MLP_LAYERS = frozenset({"Flatten", "Linear", "ReLU", "Softmax", "Dropout"})
CNN_LAYERS = frozenset({"Linear", "Conv2d", "MaxPool2d", "BatchNorm2d", "Dropout", "ReLU",
                        "Softmax", "Flatten"})

MLP_100 = Rules("2C: at most 100 hidden units", MLP_LAYERS, max_hidden_units=100)
MLP_200 = Rules("2D: at most 200 hidden units, at least 2 hidden layers", MLP_LAYERS,
                max_hidden_units=200, min_hidden_layers=2)
MLP_1000 = Rules("2E: at most 1000 hidden units, at least 3 hidden layers", MLP_LAYERS,
                 max_hidden_units=1000, min_hidden_layers=3)
CNN_1M = Rules("3G: fewer than 1,000,000 parameters, with Dropout and BatchNorm2d", CNN_LAYERS,
               max_parameters=1_000_000, required=frozenset({"Dropout", "BatchNorm2d"}))


@dataclass(frozen=True)
class Target:
    problem: str
    experiment: str
    task: str
    required: float
    student: float
    goal: float
    chapter: str


TARGETS = (
    Target("2C", "mlp-100", "MLP, ≤ 100 hidden units", 0.975, 0.9786, 0.986, "part2/budget"),
    Target("2D", "mlp-200", "MLP, ≤ 200 hidden units, ≥ 2 hidden layers", 0.98, 0.9810, 0.989, "part2/budget"),
    Target("2E", "mlp-1000", "MLP, ≤ 1000 hidden units, ≥ 3 hidden layers", 0.983, 0.9854, 0.992, "part2/budget"),
    Target("3G", "cnn-final", "CNN, < 1M parameters, 10 epochs, batch 32", 0.985, 0.9925, 0.9965, "part3/cnn"),
)
