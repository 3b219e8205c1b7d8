"""Where a course keeps its experiments and results: the ``[tool.nnlab]`` table.

``nnlab`` finds its settings the way pytest and ruff do: in the nearest ``pyproject.toml``
that has a ``[tool.nnlab]`` table, searching from the current folder upward::

    [tool.nnlab]
    experiments = ["mycourse.experiments"]  # modules (or .py files) that register experiments
    results = "results"                     # the results folder, relative to this file

Precedence, first found wins:

* experiment modules: ``--experiments MODULE`` (CLI), ``$NNLAB_EXPERIMENTS`` (comma-separated),
  the table's ``experiments``; none at all is allowed (nothing is registered);
* results folder: ``$NNLAB_RESULTS``, the table's ``results``, ``./results`` of the folder
  that holds the ``pyproject.toml`` (else of the current folder). Never inside the installed
  package.

A dotted module is imported with the project's folder first on ``sys.path`` (so a course's
own package next to its ``pyproject.toml`` is found without installing it); a name ending in
``.py`` is a file, relative to that folder. Importing a module runs its ``register(...)`` calls.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KEYS = ("experiments", "results")


class ProjectError(ValueError):
    """The ``[tool.nnlab]`` settings or an experiment module cannot be used; says how to fix it."""


@dataclass(frozen=True)
class Project:
    """The settings in force.

    Attributes:
        config_file: the ``pyproject.toml`` whose ``[tool.nnlab]`` table was read, or None.
        root: its folder (the current folder when there is none).
        experiments: the experiment modules to import.
        experiments_from: where they came from: ``--experiments``, ``NNLAB_EXPERIMENTS``,
            the config file's path, or ``nowhere``.
        results: the results folder.
        results_from: ``NNLAB_RESULTS``, the config file's path, or ``default``.
    """

    config_file: Path | None
    root: Path
    experiments: tuple[str, ...]
    experiments_from: str
    results: Path
    results_from: str


def _read_table(path: Path, mtime_ns: int) -> dict | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path} is not valid TOML ({exc}); fix the file or run nnlab from "
                           "another folder") from None
    table = data.get("tool", {}).get("nnlab")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ProjectError(f"{path}: [tool.nnlab] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ProjectError(f"{path}: unknown key(s) {', '.join(unknown)} in [tool.nnlab]; "
                           f"known: {', '.join(KEYS)}")
    exps = table.get("experiments", [])
    if isinstance(exps, str):
        exps = [exps]
    if not isinstance(exps, list) or not all(isinstance(m, str) and m.strip() for m in exps):
        raise ProjectError(f'{path}: [tool.nnlab] experiments must be a list of module names, '
                           f'e.g. experiments = ["mycourse.experiments"]')
    results = table.get("results", "results")
    if not isinstance(results, str) or not results.strip():
        raise ProjectError(f'{path}: [tool.nnlab] results must be a folder name, e.g. results = "results"')
    return {"experiments": tuple(exps), "results": results}


_TABLES: dict[tuple[str, int], dict | None] = {}


def find_config(start: str | Path | None = None) -> tuple[Path | None, dict | None]:
    """The nearest ``pyproject.toml`` with a ``[tool.nnlab]`` table, from ``start`` (the
    current folder) upward, and that table (validated); ``(None, None)`` if there is none."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / "pyproject.toml"
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            continue
        key = (str(path), mtime)
        if key not in _TABLES:
            _TABLES[key] = _read_table(path, mtime)
        if _TABLES[key] is not None:
            return path, _TABLES[key]
    return None, None


_OVERRIDE: tuple[str, ...] | None = None  # set by the CLI's --experiments


def set_experiment_modules(modules: list[str] | tuple[str, ...] | None) -> None:
    """Use these experiment modules instead of the environment's and the config file's
    (what ``--experiments`` does); None restores the normal lookup."""
    global _OVERRIDE
    _OVERRIDE = tuple(modules) if modules else None


def current(start: str | Path | None = None) -> Project:
    """The settings in force for a command run in ``start`` (the current folder)."""
    config, table = find_config(start)
    root = config.parent if config else Path(start or os.getcwd()).resolve()
    env = os.environ.get("NNLAB_EXPERIMENTS", "").strip()
    if _OVERRIDE:
        modules, source = _OVERRIDE, "--experiments"
    elif env:
        modules, source = tuple(m.strip() for m in env.split(",") if m.strip()), "NNLAB_EXPERIMENTS"
    elif table and table["experiments"]:
        modules, source = table["experiments"], str(config)
    else:
        modules, source = (), "nowhere"
    env_results = os.environ.get("NNLAB_RESULTS", "").strip()
    if env_results:
        results, rsource = Path(env_results).expanduser().resolve(), "NNLAB_RESULTS"
    elif table:
        results, rsource = (root / table["results"]).resolve(), str(config)
    else:
        results, rsource = root / "results", "default"
    return Project(config, root, modules, source, results, rsource)


def results_root() -> Path:
    """The results folder in force (see the module docstring)."""
    return current().results


def _import_file(path: Path):
    name = "nnlab_experiments_" + "".join(c if c.isalnum() else "_" for c in path.stem)
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_experiments(project: Project | None = None) -> list[str]:
    """Import the project's experiment modules (each at most once); returns their names.

    Raises:
        ProjectError: a module cannot be found, or raised while it was imported (the message
            names the module, where it was declared, and the error).
    """
    project = project or current()
    where = {"--experiments": "given with --experiments", "NNLAB_EXPERIMENTS": "named in $NNLAB_EXPERIMENTS"
             }.get(project.experiments_from, f"named in {project.experiments_from} [tool.nnlab] experiments")
    if project.experiments and str(project.root) not in sys.path:
        sys.path.insert(0, str(project.root))
    for module in project.experiments:
        try:
            if module.endswith(".py") or "/" in module or os.sep in module:
                path = (project.root / module).resolve()
                if not path.is_file():
                    raise ProjectError(f"experiment file {path} ({where}) does not exist")
                _import_file(path)
            else:
                importlib.import_module(module)
        except ProjectError:
            raise
        except ModuleNotFoundError as exc:
            raise ProjectError(f"cannot import experiment module {module!r} ({where}): {exc}; "
                               f"check its spelling, or run nnlab from the folder of your "
                               f"pyproject.toml") from None
        except SystemExit as exc:  # sys.exit() while imported would end `nnlab` silently, often with status 0
            raise ProjectError(f"experiment module {module!r} ({where}) called sys.exit({exc.code!r}) while it was "
                               "imported; an experiment module must only define and register experiments (put "
                               "script code under `if __name__ == \"__main__\":`)") from None
        except Exception as exc:
            raise ProjectError(f"experiment module {module!r} ({where}) raised {type(exc).__name__}: {exc} "
                               f"(see the whole traceback with `python -c \"import {module}\"`)") from exc
    return list(project.experiments)


def cli_hint(command: str) -> str:
    """``command`` as the user must type it to reach the same experiments (with
    ``--experiments`` when that is how they were given)."""
    if _OVERRIDE:
        return f"{command} --experiments {','.join(_OVERRIDE)}"
    return command
