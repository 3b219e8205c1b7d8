"""The course's own model: a small residual network, written as any PyTorch module is."""

from torch import nn


class Block(nn.Module):
    """Two 3x3 convolutions with batch norm, added to the block's input (a residual block)."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


class SmallResNet(nn.Module):
    def __init__(self, channels: int, classes: int, width: int, blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(*[Block(width) for _ in range(blocks)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def small_resnet(input_shape, classes, width=16, blocks=2):
    """The factory nnlab calls: the data's input shape (C, H, W) and number of classes, plus
    the variant's keyword arguments."""
    return SmallResNet(input_shape[0], classes, width, blocks)
