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


#: The training loss per epoch (10 epochs, the problem's default batch 32) that the student's
#: submitted logs print for problems 2C-2E, transcribed from the submission. The student
#: writes that they changed the optimiser's learning rate about half-way through training.
STUDENT_TRAIN_LOSS = {
    "2C": (0.2904, 0.1696, 0.1432, 0.1287, 0.1214, 0.0831, 0.0789, 0.0733, 0.0716, 0.0681),
    "2D": (0.4155, 0.1709, 0.1253, 0.1018, 0.0876, 0.0607, 0.0527, 0.0494, 0.0468, 0.0428),
    "2E": (0.2575, 0.1017, 0.0727, 0.0569, 0.0434, 0.0164, 0.0087, 0.0061, 0.0040, 0.0026),
}
