"""`nnlab grade` against graphs that hide what they compute (the red team's attacks 1 and 3).

Attack 1 certifies a 1,000-unit network as having no hidden units: its output weights are
the activation of a Linear applied to a constant, multiplied in and summed by slicing and
adding. Attack 3 writes trained weights into the graph as numbers, which a fixed budget
neither counts nor resets. Both are graded in one class beside an honest model that uses a
few constants of its own, which must still pass. The graph checks themselves are also run
on graphs exported here, without a sandbox: the book's own models keep their counts.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from nnlab import cli
from nnlab import grade as G
from nnlab.grade import _sandboxed, checks, sandbox
from nnlab.grade import graph as GG

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
    ("weights_as_activation", "rules", "multiplies computed tensors (aten.mul.Tensor of two tensors)"),
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


def _facts(model) -> GG.Facts:
    """The facts the grader reads from ``model``'s graphs (exported here, as a sandbox would)."""
    import torch

    torch.manual_seed(0)
    doc = {"format": GG.FORMAT, **_sandboxed._export(model.float(), [1, 28, 28])}
    return GG.read_graph(doc, (1, 28, 28), 10)[1]


@pytest.mark.parametrize("problem, hidden", [("2C", [100]), ("2D", [150, 50]), ("2E", [700, 200, 100]), ("3G", [])])
def test_the_books_models_keep_their_counts_and_break_no_rule(problem, hidden):
    from nnlab.book import experiments as BE
    from nnlab.book import grading
    from nnlab.book import problems as P
    from nnlab.models import build

    target = next(t for t in P.TARGETS if t.problem == problem)
    facts = _facts(build(BE.get(target.experiment).variants[0].spec, (1, 28, 28)))
    assert facts.hidden == hidden and not facts.products and not facts.linear_maps
    assert checks.violations(facts, grading.rules_of(problem)) == []


TABLE = textwrap.dedent("""
    import random
    import torch
    from torch import nn

    random.seed(0)
    Q = [random.randrange(16) for _ in range(490)]  # 4-bit weights, picked from a table of levels

    def total(p):""") + _HALVING + textwrap.dedent("""

    class Table(nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = nn.Linear(784, 10)

        def forward(self, x):
            flat = x.flatten(1)
            one = flat[:1, :1] * 0 + 1
            levels, step = [one * -1], one * 0.5 * 0.5 * 0.5  # no number but -1 and 0.5
            for _ in range(15):
                levels.append(levels[-1] + step)
            w = torch.cat([torch.cat([levels[q] for q in Q[i:i + 49]], dim=1) for i in range(0, 490, 49)], dim=0)
            return total(x[:, 0, ::4, ::4].reshape(-1, 1, 49) * w.unsqueeze(0)) + self.dummy(flat) * 0.0

    def build():
        return Table()
    """)


def test_weights_picked_from_a_table_of_plain_numbers_break_rules_that_name_layers():
    """Attack 3 without numbers: the weights are references to a few computed levels. Applying
    them takes a product of computed tensors, which no allowed layer computes."""
    import types

    module = types.ModuleType("table")
    exec(TABLE, module.__dict__)
    from nnlab.book import grading

    found = checks.violations(_facts(module.build()), grading.rules_of("3G"))
    assert any("multiplies computed tensors (aten.mul.Tensor of two tensors)" in f for f in found), found


OPEN_RULES = PROBLEM.replace('allowed = ["Dropout", "Flatten", "Linear", "ReLU", "Softmax"]\nmax_hidden_units = 100',
                             "max_parameters = 20000")


@pytest.mark.parametrize("mode", ["fixed", "submitted"])
def test_a_table_of_plain_numbers_fails_a_training_budget_under_open_rules(tmp_path, mode):
    """Rules that name no layer and count no unit accept a product of computed tensors; under a
    budget where the grader trains the model, such a product could apply weights made of
    numbers that the grader never starts afresh, so the budget is not verified."""
    assert "allowed" not in OPEN_RULES and "max_parameters = 20000" in OPEN_RULES
    problem = OPEN_RULES if mode == "fixed" else OPEN_RULES.replace(
        'mode = "fixed"\nepochs = 2\nbatch_size = 32\nlr = 0.005', 'mode = "submitted"\nmax_epochs = 2')
    cls = tmp_path / "class"
    cls.mkdir()
    (cls / "table.py").write_text(TABLE + ("\ndef recipe():\n    return {'epochs': 1, 'batch_size': 32, 'lr': 0.001}\n"
                                           if mode == "submitted" else ""))
    (tmp_path / "problem.toml").write_text(problem)
    out = tmp_path / "out"
    assert cli.main(["grade", str(tmp_path / "problem.toml"), str(cls), "--out", str(out)]) == 0
    report = json.loads((out / "table" / "report.json").read_text())
    assert not report["passed"] and G.failures(report)[0]["requirement"] == "budget", G.first_failure(report)
    reason = _reason(report, "budget")
    assert "multiplies computed tensors" in reason and "aten.mul.Tensor of two tensors" in reason and "\n" not in reason


# Round 2 of the red team (attacks 1-3): weights applied without a product, through a softmax
# or a BatchNorm's statistics, and numbers carried by dropout rates.

def _graph_error(model) -> str:
    with pytest.raises(GG.GraphError) as caught:
        _facts(model)
    return str(caught.value)


def _module(source: str):
    import types

    module = types.ModuleType("attack")
    exec(textwrap.dedent(source), module.__dict__)
    return module.build()


SOFTMAX_SUM = """
    import torch
    from torch import nn

    class SoftSum(nn.Module):  # e^(f + w) as softmax([f + w, 32])[0]: weights applied by an addition
        def __init__(self):
            super().__init__()
            self.soft, self.dummy = nn.Softmax(dim=-1), nn.Linear(784, 10)

        def forward(self, x):
            flat = x.flatten(1)
            one = flat[:1, :1] * 0 + 1
            w = torch.cat([one * 0, one * -1] * 5, dim=1)            # (1, 10) weights from plain numbers
            u = (flat[:, :10] + w).unsqueeze(-1)                      # (n, 10, 1)
            c = (one * 2 * 2 * 2 * 2 * 2).expand(u.shape[0], 10, 1)   # 32
            return self.soft(torch.cat([u, c], dim=-1))[..., 0] + self.dummy(flat) * 0

    def build():
        return SoftSum()
    """


def test_a_softmax_before_the_class_scores_breaks_rules_that_name_layers():
    """Attack 1 of round 2: a softmax over [u, 32] computes e^u, so adding computed weights
    to the input and taking that softmax applies them as factors, with no product at all."""
    from nnlab.book import grading

    found = checks.violations(_facts(_module(SOFTMAX_SUM)), grading.rules_of("2C"))
    assert any("runs aten.softmax.int before the class scores" in f and "\n" not in f for f in found), found


def test_a_final_softmax_of_the_class_scores_is_still_the_output_layers():
    from torch import nn

    from nnlab.book import grading

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Dropout(0.25), nn.Linear(100, 10),
                          nn.Softmax(dim=1))
    facts = _facts(model)
    assert facts.hidden == [100] and checks.violations(facts, grading.rules_of("2C")) == []


BATCHNORM_DIVIDES = """
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Divide(nn.Module):  # (x - 0) / sqrt(running_var): a BatchNorm given computed statistics
        def __init__(self):
            super().__init__()
            self.bn, self.dummy = nn.BatchNorm2d(10), nn.Linear(784, 10)

        def forward(self, x):
            flat = x.flatten(1)
            one = flat[:1, :1] * 0 + 1
            var = torch.cat([one * 2 * 2, one] * 5, dim=1).reshape(10)   # computed, not the layer's own
            y = F.batch_norm(flat[:, :10].reshape(-1, 10, 1, 1), torch.zeros_like(var), var,
                             self.bn.weight, self.bn.bias, self.training, 0.1, 1e-5)
            return y.flatten(1) + self.dummy(flat) * 0

    def build():
        return Divide()
    """


def test_a_batchnorm_given_computed_statistics_is_a_product():
    """Attack 2 of round 2: a computed running_var divides the input by a chosen tensor."""
    facts = _facts(_module(BATCHNORM_DIVIDES))
    assert "aten.batch_norm.default with a computed running_var" in facts.products, facts.products


def test_a_batchnorm_in_the_wrong_mode_fails_the_export():
    """A training graph whose BatchNorm uses its (frozen) running statistics is no nn.BatchNorm."""
    source = BATCHNORM_DIVIDES.replace("torch.zeros_like(var), var,", "self.bn.running_mean, self.bn.running_var,"
                                       ).replace("self.training, 0.1", "False, 0.1")
    reason = _graph_error(_module(source))
    assert "train graph runs aten.batch_norm.default with training=False" in reason and "\n" not in reason


def test_the_books_batchnorm_cnn_keeps_its_statistics_its_own():
    from nnlab.book import experiments as BE
    from nnlab.models import build

    facts = _facts(build(BE.cnn_spec(), (1, 28, 28)))
    assert not facts.products and "BatchNorm2d" in facts.layers


DROPOUT_RATES = """
    import torch
    from torch import nn
    import torch.nn.functional as F

    RATES = [0.123456789, 0.0123, 0.0456, 0.0789, 0.13579, 0.1111, 0.2222, 0.3333, 0.4444, 0.31415926,
             0.27182818, 0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006]  # 17 arbitrary numbers

    class Rates(nn.Module):  # max over samples of dropout(1, p) is 1 / (1 - p): one number per node
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(784, 10)

        def forward(self, x):
            ones = (x.flatten(1)[:1, :1] * 0 + 1).expand(8, 1)
            vals = torch.cat([F.dropout(ones, p, self.training) for p in RATES], dim=1)
            return self.l(x.flatten(1)) + vals.sum() * 0

    def build():
        return Rates()
    """


def test_dropout_rates_count_as_numbers_unless_common():
    """Attack 3 of round 2: any rate in [0, 1) was a free number."""
    reason = _graph_error(_module(DROPOUT_RATES))
    assert "train graph writes 17 numbers into its operations" in reason and "\n" not in reason
    few = DROPOUT_RATES.replace("0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006", "0.1, 0.2, 0.25, 0.3, 0.5, 0.5")
    assert _facts(_module(few)).layers.count("Dropout") == 17  # 11 uncommon rates and common ones: accepted


def test_active_dropout_in_the_eval_graph_fails_the_export():
    """Dropout run with train=True in the evaluation graph lets noise (and a rate) into scores."""
    source = DROPOUT_RATES.replace("self.training)", "True)").replace(
        "0.0001, 0.0002, 0.0003, 0.0004, 0.0005, 0.0006", "")
    reason = _graph_error(_module(source))
    assert "eval graph runs aten.dropout.default with train=True" in reason and "\n" not in reason
