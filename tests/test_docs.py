"""The documentation as a user meets it: links resolve, every page is reachable, and the commands run.

* Every relative link and ``#anchor`` in README.md, docs/*.md, examples/*/README.md, examples/README.md
  and benchmarks/README.md points at a file or heading that exists.
* Every page of docs/ is linked from README.md and from the index, docs/README.md.
* README.md stays a front page (at most :data:`README_MAX_LINES` lines).
* Every ``<!-- result: FILE -->`` (the sentences that quote a measured number) names a results file.
* Every command line of a ```` ```bash ```` block in README.md and docs/*.md, and every ```` ```python ````
  block there, runs as written: in a scratch folder laid out as a checkout (links to the repository's
  ``examples/``, ``sample_configs/`` and ``benchmarks/``, and the small input folders the pages name:
  ``photos/``, ``my_pngs/``, and the ``.venv/bin/lncli`` that ``make`` creates), with ``lncli`` run as
  ``sys.executable -m lncli`` and ``python`` as ``sys.executable`` on this checkout. Each must exit 0,
  or the code its ``# exits N`` comment states. A page's snippets run in order, in their own folder
  (a later command may use an earlier one's output); pages run side by side.

A command that cannot run here says why in a trailing comment, from a closed list, and is reported as
a skip with that reason (``pytest -rs`` lists them):

* ``# needs DATA`` for data that is not shipped or installed (:data:`NOT_SHIPPED`), ``# needs the
  network``, ``# needs a GPU``, ``# needs torchrun``;
* ``# run by tests/NAME.py``: another test runs it (that file must exist and name the command's script
  and flags).

Set-up commands (``make ...``, ``pip install ...``, ``python3 -m venv ...``) are listed, not run: CI runs
``make test``. A ``python`` block whose first line is ``# path/to/file.py`` is that file's content: it is
written there for the snippets after it, not run. Fashion-MNIST is installed in CI; where it is not, a
command that fails for want of it is skipped, never passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
"""The pages whose commands run: the front page and docs/."""
LINKED = [*PAGES, ROOT / "examples" / "README.md", *sorted(ROOT.glob("examples/*/README.md")), ROOT / "benchmarks" / "README.md"]  # fmt: skip
"""The pages whose links are checked."""
README_MAX_LINES = 160

NOT_SHIPPED = ("CIFAR-10", "CIFAR-10-C", "CIFAR-100-C", "ImageNet", "ImageNet-C", "Tiny-ImageNet-C")
"""Data a command may say it needs: none of it is in the repository, none is installed by CI."""
NEEDS = (*(f"needs {d}" for d in NOT_SHIPPED), "needs the network", "needs a GPU", "needs torchrun")
"""The closed list of reasons a documented command cannot run in this test."""
SETUP = ("make", "pip install", "python3 -m venv")
"""Commands that install or set up: CI runs them (``make test``), this test lists them."""
SHELL = """
lncli() { PYTHONPATH="$DOCS_REPO${PYTHONPATH:+:$PYTHONPATH}" "$DOCS_PYTHON" -m lncli "$@"; }
python() { PYTHONPATH="$DOCS_REPO${PYTHONPATH:+:$PYTHONPATH}" "$DOCS_PYTHON" "$@"; }
pytest() { python -m pytest "$@"; }
"""
"""What the commands run in: lncli and python are this checkout's, whatever PYTHONPATH a command sets."""
FASHION_MNIST_MISSING = re.compile(r"Fashion-MNIST \w+ files .* not found")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- markdown -------------------------------------------------------------------------------------------------


def _fences(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """Each fenced block: its language, the line number of its first content line, its lines."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^ *```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if re.match(r"^ *```\s*$", lines[j])), len(lines))
        yield m.group(1), i + 2, lines[i + 1 : end]
        i = end + 1


def _prose(text: str, *, code_spans: bool = False) -> str:
    """The text without fenced blocks and HTML comments, and without inline code unless ``code_spans``
    (links in code are not links; a heading's anchor keeps its code's text)."""
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r"^ *```", line):
            inside = not inside
            continue
        if not inside:
            out.append(line)
    prose = "\n".join(out)
    prose = re.sub(r"<!--.*?-->", "", prose, flags=re.DOTALL)
    return prose if code_spans else re.sub(r"(`+).+?\1", "", prose)


def _links(text: str) -> list[str]:
    """The targets of inline links and images, and of reference definitions."""
    prose = _prose(text)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    refs = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", prose, flags=re.MULTILINE)
    return inline + refs


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, GitHub's numbering of repeated ones included."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(path.read_text(), code_spans=True).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _broken_links(page: Path) -> list[str]:
    broken = []
    for target in _links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE):  # https:, mailto:
            continue
        where, _, anchor = target.partition("#")
        dest = (page.parent / where).resolve() if where else page
        if not dest.exists():
            broken.append(f"{target}: no such file ({dest})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


@pytest.mark.parametrize("page", LINKED, ids=_rel)
def test_every_relative_link_resolves(page: Path) -> None:
    assert page.is_file(), page
    broken = _broken_links(page)
    assert not broken, f"{_rel(page)}:\n" + "\n".join(broken)


def test_the_link_check_sees_a_broken_link_and_a_broken_anchor(tmp_path: Path) -> None:
    """The check above can fail: a missing file, a missing heading, and links in code that are not links."""
    (tmp_path / "b.md").write_text("# Is here: `yes`\n\n## Is here: `yes`\n")
    page = tmp_path / "a.md"
    page.write_text(
        "[ok](b.md) [ok](b.md#is-here-yes) [ok](b.md#is-here-yes-1) [ok](#top) [web](https://example.org/x)\n"
        "# Top\n[gone](c.md) [bad anchor](b.md#nowhere)\n`[code](d.md)`\n```bash\n[code](e.md)\n```\n"
    )
    assert [b.split(":")[0] for b in _broken_links(page)] == ["c.md", "b.md#nowhere"]


def _md_links_from(page: Path) -> set[Path]:
    targets = (t.partition("#")[0] for t in _links(page.read_text()))
    return {(page.parent / t).resolve() for t in targets if t.endswith(".md") and "://" not in t}


@pytest.mark.parametrize("index", [README, DOCS / "README.md"], ids=_rel)
def test_every_docs_page_is_linked_from_the_readme_and_the_index(index: Path) -> None:
    pages = {p.resolve() for p in DOCS.glob("*.md")} - {index.resolve()}
    assert len(pages) >= 8, sorted(pages)
    unlinked = sorted(_rel(p) for p in pages - _md_links_from(index))
    assert not unlinked, f"{_rel(index)} does not link {unlinked}"


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_every_quoted_result_names_a_results_file() -> None:
    named = {}
    for page in PAGES:
        for name in re.findall(r"<!--\s*result:\s*(\S+)\s*-->", page.read_text()):
            named.setdefault(name, []).append(_rel(page))
    assert any(p == "README.md" for pages in named.values() for p in pages), "the README's results are not marked"
    for name, pages in named.items():
        path = ROOT / name
        assert path.is_file() and path.parent == ROOT / "benchmarks" / "results", f"{pages}: {name}"


# -- the snippets ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snippet:
    """One command line of a bash block, or one python block, of a page."""

    page: str  # relative to the repository
    line: int  # where it starts
    lang: str  # "bash" or "python"
    text: str  # the command (continuation lines joined) or the block
    comment: str = ""  # a command's trailing comment; a python block's first line if it is a comment

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Plan:
    """What the test does with a snippet."""

    action: str  # "run", "write" (a python file's content), "skip", "invalid"
    reason: str = ""  # skip or invalid: why; write: the file
    exit_code: int = 0


def _commands(page: str, first: int, lines: list[str]) -> Iterator[Snippet]:
    """A bash block's commands: continuation lines joined, comment lines and blank lines left out."""
    i = 0
    while i < len(lines):
        start, text = i, lines[i].rstrip()
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1].rstrip() + " " + lines[i].strip()
        i += 1
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        m = re.search(r"\s#\s*(.*)$", text)
        command, comment = (text[: m.start()].strip(), m.group(1).strip()) if m else (text.strip(), "")
        yield Snippet(page, first + start, "bash", command, comment)


def _snippets(path: Path) -> list[Snippet]:
    out = []
    for lang, first, lines in _fences(path.read_text()):
        if lang == "bash":
            out += list(_commands(_rel(path), first, lines))
        elif lang == "python":
            head = lines[0].strip() if lines else ""
            out.append(Snippet(_rel(path), first, "python", "\n".join(lines) + "\n", head[1:].strip() if head.startswith("#") else ""))  # fmt: skip
    return out


SNIPPETS = [s for page in PAGES for s in _snippets(page)]


def _plan(s: Snippet) -> Plan:
    """The comment decides: a closed list of reasons not to run, an expected exit code, or a file's name."""
    comment = s.comment
    if s.lang == "python" and re.fullmatch(r"[\w./-]+\.py", comment):
        return Plan("write", comment)
    if comment.startswith("needs"):
        return (
            Plan("skip", f"{comment}: {s.text}")
            if comment in NEEDS
            else Plan("invalid", f"unknown marker {comment!r}: {NEEDS}")
        )
    if comment.startswith("run by"):
        return _run_elsewhere(s)
    if s.lang == "bash" and any(s.text == c or s.text.startswith(c + " ") for c in SETUP):
        return Plan("skip", f"set-up command, not run here (CI runs make test): {s.text}")
    m = re.match(r"exits (\d+)\b", comment)
    return Plan("run", exit_code=int(m.group(1)) if m else 0)


def _run_elsewhere(s: Snippet) -> Plan:
    """``# run by tests/NAME.py``: that file exists and names the command's script (or config) and flags."""
    m = re.fullmatch(r"run by (tests/\w+\.py)", s.comment)
    if not m or not (ROOT / m.group(1)).is_file():
        return Plan("invalid", f"{s.comment!r}: expected 'run by tests/NAME.py', an existing test file")
    source = (ROOT / m.group(1)).read_text()
    words = s.text.split()
    named = [Path(w).name for w in words if "/" in w][:1] + [w for w in words if w.startswith("--")]
    missing = [w for w in named if w not in source]
    if not named or missing:
        return Plan("invalid", f"{m.group(1)} does not name {missing or 'a script'} of {s.text!r}")
    return Plan("skip", f"run by {m.group(1)}: {s.text}")


def test_the_markers_are_read_as_documented() -> None:
    """The plan of each kind of comment (so a skip or an expected failure cannot come from a typo)."""

    def plan(text: str, comment: str = "", lang: str = "bash") -> Plan:
        return _plan(Snippet("x.md", 1, lang, text, comment))

    assert plan("lncli evaluate a.pt", "needs CIFAR-10").action == "skip"
    assert plan("lncli evaluate a.pt", "needs CIFAR10").action == "invalid"
    assert plan("lncli evaluate a.pt", "needs a bigger machine").action == "invalid"
    assert plan("lncli evaluate a.pt", "exits 1: a bound fails") == Plan("run", exit_code=1)
    assert plan("lncli evaluate a.pt", "a comment, not a marker") == Plan("run")
    assert plan("make demo", "set up").action == "skip" and plan("makedirs x").action == "run"
    assert plan("examples/ci/check.sh", "run by tests/test_examples_ci.py").action == "skip"
    assert plan("examples/ci/check.sh --limit 3", "run by tests/test_examples_ci.py").action == "invalid"
    assert plan("examples/ci/nope.sh", "run by tests/test_examples_ci.py").action == "invalid"
    assert plan("examples/ci/check.sh", "run by tests/test_nothing.py").action == "invalid"
    assert plan("x = 1\n", "mypkg/nets.py", "python") == Plan("write", "mypkg/nets.py")
    cmds = list(_commands("x.md", 10, ["# a comment", "lncli evaluate a.pt \\", "    --limit 3   # exits 1", ""]))
    assert cmds == [Snippet("x.md", 11, "bash", "lncli evaluate a.pt --limit 3", "exits 1")]


def test_the_pages_have_commands_that_run() -> None:
    """The scan found the pages' commands, and most of them run here."""
    plans = [_plan(s) for s in SNIPPETS]
    by_page = {p.page for p, plan in zip(SNIPPETS, plans) if plan.action == "run"}
    assert "README.md" in by_page and len(by_page) >= 8, sorted(by_page)
    assert sum(p.action == "run" for p in plans) > sum(p.action == "skip" for p in plans)


def test_a_missing_fashion_mnist_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The skip above reads lncli's own error for a missing Fashion-MNIST, not any failure."""
    from lncli.data import fashion_mnist
    from lncli.errors import DataError

    monkeypatch.setattr(fashion_mnist, "SYSTEM_FASHION_MNIST_DIRS", ())
    monkeypatch.delenv("LNCLI_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(DataError) as exc:
        fashion_mnist.load_fashion_mnist("test", data_dir=tmp_path, download=False, limit=1)
    assert FASHION_MNIST_MISSING.search(str(exc.value)), str(exc.value)
    assert not FASHION_MNIST_MISSING.search("error: checkpoint not found: fashion_mnist.pt")


# -- running them ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str  # the end of stdout and stderr
    seconds: float


def _png(path: Path, size: tuple[int, int], mode: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def _checkout(root: Path) -> Path:
    """A scratch folder laid out as the docs assume: the repository's example folders, and small inputs."""
    root.mkdir()
    for name in ("examples", "sample_configs", "benchmarks"):
        (root / name).symlink_to(ROOT / name, target_is_directory=True)
    for i, (size, mode) in enumerate((((48, 40), "RGB"), ((64, 48), "RGB"), ((32, 32), "L"))):
        _png(root / "photos" / f"photo{i}.png", size, mode, i)
    for c in range(10):  # one folder per class of the shipped Fashion-MNIST checkpoints, in label order
        for i in range(2):
            _png(root / "my_pngs" / f"{c}_class" / f"{i}.png", (28, 28), "L", 100 + 2 * c + i)
    venv = root / ".venv" / "bin"  # what `make` creates: the README says how to run lncli from it
    venv.mkdir(parents=True)
    lncli = venv / "lncli"
    lncli.write_text(
        '#!/bin/sh\nPYTHONPATH="$DOCS_REPO${PYTHONPATH:+:$PYTHONPATH}" exec "$DOCS_PYTHON" -m lncli "$@"\n'
    )
    lncli.chmod(0o755)
    (venv / "activate").write_text('PATH="$PWD/.venv/bin:$PATH"; export PATH\n')
    return root


def _environ(threads: int) -> dict[str, str]:
    return {
        **os.environ,
        "DOCS_REPO": str(ROOT),
        "DOCS_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "COLUMNS": "100",
        "TERM": "dumb",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": str(threads),  # pages run side by side: one core's share each
    }


def _run(s: Snippet, cwd: Path, env: dict[str, str]) -> Outcome:
    t0 = time.perf_counter()
    if s.lang == "python":
        args, stdin = [sys.executable, "-"], s.text  # as pasted into `python` in that folder
    else:
        args, stdin = ["bash", "-c", SHELL + s.text], ""
    try:
        out = subprocess.run(
            args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600, check=False
        )
        code, output = out.returncode, (out.stdout[-3000:] + "\n" + out.stderr[-3000:])
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {exc.timeout} s"
    return Outcome(code, output, time.perf_counter() - t0)


def _run_page(snippets: list[Snippet], cwd: Path, env: dict[str, str]) -> dict[Snippet, Outcome]:
    """A page's snippets in order, in one folder: each may use what the ones before it wrote."""
    outcomes = {}
    for s in snippets:
        plan = _plan(s)
        if plan.action == "write":
            (cwd / plan.reason).parent.mkdir(parents=True, exist_ok=True)
            (cwd / plan.reason).write_text(s.text)  # a folder without __init__.py: a namespace package
        elif plan.action == "run":
            outcomes[s] = _run(s, cwd, env)
    return outcomes


@pytest.fixture(scope="module")
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Every page with a selected snippet, run in its own scratch checkout; pages side by side."""
    selected = {
        item.callspec.params["snippet"].page
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_documented_command_runs" and hasattr(item, "callspec")
    }
    pages = {p: [s for s in SNIPPETS if s.page == p] for p in sorted(selected)}
    workers = max(1, min(len(pages), os.cpu_count() or 1))
    env = _environ(max(1, (os.cpu_count() or 1) // workers))
    base = tmp_path_factory.mktemp("docs")
    with ThreadPoolExecutor(workers) as pool:
        futures: dict[str, Future] = {
            page: pool.submit(_run_page, snippets, _checkout(base / page.replace("/", "_")), env)
            for page, snippets in pages.items()
        }
        yield futures


@pytest.fixture(scope="module")
def fashion_mnist() -> bool:
    from lncli.data import load_dataset
    from lncli.errors import DataError

    try:
        load_dataset("fashion-mnist", "test", limit=1)
    except DataError:
        return False
    return True


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: s.id)
def test_documented_command_runs(snippet: Snippet, outcomes: dict[str, Future], fashion_mnist: bool) -> None:
    plan = _plan(snippet)
    assert plan.action != "invalid", f"{snippet.id}: {plan.reason}"
    if plan.action == "skip":
        pytest.skip(plan.reason)
    if plan.action == "write":
        return  # a file's content, written for the snippets after it
    outcome = outcomes[snippet.page].result()[snippet]
    if outcome.returncode != plan.exit_code and not fashion_mnist and FASHION_MNIST_MISSING.search(outcome.output):
        pytest.skip(f"Fashion-MNIST is not installed (CI installs it): {snippet.text}")
    assert outcome.returncode == plan.exit_code, (
        f"{snippet.id}: exit {outcome.returncode}, documented {plan.exit_code}, after {outcome.seconds:.1f} s\n"
        f"$ {snippet.text}\n{outcome.output}"
    )
