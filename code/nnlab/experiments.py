"""Experiments as data, and the registry that names them.

An :class:`Experiment` is a frozen dataclass that carries everything its runs need, by
value: the data it trains on (a :class:`~nnlab.data.DataSource`), one or more model
variants (a spec or a factory each, optionally with their own training config), the rules they must
obey, a training config and the seeds. A worker process receives the experiment itself,
never a name to look up.

Each variant has its own hash (:func:`variant_hashes`: its spec, or its factory's path,
kwargs and module source; its training config, the rules and the data's description), stored with its runs: a change to a variant makes that
variant's runs stale, while a new variant or a new seed only adds runs to train.

The registry is empty when ``nnlab`` is imported. A course registers its experiments in a
module of its own (``register(Experiment(...))``) and names that module in the
``[tool.nnlab]`` table of its ``pyproject.toml`` (see :mod:`nnlab.project`); :func:`get`
imports the project's modules the first time a name is not found.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nnlab import factories, project
from nnlab import rules as R
from nnlab.data import MNIST, DataSource
from nnlab.fileio import json_hash
from nnlab.models import build
from nnlab.train import TrainConfig


@dataclass(frozen=True)
class Variant:
    """One model of an experiment: a name, its model and an optional training override.

    The model is either a ``spec`` (layer tokens, built by :func:`nnlab.models.build`) or a
    ``factory``, the import path ``"module:function"`` of a function or class of the course's
    own that returns an ``nn.Module`` (see :mod:`nnlab.factories`). A factory is called with
    ``input_shape=`` and ``classes=`` from the experiment's data, plus ``kwargs`` (JSON values,
    stored as sorted ``(name, value)`` pairs; a dict is accepted). Its variant's hash covers
    the path, the kwargs and the source of the module that defines the factory.
    """

    name: str
    spec: tuple[str, ...] | None = None
    train: TrainConfig | None = None
    info: tuple[tuple[str, float | int | str], ...] = ()  # e.g. (("depth", 2),) for tables
    factory: str | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if (self.spec is None) == (self.factory is None):
            raise ValueError(f"variant {self.name!r}: give either spec (layer tokens) or factory "
                             f"(an import path like {factories.EXAMPLE}), not {'both' if self.spec else 'neither'}")
        if self.factory is not None:
            factories.check_path(self.factory)
            object.__setattr__(self, "kwargs", factories.check_kwargs(self.kwargs, self.factory))
            return
        if self.kwargs:
            raise ValueError(f"variant {self.name!r}: kwargs go with a factory; a spec variant takes none")
        if isinstance(self.spec, str):
            raise TypeError(f"variant {self.name!r}: spec must be a sequence of layer tokens, not one string")
        object.__setattr__(self, "spec", tuple(self.spec))

    def source(self) -> dict[str, str] | None:
        """A factory variant's model source, ``{"file", "sha256"}`` (see
        :func:`nnlab.factories.source`); None for a spec."""
        return None if self.factory is None else factories.source(self.factory)

    def build(self, data: DataSource) -> nn.Module:
        """This variant's model, freshly initialised for ``data``'s input shape and classes."""
        if self.factory is None:
            return build(self.spec, data.input_shape)
        return factories.call(self.factory, dict(self.kwargs), data.input_shape, data.num_classes)

    def to_dict(self) -> dict:
        train = self.train.to_dict() if self.train else None
        if self.factory is None:  # exactly as before factories: stored spec results stay current
            return {"name": self.name, "spec": list(self.spec), "train": train, "info": dict(self.info)}
        return {"name": self.name, "factory": self.factory, "kwargs": dict(self.kwargs), "source": self.source(),
                "train": train, "info": dict(self.info)}


@dataclass(frozen=True)
class Experiment:
    """A named training experiment.

    Attributes:
        name: the registry key, used by ``nnlab train NAME`` and as the results folder.
        purpose: one sentence for listings and reproduction guides.
        chapter: where it is used (free text: a chapter, a lecture, an assignment).
        variants: the models trained; each is trained once per seed.
        train: the training config shared by the variants (unless a variant overrides it).
        seeds: the seeds each variant is trained with.
        rules: the rules every variant must pass before training.
        save_weights: store the trained weights (safetensors) for every run.
        data: what the runs train on (MNIST by default).
        keep_failed: store runs that learned nothing (a loss blow-up, or chance-level
            training accuracy; see :func:`nnlab.train.train`), marked with the reason in
            their ``failed`` field, instead of refusing them: for experiments that show such a
            run on purpose. Not part of the hash: it decides what is stored, not what a run
            computes.
    """

    name: str
    purpose: str
    chapter: str
    variants: tuple[Variant, ...]
    train: TrainConfig
    seeds: tuple[int, ...] = (0, 1, 2)
    rules: R.Rules = R.NONE
    save_weights: bool = True
    data: DataSource = field(default=MNIST)
    keep_failed: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name.strip() or "/" in self.name or self.name.startswith("."):
            problems.append(f"name must be a non-empty folder name without '/', got {self.name!r}")
        object.__setattr__(self, "variants", tuple(self.variants))
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.variants:
            problems.append("it has no variants")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            problems.append(f"duplicate variant names {sorted({n for n in names if names.count(n) > 1})}")
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in self.seeds):
            problems.append(f"seeds must be integers, at least one, got {self.seeds!r}")
        elif len(set(self.seeds)) != len(self.seeds):
            problems.append(f"duplicate seeds in {list(self.seeds)}")
        if not isinstance(self.data, DataSource):
            problems.append(f"data must be an nnlab.data.DataSource (e.g. nnlab.data.MNIST or "
                            f"nnlab.data.ArrayData(...)), got {type(self.data).__name__}")
        if problems:
            raise ValueError(f"experiment {self.name!r}: " + "; ".join(problems))

    def train_config(self, variant: Variant) -> TrainConfig:
        return variant.train or self.train

    def variant(self, name: str | None = None) -> Variant:
        if name is None:
            return self.variants[0]
        for v in self.variants:
            if v.name == name:
                return v
        known = [v.name for v in self.variants]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        raise UnknownVariant(f"experiment {self.name!r} has no variant {name!r}; its variants: "
                             f"{', '.join(known)}" + (f". Did you mean {' or '.join(close)}?" if close else ""))

    def runs(self) -> list[tuple[Variant, int]]:
        return [(v, s) for v in self.variants for s in self.seeds]

    def config(self) -> dict:
        """Everything that determines the result, as plain JSON data."""
        r = self.rules
        return {
            "name": self.name,
            "variants": [v.to_dict() for v in self.variants],
            "train": self.train.to_dict(),
            "seeds": list(self.seeds),
            "rules": {"name": r.name, "allowed": sorted(r.allowed), "max_hidden_units": r.max_hidden_units,
                      "min_hidden_layers": r.min_hidden_layers, "max_parameters": r.max_parameters,
                      "required": sorted(r.required)},
            "data": self.data.describe(),
        }

    def config_hash(self) -> str:
        return json_hash(self.config())

    def variant_hashes(self) -> dict[str, str]:
        """Per variant name, the hash that its stored runs must carry to be current."""
        return variant_hashes(self.config())


def variant_hashes(config: dict) -> dict[str, str]:
    """Hash of everything that determines a variant's runs, per variant, from an experiment's
    :meth:`Experiment.config` (the registered one, or the one stored with a result).

    The hash covers the experiment's name, the variant (spec or factory, training override, info), the
    training config it uses, the rules and the data's description. Seeds are left out: a run
    is keyed by its seed, so adding a seed or a variant leaves every stored run current.
    """
    return {v["name"]: json_hash({"experiment": config["name"], "variant": v,
                                  "train": v["train"] or config["train"],
                                  "rules": config["rules"], "data": config["data"]})
            for v in config["variants"]}


REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment, *, replace: bool = False) -> Experiment:
    """Add an experiment to the registry and return it.

    Registering an equal experiment again (a module imported twice, a notebook cell run
    again) does nothing; a different one under a registered name needs ``replace=True``.
    """
    if not isinstance(exp, Experiment):
        raise TypeError(f"register takes an nnlab.experiments.Experiment, got {type(exp).__name__}")
    old = REGISTRY.get(exp.name)
    if old is not None and old != exp and not replace:
        raise ValueError(f"experiment {exp.name!r} is registered twice with different settings; "
                         "rename one, or pass replace=True to register(...)")
    REGISTRY[exp.name] = exp
    return exp


def unregister(name: str) -> None:
    """Remove an experiment from the registry (no error if it is not there)."""
    REGISTRY.pop(name, None)


class UnknownVariant(KeyError):
    """An experiment has no variant of that name; the message names the ones it has."""

    def __str__(self) -> str:  # KeyError quotes its message; a reader wants plain text
        return str(self.args[0])


class UnknownExperiment(KeyError):
    """No experiment of that name is registered; the message suggests close names."""

    def __str__(self) -> str:  # KeyError quotes its message; a reader wants plain text
        return str(self.args[0])


_LOADED: set[tuple[str, ...]] = set()


def load_project() -> None:
    """Import the experiment modules of the project in force (once per set of modules)."""
    modules = project.current().experiments
    if modules and modules not in _LOADED:
        project.import_experiments()
        _LOADED.add(modules)


def get(name: str | Experiment) -> Experiment:
    """The registered experiment called ``name`` (an :class:`Experiment` is returned as is).

    Raises:
        UnknownExperiment: with the closest registered names, or how to declare the
            experiment modules when none are registered.
    """
    if isinstance(name, Experiment):
        return name
    if name not in REGISTRY:
        load_project()
    if name in REGISTRY:
        return REGISTRY[name]
    if not REGISTRY:
        raise UnknownExperiment(
            f"no experiment named {name!r}: no experiments are registered. Name the module that "
            f'registers yours in your pyproject.toml ([tool.nnlab] experiments = ["mycourse.experiments"]), '
            f"or pass --experiments MODULE (or set NNLAB_EXPERIMENTS).")
    close = difflib.get_close_matches(name, REGISTRY, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownExperiment(f"no experiment named {name!r}.{hint} "
                            f"`{project.cli_hint('nnlab list')}` shows them all.")


def names() -> list[str]:
    """Names of the registered experiments (after importing the project's modules)."""
    load_project()
    return list(REGISTRY)
