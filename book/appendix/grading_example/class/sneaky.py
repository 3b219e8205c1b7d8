"""Reads like 10 hidden units: the output layer is defined first, but it runs last."""

from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = nn.Linear(300, 10)      # defined first, applied last
        self.second = nn.Linear(784, 300)    # the real hidden layer: 300 units
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.first(self.relu(self.second(x.flatten(1))))


def build():
    return Net()
