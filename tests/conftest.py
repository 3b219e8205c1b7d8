"""Shared test set-up: no network, MNIST from ../shared/data, results in a temporary store.

Every test runs with outgoing network connections blocked (loopback and Unix sockets stay
open for the browser tests). Tests that write results use the ``results_dir`` fixture so
that nothing lands in the repository's ``results/``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NNLAB_DATA", str(ROOT.parent / "shared" / "data"))

import nnlab.book.experiments  # noqa: E402, F401  (the book's catalogue, registered once for every test)
import nnlab.book.stored_catalogue  # noqa: E402, F401  (and its stored analyses)


class NetworkBlocked(ConnectionRefusedError):
    """A test tried to reach a host other than this machine."""


def _is_local(address) -> bool:
    """Unix sockets, ``localhost``, 127.0.0.0/8 and ::1 are local; everything else is not."""
    if isinstance(address, (str, bytes)):  # AF_UNIX path (or abstract name)
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


BLOCKED: list[object] = []  # every refused address, so tests can prove a connection was tried


@pytest.fixture(autouse=True, scope="session")
def block_network():
    """Refuse every non-local connection for the whole session."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create = socket.create_connection

    def refuse(address):
        BLOCKED.append(address)
        raise NetworkBlocked(f"network access is blocked in the tests (tried {address!r})")

    def connect(self, address):
        if not _is_local(address):
            refuse(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_local(address):
            refuse(address)
        return real_connect_ex(self, address)

    def create_connection(address, *args, **kwargs):
        if not _is_local(address):
            refuse(address)
        return real_create(address, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.create_connection = create_connection
    try:
        yield BLOCKED
    finally:
        socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex
        socket.create_connection = real_create


@pytest.fixture(autouse=True)
def _one_job(monkeypatch):
    """Runs train in the test process (faster for tiny runs than spawning workers); tests of
    parallel runs ask for ``--jobs`` explicitly."""
    monkeypatch.setenv("NNLAB_JOBS", "1")


@pytest.fixture
def results_dir(tmp_path, monkeypatch) -> Path:
    """A private, empty results store (``NNLAB_RESULTS``), also seen by subprocesses."""
    path = tmp_path / "results"
    path.mkdir()
    monkeypatch.setenv("NNLAB_RESULTS", str(path))
    return path


@pytest.fixture
def one_thread():
    """Run torch on one thread: tiny networks are fastest so, and fastest on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def synthetic_data(one_thread):
    """The small synthetic ten-class problem of ``tiny_experiments`` (its experiments carry it)."""
    import tiny_experiments

    return tiny_experiments.synthetic_data()


@pytest.fixture
def register_experiment(monkeypatch):
    """A function that registers an experiment for the duration of one test."""
    from nnlab import experiments as E

    def register(exp):
        monkeypatch.setitem(E.REGISTRY, exp.name, exp)
        return exp

    return register


@pytest.fixture
def tiny_experiment(results_dir, synthetic_data, register_experiment):
    """A registered two-seed MLP experiment that trains in well under a second per run."""
    import tiny_experiments

    return register_experiment(tiny_experiments.TINY)


@pytest.fixture(scope="session")
def built_package(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist, built from a copy of the package's files (building in the
    repository would leave build/ behind), and the wheel installed without dependencies
    into a folder of its own: ``{"wheel", "sdist", "site"}``."""
    import shutil
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    shutil.copytree(ROOT / "code", src / "code", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, src / name)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dist), str(src)], check=True, capture_output=True, timeout=300)
    subprocess.run([sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})"],
                   cwd=src, check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("nnlab_course-*.whl")
    (sdist,) = dist.glob("nnlab_course-*.tar.gz")
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return {"wheel": wheel, "sdist": sdist, "site": site}


@pytest.fixture(scope="session")
def build_log() -> str:
    """The strict build of the book, run once per session for every test module that needs
    the site (test_book's pages and browser checks, test_publish's figures)."""
    from test_book import run_build

    return run_build()


@pytest.fixture(scope="session")
def site(build_log) -> str:
    """The built site (test_book's ``HTML``) served on 127.0.0.1: its base URL."""
    import functools
    import http.server
    import threading

    from test_book import HTML

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no line per request on stderr
            pass

        def do_GET(self) -> None:
            if self.path == "/favicon.ico":  # asked for by the browser itself, not by any page:
                self.send_response(204)      # its 404 would race into a page's console errors
                self.end_headers()
                return
            super().do_GET()

    handler = functools.partial(Quiet, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    """Debian's headless chromium through playwright (skips without one, fails under CI)."""
    from test_book import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"chromium not found at {CHROMIUM}; CI must install Debian's chromium")
        pytest.skip("no chromium installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("the playwright package is not installed")
        pytest.skip("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
