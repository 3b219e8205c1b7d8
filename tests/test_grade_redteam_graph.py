"""`nnlab grade` against graphs that hide what they compute (the red team's attacks 1 and 3).

Attack 1 certifies a 1,000-unit network as having no hidden units: its output weights are
the activation of a Linear applied to a constant, multiplied in and summed by slicing and
adding. Attack 3 writes trained weights into the graph as numbers, which a fixed budget
neither counts nor resets. Both are graded in one class beside an honest model that uses a
few constants of its own, which must still pass.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from nnlab import cli
from nnlab import grade as G
from nnlab.grade import sandbox

pytestmark = pytest.mark.skipif(not sandbox.probe().tool, reason="bubblewrap is not installed here")

PROBLEM = """\
name = "RG"
data = "mnist"
threshold = 0.6
seeds = [0]
train_size = 1000
test_size = 500

[rules]
name = "RG: at most 100 hidden units"
allowed = ["Dropout", "Flatten", "Linear", "ReLU", "Softmax"]
max_hidden_units = 100

[budget]
mode = "fixed"
epochs = 2
batch_size = 32
lr = 0.005

[limits]
cpu_seconds = 30
memory_mib = 768
wall_seconds = 90
"""

_HALVING = """
    n = p.shape[-1]
    while n > 1:  # sum over the last axis by halving: slices and adds
        half = n // 2
        s = p[..., :half] + p[..., half:2 * half]
        if n % 2:
            s = torch.cat([s[..., :1] + p[..., 2 * half:], s[..., 1:]], dim=-1)
        p, n = s, half
    return p[..., 0]
"""

SUBMISSIONS = {
    # attack 1: the output layer's weights are the activation of nn.Linear(1, 10 * H) on a constant 1
    "weights_as_activation": textwrap.dedent("""
        import torch
        from torch import nn

        def total(p):""") + _HALVING + textwrap.dedent("""

        class Wide(nn.Module):
            def __init__(self):
                super().__init__()
                self.hidden, self.w_out, self.b_out = nn.Linear(784, 1000), nn.Linear(1, 10000), nn.Linear(1, 10)

            def forward(self, x):
                x = x.flatten(1)
                h = torch.relu(self.hidden(x))
                one = x[:1, :1] * 0 + 1
                w = self.w_out(one).view(10, 1000) * 0.03
                return total(h.unsqueeze(1) * w.unsqueeze(0)) + self.b_out(one)

        def build():
            return Wide()
        """),
    # attack 1, no product: 1,280 ReLU units summed in fixed groups of 128 (an output layer of ones)
    "fixed_output_sums": textwrap.dedent("""
        import torch
        from torch import nn

        def total(p):""") + _HALVING + textwrap.dedent("""

        class Sums(nn.Module):
            def __init__(self):
                super().__init__()
                self.hidden = nn.Linear(784, 1280)

            def forward(self, x):
                return total(torch.relu(self.hidden(x.flatten(1))).view(-1, 10, 128))

        def build():
            return Sums()
        """),
    # attack 3: weights written into the graph as numbers (a template per class on 4x4 blocks)
    "numbers_in_the_graph": textwrap.dedent("""
        import torch
        from torch import nn

        W = [round(((i * 7919) % 97) / 97 - 0.5, 4) for i in range(490)]

        def total(p):""") + _HALVING + textwrap.dedent("""

        class Smuggler(nn.Module):
            def __init__(self):
                super().__init__()
                self.dummy = nn.Linear(784, 10)

            def forward(self, x):
                flat = x.flatten(1)
                one = flat[:1, :1] * 0 + 1
                w = torch.cat([torch.cat([one * v for v in W[i:i + 49]], dim=1) for i in range(0, 490, 49)], dim=0)
                pooled = x[:, 0, ::4, ::4].reshape(-1, 1, 49)
                return total(pooled * w.unsqueeze(0)) + self.dummy(flat) * 0.0

        def build():
            return Smuggler()
        """),
    # honest: normalisation constants, a dropout rate and a final softmax are no weights
    "honest_with_constants": textwrap.dedent("""
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.25),
                                         nn.Linear(64, 10), nn.Softmax(dim=1))

            def forward(self, x):
                return self.net((x - 0.1307) / 0.3081) * 10.0

        def build():
            return Net()
        """),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("redteam_graph")
    cls = root / "class"
    cls.mkdir()
    for name, source in SUBMISSIONS.items():
        (cls / f"{name}.py").write_text(source)
    (root / "problem.toml").write_text(PROBLEM)
    out = root / "out"
    rc = cli.main(["grade", str(root / "problem.toml"), str(cls), "--out", str(out), "--jobs", "2"])
    return {"rc": rc, "reports": {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/report.json")}}


def _reason(report: dict, key: str) -> str:
    return next(r["reason"] for r in report["requirements"] if r["requirement"] == key)


@pytest.mark.parametrize("name, key, words", [
    ("weights_as_activation", "rules", "computes a linear map or a product outside nn.Linear (aten.mul.Tensor"),
    ("weights_as_activation", "rules", "11000 hidden units, more than the 100 allowed"),
    ("fixed_output_sums", "rules", "1280 hidden units, more than the 100 allowed"),
    ("numbers_in_the_graph", "exports", "writes 490 numbers into its operations"),
])
def test_a_graph_that_hides_its_weights_is_refused_with_one_line(graded, name, key, words):
    assert graded["rc"] == 0
    report = graded["reports"][name]
    assert not report["passed"]
    assert G.failures(report)[0]["requirement"] == key, G.first_failure(report)
    assert words in _reason(report, key) and "\n" not in _reason(report, key)


def test_an_honest_model_with_a_few_constants_still_passes(graded):
    report = graded["reports"]["honest_with_constants"]
    assert report["passed"], G.first_failure(report)
    assert report["hidden_units"] == 64 and report["hidden_layers"] == 1
