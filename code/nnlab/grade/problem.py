"""A graded problem as data: its data, rules, training budget, threshold, seeds and limits.

A problem is a :class:`Problem` built in Python or read from a small TOML file with
:func:`load_problem`::

    name = "2C"
    title = "MLP, at most 100 hidden units"
    data = "mnist"            # mnist, fashion_mnist, kmnist, or "package.module:attr"
    threshold = 0.975         # mean test accuracy over the seeds must reach this
    seeds = [0]
    threads = 1

    [rules]                   # the fields of nnlab.rules.Rules
    allowed = ["Flatten", "Linear", "ReLU", "Softmax", "Dropout"]
    max_hidden_units = 100

    [budget]
    mode = "fixed"            # fixed | submitted | weights
    epochs = 10               # fixed: TrainConfig fields; submitted: the defaults
    batch_size = 32

    [limits]                  # per submission's sandbox, enforced by the operating system
    cpu_seconds = 120
    memory_mib = 2048
    wall_seconds = 300

Budget modes: ``fixed`` trains every submission with the problem's recipe; ``submitted``
trains with the recipe the submission's ``recipe()`` returns, within ``max_epochs`` and
``min_batch_size``/``max_batch_size``, on the problem's data (``fit_on`` is the problem's); ``weights`` trains nothing: the submission brings
``weights.safetensors`` and is only evaluated.
"""

from __future__ import annotations

import difflib
import importlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

from nnlab.data import MNIST as _MNIST
from nnlab.data import DataSource, fashion_mnist, kmnist
from nnlab.rules import Rules
from nnlab.train import ConfigError, TrainConfig

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

MODES = ("fixed", "submitted", "weights")
BUILT_IN_DATA = {"mnist": lambda: _MNIST, "fashion_mnist": fashion_mnist, "kmnist": kmnist}
DEFAULT_FORBIDDEN = ("ctypes", "socket", "subprocess", "multiprocessing", "urllib", "http",
                     "requests", "torchvision")
RECIPE_FIELDS = tuple(f.name for f in fields(TrainConfig))


class ProblemError(ValueError):
    """A problem definition that cannot be used; the message names the field and the fix."""


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Its sandbox (which imports ``model.py``, builds and
    exports the model): CPU seconds of all its processes, memory it may add beyond the
    interpreter and torch (MiB), wall-clock seconds, processes and threads, and the size of
    its private ``/tmp`` and ``/dev/shm`` (MiB each). The grader's own training of the
    exported model, per seed: ``train_seconds`` of wall clock."""

    cpu_seconds: int = 120
    memory_mib: int = 2048
    wall_seconds: int = 300
    max_processes: int = 64
    tmp_mib: int = 256
    train_seconds: int = 3600

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProblemError(f"[limits] {f.name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Budget:
    """How a submission is trained.

    Attributes:
        mode: ``fixed`` (the problem's ``recipe``), ``submitted`` (the submission's own
            ``recipe()``, starting from ``recipe`` and within the limits below) or
            ``weights`` (no training: the submission's ``weights.safetensors`` is evaluated).
        recipe: the training recipe (``fixed``) or the defaults a submitted recipe overrides.
        max_epochs: most epochs a submitted recipe may train.
        min_batch_size: smallest batch size a submitted recipe may use.
        max_batch_size: largest batch size a submitted recipe may use.
    """

    mode: str = "fixed"
    recipe: TrainConfig = field(default_factory=TrainConfig)
    max_epochs: int | None = None
    min_batch_size: int | None = None
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ProblemError(f"[budget] mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.recipe, TrainConfig):
            raise ProblemError("Budget.recipe must be an nnlab.train.TrainConfig")
        for name in ("max_epochs", "min_batch_size", "max_batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ProblemError(f"[budget] {name} must be a positive integer, got {value!r}")
            if value is not None and self.mode != "submitted":
                raise ProblemError(f"[budget] {name} limits a submitted recipe: use it with "
                                   f'mode = "submitted", or remove it (mode is {self.mode!r})')

    def recipe_problems(self, recipe: TrainConfig) -> list[str]:
        """Every way a submitted recipe exceeds this budget's limits, in plain words."""
        found = []
        if self.max_epochs is not None and recipe.epochs > self.max_epochs:
            found.append(f"{recipe.epochs} epochs, more than the {self.max_epochs} allowed")
        if self.min_batch_size is not None and recipe.batch_size < self.min_batch_size:
            found.append(f"batch size {recipe.batch_size}, smaller than the {self.min_batch_size} required")
        if self.max_batch_size is not None and recipe.batch_size > self.max_batch_size:
            found.append(f"batch size {recipe.batch_size}, larger than the {self.max_batch_size} allowed")
        if recipe.fit_on != self.recipe.fit_on:
            found.append(f"fit_on {recipe.fit_on!r}: this problem trains on {self.recipe.fit_on!r} only, "
                         "and the submission may not choose its data")
        if recipe.threads != self.recipe.threads:
            found.append(f"threads {recipe.threads}: the problem sets threads, not the submission")
        return found


@dataclass(frozen=True)
class Problem:
    """A graded problem.

    Attributes:
        name: a short label (``"2C"``), used in reports.
        data: ``mnist``, ``fashion_mnist``, ``kmnist``, ``"module:attr"`` naming a
            :class:`~nnlab.data.DataSource` (or a function returning one), or a source itself.
        rules: the architecture rules, checked on what the model runs (:mod:`nnlab.rules`);
            layer types must be named (strings), since the check runs in another process.
        budget: how a submission is trained (:class:`Budget`).
        threshold: the mean test accuracy over ``seeds`` a submission must reach.
        seeds: one training run per seed (``weights`` mode evaluates once).
        threads: CPU threads a submission trains with (part of the recipe: sums depend on it).
        limits: CPU, memory and wall-clock limits per submission (:class:`Limits`).
        title: a longer description for reports.
        entry: the function of ``model.py`` that returns the model.
        forbidden_imports: modules ``model.py`` may not import (checked before it runs).
        train_size: use only the first N training images (quick demonstrations); None: all.
        test_size: use only the first N test images (quick demonstrations); None: all.
        private_test: ``"module:attr"`` naming a :class:`~nnlab.data.DataSource` whose test
            split is graded instead of ``data``'s (a public test set can be learnt by heart;
            grading for credit wants one students have never seen). Its shapes must match.
        base: the folder ``module:attr`` names are also looked up in (a TOML problem's own
            folder; set by :func:`load_problem`), after the ``[tool.nnlab]`` project root.
    """

    name: str
    data: str | DataSource
    rules: Rules
    threshold: float
    budget: Budget = field(default_factory=Budget)
    seeds: tuple[int, ...] = (0,)
    threads: int = 1
    limits: Limits = field(default_factory=Limits)
    title: str = ""
    entry: str = "build"
    forbidden_imports: tuple[str, ...] = DEFAULT_FORBIDDEN
    train_size: int | None = None
    test_size: int | None = None
    private_test: str | None = None
    base: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ProblemError("name must be a non-empty string, e.g. name = \"2C\"")
        if isinstance(self.data, str):
            if self.data not in BUILT_IN_DATA and ":" not in self.data:
                raise ProblemError(f"data {self.data!r} is neither {', '.join(BUILT_IN_DATA)} nor "
                                   '"module:attr" naming a DataSource; fix the data field')
        elif not isinstance(self.data, DataSource):
            raise ProblemError(f"data must be a name or an nnlab.data.DataSource, got {type(self.data).__name__}")
        if not isinstance(self.rules, Rules):
            raise ProblemError("rules must be an nnlab.rules.Rules")
        if not (isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
                and math.isfinite(self.threshold) and 0 <= self.threshold <= 1):
            raise ProblemError(f"threshold must be an accuracy between 0 and 1, got {self.threshold!r}")
        seeds = tuple(self.seeds) if isinstance(self.seeds, (list, tuple)) else None
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ProblemError(f"seeds must be a list of distinct integers >= 0, e.g. seeds = [0, 1, 2]; "
                               f"got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "forbidden_imports", tuple(self.forbidden_imports))
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise ProblemError(f"threads must be a positive integer, got {self.threads!r}")
        if self.budget.recipe.threads != self.threads:
            object.__setattr__(self, "budget", _with_threads(self.budget, self.threads))
        if not isinstance(self.entry, str) or not self.entry.isidentifier():
            raise ProblemError(f"entry must name a function of model.py, e.g. entry = \"build\"; got {self.entry!r}")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ProblemError(f"{name} must be a positive integer (or left out for all images), got {value!r}")
        if self.private_test is not None and not (isinstance(self.private_test, str) and ":" in self.private_test):
            raise ProblemError(f'private_test must be "module:attr" naming a DataSource, got {self.private_test!r}')
        shown = sorted(n for n in self.rules.allowed | self.rules.required if "." in n)
        if shown:
            raise ProblemError(f"rules name course-defined layer classes ({', '.join(shown)}); grading checks "
                               "rules in a separate process, so name torch.nn layers only")

    def source(self) -> DataSource:
        """The data source this problem names."""
        return resolve_data(self.data, self.base)

    def test_source(self) -> DataSource:
        """Where the graded test images come from: ``private_test`` if given, else ``data``."""
        if self.private_test is None:
            return self.source()
        test = resolve_data(self.private_test, self.base)
        train = self.source()
        if tuple(test.input_shape) != tuple(train.input_shape) or test.num_classes != train.num_classes:
            raise ProblemError(f"private_test {self.private_test!r} has inputs {tuple(test.input_shape)} and "
                               f"{test.num_classes} classes; data has {tuple(train.input_shape)} and "
                               f"{train.num_classes}: they must match")
        return test

    def to_dict(self) -> dict:
        """Plain data, as the TOML file holds it (defaults left out)."""
        d: dict = {"name": self.name}
        if self.title:
            d["title"] = self.title
        if not isinstance(self.data, str):
            raise ProblemError(f"problem {self.name}: its data is a {type(self.data).__name__} object, which a "
                               'TOML file cannot hold; name it instead, e.g. data = "mycourse.data:DIGITS"')
        d["data"] = self.data
        d["threshold"] = self.threshold
        d["seeds"] = list(self.seeds)
        d["threads"] = self.threads
        for key, default in (("entry", "build"), ("forbidden_imports", DEFAULT_FORBIDDEN),
                             ("train_size", None), ("test_size", None), ("private_test", None)):
            value = getattr(self, key)
            if value != default:
                d[key] = list(value) if isinstance(value, tuple) else value
        r = self.rules
        rules: dict = {"name": r.name, "allowed": sorted(r.allowed)}
        if r.max_hidden_units is not None:
            rules["max_hidden_units"] = r.max_hidden_units
        if r.min_hidden_layers:
            rules["min_hidden_layers"] = r.min_hidden_layers
        if r.max_parameters is not None:
            rules["max_parameters"] = r.max_parameters
        if r.required:
            rules["required"] = sorted(r.required)
        d["rules"] = rules
        b = self.budget
        budget: dict = {"mode": b.mode}
        if b.mode != "weights":  # epochs and batch size always, other fields when not the default
            base = TrainConfig(threads=self.threads)
            for k in RECIPE_FIELDS:
                v = getattr(b.recipe, k)
                if k != "threads" and (k in ("epochs", "batch_size") or v != getattr(base, k)):
                    budget[k] = list(v) if isinstance(v, tuple) else v
        for key in ("max_epochs", "min_batch_size", "max_batch_size"):
            if getattr(b, key) is not None:
                budget[key] = getattr(b, key)
        d["budget"] = budget
        d["limits"] = {f.name: getattr(self.limits, f.name) for f in fields(self.limits)}
        return d

    def to_toml(self) -> str:
        """The definition as a TOML file that :func:`load_problem` reads back equal."""
        d = self.to_dict()
        lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
        for table in ("rules", "budget", "limits"):
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in d[table].items()]
        return "\n".join(lines) + "\n"


def _with_threads(budget: Budget, threads: int) -> Budget:
    from dataclasses import replace

    return replace(budget, recipe=replace(budget.recipe, threads=threads))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _search_path(base: str | None) -> list[str]:
    """Where a course's modules are: the ``[tool.nnlab]`` project root, then ``base``."""
    from nnlab.project import find_config

    config, _ = find_config()
    folders = [str(config.parent)] if config else []
    return folders + ([str(Path(base).resolve())] if base else [])


def resolve_data(data: str | DataSource, base: str | None = None) -> DataSource:
    """A built-in name, or ``"module:attr"`` naming a DataSource or a function returning one,
    looked up as ``nnlab train`` looks up experiments (the project root), then in ``base``."""
    import sys

    if isinstance(data, DataSource):
        return data
    if data in BUILT_IN_DATA:
        return BUILT_IN_DATA[data]()
    module, _, attr = data.partition(":")
    extra = [p for p in _search_path(base) if p not in sys.path]
    sys.path[:0] = extra
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        where = ", ".join(_search_path(base)) or "the current folder"
        raise ProblemError(f"data {data!r} cannot be found ({type(exc).__name__}: {exc}); looked in {where} and "
                           "the installed packages: put the module there, or install it") from None
    finally:
        for p in extra:
            if p in sys.path:
                sys.path.remove(p)
    if callable(obj) and not isinstance(obj, DataSource):
        obj = obj()
    if not isinstance(obj, DataSource):
        raise ProblemError(f"data {data!r} is a {type(obj).__name__}, not an nnlab.data.DataSource")
    return obj


_TOP = {"name", "title", "data", "threshold", "seeds", "threads", "entry", "forbidden_imports",
        "train_size", "test_size", "private_test", "rules", "budget", "limits"}
_RULES = {"name", "allowed", "max_hidden_units", "min_hidden_layers", "max_parameters", "required"}
_BUDGET = {"mode", "max_epochs", "min_batch_size", "max_batch_size", *RECIPE_FIELDS} - {"threads"}
_LIMITS = {f.name for f in fields(Limits)}


def _unknown(table: dict, known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
            raise ProblemError(f"unknown key {key!r} in {where}; {hint}")


def problem_from_dict(d: dict, where: str = "the problem") -> Problem:
    """A :class:`Problem` from the plain data of a TOML file; a :class:`ProblemError` names
    ``where`` (the file), the field and the fix."""
    try:
        return _from_dict(d, where)
    except ProblemError as exc:
        text = str(exc)
        raise ProblemError(text if text.startswith(where) else f"{where}: {text}") from None


def _from_dict(d: dict, where: str) -> Problem:
    _unknown({k: v for k, v in d.items() if k != "base"}, _TOP, where)
    for key in ("name", "data", "threshold", "rules"):
        if key not in d:
            raise ProblemError(f"{where} has no {key!r}; add it (see `nnlab grade --help`)")
    for table in ("rules", "budget", "limits"):
        if table in d and not isinstance(d[table], dict):
            raise ProblemError(f"{where}: {table} must be a table, [{table}]")
    rd = dict(d["rules"])
    _unknown(rd, _RULES, f"{where} [rules]")
    try:
        rules = Rules(name=rd.pop("name", f"{d['name']}"), allowed=frozenset(rd.pop("allowed", ())),
                      required=frozenset(rd.pop("required", ())), **rd)
    except (TypeError, ValueError) as exc:
        raise ProblemError(f"{where} [rules]: {exc}") from None
    bd = dict(d.get("budget", {}))
    _unknown(bd, _BUDGET, f"{where} [budget]")
    mode = bd.pop("mode", "fixed")
    limits_of = {k: bd.pop(k) for k in ("max_epochs", "min_batch_size", "max_batch_size") if k in bd}
    if mode == "weights" and bd:
        raise ProblemError(f"{where} [budget]: mode \"weights\" trains nothing, so {', '.join(sorted(bd))} "
                           "mean nothing; remove them or choose mode \"fixed\" or \"submitted\"")
    if "milestones" in bd:
        bd["milestones"] = tuple(bd["milestones"])
    threads = d.get("threads", 1)
    try:
        recipe = TrainConfig(**bd, threads=threads if isinstance(threads, int) and threads > 0 else 1)
    except ConfigError as exc:
        raise ProblemError(f"{where} [budget]: {exc}") from None
    try:
        limits = Limits(**d.get("limits", {}))
    except TypeError as exc:
        raise ProblemError(f"{where} [limits]: {exc}") from None
    _unknown(d.get("limits", {}), _LIMITS, f"{where} [limits]")
    budget = Budget(mode=mode, recipe=recipe, **limits_of)
    kwargs = {k: d[k] for k in ("title", "seeds", "threads", "entry", "forbidden_imports",
                                "train_size", "test_size", "private_test", "base") if k in d}
    try:
        return Problem(name=d["name"], data=d["data"], rules=rules, threshold=d["threshold"],
                       budget=budget, limits=limits, **kwargs)
    except ProblemError as exc:
        raise ProblemError(f"{where}: {exc}") from None


def load_problem(path: str | Path) -> Problem:
    """Read a problem from a TOML file, or return it from ``"module:attr"`` (a :class:`Problem`).

    Raises:
        ProblemError: the file is missing or malformed, or a field is wrong; the message
            names the file, the field and the fix.
    """
    text = str(path)
    p = Path(text)
    if not p.suffix == ".toml" and ":" in text and not p.exists():
        module, _, attr = text.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):  # attributes, or keys of a dict of problems
                obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        except (ImportError, AttributeError, KeyError) as exc:
            raise ProblemError(f"problem {text!r} cannot be found ({type(exc).__name__}: {exc}); give a .toml "
                               "file or module:attr naming an nnlab.grade.Problem") from None
        if not isinstance(obj, Problem):
            raise ProblemError(f"problem {text!r} is a {type(obj).__name__}, not an nnlab.grade.Problem")
        return obj
    if not p.is_file():
        raise ProblemError(f"problem file {p} does not exist; give the path of a .toml problem definition")
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProblemError(f"problem file {p} is not valid TOML ({exc}); fix the line it names") from None
    return problem_from_dict({**d, "base": str(p.resolve().parent)} if isinstance(d, dict) else d, str(p))
