"""Models from a course's own code: a function (or class) named by its import path.

A variant of an experiment names either a spec (:func:`nnlab.models.build`) or a factory,
``"package.module:function"``, that returns an ``nn.Module``. nnlab calls it with the data's
shape and number of classes, plus the variant's keyword arguments::

    def small_resnet(input_shape, classes, width=16): ...   # in mycourse/models.py
    Variant("resnet-16", factory="mycourse.models:small_resnet", kwargs={"width": 16})

A worker process or a cluster node imports the factory by that path, so the module must be
importable there (the course's package installed, or its folder on ``sys.path``). The
source of the module that defines the factory is hashed (:func:`source`) into the variant's
hash: editing that file makes the variant's runs stale. Modules it imports are not hashed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
EXAMPLE = '"mycourse.models:small_resnet"'


class FactoryError(ValueError):
    """A factory that cannot be imported, called or used as a model; the message says why."""


def check_path(path: object) -> str:
    """``path`` if it has the form ``module:attribute``, else :class:`FactoryError`."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise FactoryError(f"factory must be an import path 'module:function', e.g. {EXAMPLE}, got {path!r}")
    if path.split(":")[0] == "__main__":
        raise FactoryError(f"factory {path!r} is in __main__, which worker processes cannot import: "
                           "move the function into a module of its own and name that module")
    return path


def check_kwargs(kwargs: object, path: str) -> tuple[tuple[str, object], ...]:
    """The keyword arguments as sorted ``(name, value)`` pairs; refused unless they are a
    mapping of names to JSON values (they are part of the variant's hash)."""
    if not isinstance(kwargs, dict):
        try:
            kwargs = dict(kwargs)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise FactoryError(f"kwargs of factory {path!r} must be a dict of keyword arguments, "
                               f"got {type(kwargs).__name__}") from None
    reserved = sorted({"input_shape", "classes"} & set(kwargs))
    if reserved:
        raise FactoryError(f"kwargs of factory {path!r} name {', '.join(reserved)}, which nnlab passes "
                           "from the experiment's data; leave them out")
    try:
        json.dumps(kwargs, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FactoryError(f"kwargs of factory {path!r} must be JSON values (numbers, strings, booleans, "
                           f"None, lists, dicts) with string names: {exc}") from None
    return tuple(sorted(kwargs.items()))


def resolve(path: str) -> Callable:
    """Import the factory named by ``path`` (``module:attribute``)."""
    module_name, attribute = check_path(path).split(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise FactoryError(f"factory {path!r}: cannot import module {module_name!r} ({exc}); install the "
                           "course's package or run from its folder (every worker and cluster node needs "
                           "it)") from None
    except Exception as exc:
        raise FactoryError(f"factory {path!r}: importing module {module_name!r} raised "
                           f"{type(exc).__name__}: {_first_line(exc)}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise FactoryError(f"factory {path!r}: module {module_name!r} has no attribute {attribute!r}; "
                               "check the name after the ':'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise FactoryError(f"factory {path!r} is a {type(obj).__name__}, not a function or class")
    return obj


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _defining_module(path: str):
    factory = resolve(path)
    module = inspect.getmodule(factory)
    if module is None or not getattr(module, "__file__", None):
        module = sys.modules[path.split(":")[0]]
    return module


def source(path: str) -> dict[str, str]:
    """The module that defines the factory: ``{"file": its path relative to the import root,
    e.g. "mycourse/models.py"; "sha256": the first 16 hex digits of its source}``.

    Line endings are normalised, so a checkout with CRLF endings hashes as one with LF."""
    module = _defining_module(path)
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file() or not file.endswith(".py"):
        raise FactoryError(f"factory {path!r}: its module {module.__name__!r} has no Python source file "
                           "to hash; define the factory in a .py module")
    parts = module.__name__.split(".")
    is_package = Path(file).name == "__init__.py"
    relative = "/".join(parts + ["__init__.py"] if is_package else parts[:-1] + [Path(file).name])
    text = Path(file).read_bytes().replace(b"\r\n", b"\n")
    return {"file": relative, "sha256": hashlib.sha256(text).hexdigest()[:16]}


def call(path: str, kwargs: dict, input_shape: Sequence[int], classes: int) -> nn.Module:
    """``factory(input_shape=..., classes=..., **kwargs)``, checked to be an ``nn.Module``."""
    factory = resolve(path)
    shape = tuple(int(d) for d in input_shape)
    try:
        inspect.signature(factory).bind(input_shape=shape, classes=classes, **kwargs)
    except TypeError as exc:
        wanted = ", ".join(f"{k}=..." for k in ("input_shape", "classes", *kwargs))
        raise FactoryError(f"factory {path!r} cannot be called as {path.split(':')[1]}({wanted}) ({exc}): "
                           "give it the parameters input_shape and classes, and one for each of the "
                           "variant's kwargs") from None
    except ValueError:  # no signature to inspect (a builtin): let the call decide
        pass
    try:
        model = factory(input_shape=shape, classes=classes, **kwargs)
    except Exception as exc:
        raise FactoryError(f"factory {path!r} raised {type(exc).__name__}: {_first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise FactoryError(f"factory {path!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
