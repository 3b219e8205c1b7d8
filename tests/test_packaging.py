"""The package as a course installs it: the built wheel and sdist, their metadata, licences,
dependencies and the modules they promise."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.metadata import Metadata
from packaging.requirements import Requirement

import nnlab

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# import name -> distribution name, for the third-party modules nnlab may import
DISTRIBUTION = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "safetensors": "safetensors",
                "tqdm": "tqdm", "matplotlib": "matplotlib", "pandas": "pandas", "scipy": "scipy",
                "filelock": "filelock", "tomli": "tomli", "IPython": "ipython", "sklearn": "scikit-learn",
                "myst_nb": "myst-nb", "PIL": "pillow", "ray": "ray", "grpc": "grpcio",
                "nbformat": "nbformat"}
PROVIDED_BY = {"pillow": "matplotlib", "nbformat": "myst-nb"}  # matplotlib requires pillow, myst-nb nbformat


def _metadata(wheel: Path) -> Metadata:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Metadata.from_email(z.read(name).decode(), validate=True)  # raises on invalid metadata


def test_wheel_metadata_is_valid_and_complete(built_package):
    meta = _metadata(built_package["wheel"])
    assert str(meta.version) == nnlab.__version__ == "0.2.0"
    assert meta.license_expression == "MIT" and meta.license_files == ["LICENSE"]
    assert meta.description_content_type == "text/markdown" and "nnlab" in meta.description
    assert str(meta.requires_python) == ">=3.10"
    assert any(c.startswith("Intended Audience :: Education") for c in meta.classifiers)
    torch = next(r for r in meta.requires_dist if r.name == "torch")
    assert torch.specifier.contains("2.14.1") and not torch.specifier.contains("2.3.1")
    assert not torch.specifier.contains("3.0")  # bounded above by what is tested
    assert sorted(meta.provides_extra) == ["book", "cluster"]


def test_wheel_and_sdist_hold_the_package_and_licence_not_the_book(built_package):
    names = zipfile.ZipFile(built_package["wheel"]).namelist()
    assert "nnlab/__init__.py" in names and "nnlab/book/experiments.py" in names
    assert "nnlab/playground/__init__.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "book/", "results/")) for n in names)
    with tarfile.open(built_package["sdist"]) as tar:
        members = [m.split("/", 1)[1] for m in tar.getnames() if "/" in m]
    for needed in ("LICENSE", "README.md", "pyproject.toml", "code/nnlab/__init__.py"):
        assert needed in members
    assert not any(m.startswith(("tests/", "book/", "results/", "benchmarks/")) for m in members)


def _imports(path: Path) -> set[str]:
    """Top-level names of every module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_module_imports_only_what_its_install_declares(built_package):
    """The core needs only the core's dependencies; nnlab.book may also use the ``book``
    extra's, nnlab.cluster the ``cluster`` extra's."""
    meta = _metadata(built_package["wheel"])
    extras: dict[str, set[str]] = {"": set()}
    for req in meta.requires_dist:
        extra = re.search(r"extra == \"(\w+)\"", str(req.marker)) if req.marker else None
        extras.setdefault(extra.group(1) if extra else "", set()).add(Requirement(str(req)).name)
    package = built_package["site"] / "nnlab"
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        extra = "book" if module.startswith("nnlab.book") else "cluster" if module == "nnlab.cluster" else ""
        declared = extras[""] | extras.get(extra, set())
        for name in _imports(path) - set(sys.stdlib_module_names) - {"nnlab"}:
            dist = DISTRIBUTION.get(name)
            assert dist is not None, f"{module} imports {name}, which no declared distribution provides"
            assert dist in declared or PROVIDED_BY.get(dist) in declared, (
                f"{module} imports {name} ({dist}), not declared for its install")


def test_every_module_of_the_installed_wheel_imports(built_package, tmp_path):
    site = built_package["site"]
    modules = sorted(".".join(p.relative_to(site).with_suffix("").parts).removesuffix(".__init__")
                     for p in (site / "nnlab").rglob("*.py") if p.name not in ("__main__.py",))
    code = ("import importlib, nnlab\n"
            f"assert nnlab.__file__.startswith({str(site)!r}), nnlab.__file__\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(len(" + repr(modules) + "))")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    version = subprocess.run([sys.executable, "-m", "nnlab", "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True)
    assert version.stdout.strip() == "nnlab 0.2.0"


def test_licences_and_changelog_are_in_the_repository():
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "CC BY 4.0" in (ROOT / "LICENSE-BOOK.md").read_text()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{nnlab.__version__}]" in changelog
    assert "CC BY 4.0" in (ROOT / "_config.yml").read_text() and "CC BY 4.0" in (ROOT / "README.md").read_text()
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "build/" in ignored and "dist/" in ignored


def _cpu_constraints():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpu_constraints", ROOT / ".ci" / "cpu_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cuda_closure() -> set[str]:
    """The distributions the installed CUDA torch pulls in for CUDA on this platform,
    transitively, with the extras it asks for (from the installed metadata: no network)."""
    from importlib import metadata

    def wanted(req: Requirement, extras: set[str]) -> bool:
        return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras or {""})

    todo = [(r, set()) for r in map(Requirement, metadata.requires("torch") or [])
            if wanted(r, set()) and re.match(r"(nvidia|cuda|triton)", r.name)]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        req, _ = todo.pop()
        dist = re.sub(r"[-_.]+", "-", req.name).lower()
        if (dist, frozenset(req.extras)) in seen:
            continue
        seen.add((dist, frozenset(req.extras)))
        try:
            todo += [(r, set()) for r in map(Requirement, metadata.requires(dist) or []) if wanted(r, set(req.extras))]
        except metadata.PackageNotFoundError:
            continue
    return {dist for dist, _ in seen}


def test_the_cpu_lock_is_the_lock_without_its_cuda_pins_and_up_to_date():
    cpu = _cpu_constraints()
    lock = (ROOT / "constraints.txt").read_text()
    text = (ROOT / "constraints-cpu.txt").read_text()
    assert text == cpu.cpu_lock(lock), "constraints-cpu.txt is out of date: run `python .ci/cpu_constraints.py`"
    pins = [line for line in lock.splitlines() if line.strip() and not line.startswith("#")]
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert not [line for line in kept if re.search(r"nvidia|cuda|triton", line, re.I)]
    dropped = [line for line in pins if line not in kept]
    assert kept == [line for line in pins if line not in dropped]  # every other pin, identical, in order
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(kept)  # the CPU wheels' X+cpu match these pins
    names = {cpu.pinned_name(line) for line in dropped}
    assert "triton" in names and any(n.startswith("nvidia-") for n in names)
    import torch

    if torch.version.cuda:  # the installed torch is the CUDA build: what it pulls in is what is dropped
        closure = _cuda_closure()
        assert names <= closure, names - closure
        assert {cpu.pinned_name(line) for line in pins} & closure <= names
    readme = (ROOT / "README.md").read_text()
    assert "constraints-cpu.txt" in readme and "--index-url https://download.pytorch.org/whl/cpu" in readme
    assert "python .ci/cpu_constraints.py" in readme
