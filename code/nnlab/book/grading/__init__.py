"""The problem set's problems 2C, 2D, 2E and 3G as grading definitions, and the book's own
models as submissions.

:data:`PROBLEMS` is built from :mod:`nnlab.book.problems` (the rules and the required
accuracies) and the book's experiment catalogue; the TOML files beside this module
(``2C.toml`` ...) are the same definitions written out by :meth:`nnlab.grade.problem.Problem.to_toml`,
for ``nnlab grade`` and for instructors to copy. The book grades *trained weights*
(``mode = "weights"``): its checks are the rules and the test accuracy of stored models.
A course that also wants 3G's training budget enforced copies ``3G.toml`` with
``mode = "submitted"``, ``max_epochs = 10`` and batch size 32.
"""

from __future__ import annotations

import json
from pathlib import Path

from nnlab import results
from nnlab.book import experiments as BE
from nnlab.book import problems as P
from nnlab.grade import Budget, Problem
from nnlab.rules import Rules

FOLDER = Path(__file__).resolve().parent


def rules_of(code: str) -> Rules:
    """The rules of problem ``code`` (2C, 2D, 2E, 3G): those its experiment was trained under."""
    return BE.get(_target(code).experiment).rules


def _target(code: str) -> P.Target:
    for t in P.TARGETS:
        if t.problem == code:
            return t
    raise KeyError(f"no problem {code!r}; the book's problems are {', '.join(t.problem for t in P.TARGETS)}")


def _problem(target: P.Target) -> Problem:
    return Problem(name=target.problem, title=target.task, data="mnist", rules=rules_of(target.problem),
                   threshold=target.required, budget=Budget("weights"), seeds=(0,))


PROBLEMS: dict[str, Problem] = {t.problem: _problem(t) for t in P.TARGETS}


def definition(code: str) -> Path:
    """The shipped TOML file of problem ``code``."""
    _target(code)
    return FOLDER / f"{code}.toml"


def write_definitions() -> list[Path]:
    """Write the TOML files again from :data:`PROBLEMS` (after the book's rules change)."""
    from nnlab.fileio import atomic_write_bytes

    paths = []
    for code, problem in PROBLEMS.items():
        atomic_write_bytes(definition(code), problem.to_toml().encode())
        paths.append(definition(code))
    return paths


MODEL_PY = '''"""The book's {experiment} model ({variant}, seed {seed}) as a submission."""

from nnlab.models import build as _build

SPEC = {spec}
INPUT_SHAPE = {shape}


def build():
    return _build(SPEC, INPUT_SHAPE)
'''


def export_submission(experiment: str, folder: str | Path, seed: int | None = None,
                      variant: str | None = None) -> Path:
    """Write a stored book model as a submission: ``model.py`` (the spec) and
    ``weights.safetensors`` (its stored weights, checked against their sha256). Returns the folder."""
    from safetensors.torch import save_file

    exp = BE.get(experiment)
    v = exp.variant(variant or results.chosen_variant(exp))
    seed = exp.seeds[0] if seed is None else seed
    model = results.load_model(exp, seed=seed, variant=v.name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(MODEL_PY.format(experiment=exp.name, variant=v.name, seed=seed,
                                                     spec=json.dumps(list(v.spec)),
                                                     shape=tuple(exp.data.input_shape)))
    save_file({k: t.contiguous() for k, t in model.state_dict().items()}, str(folder / "weights.safetensors"))
    return folder
