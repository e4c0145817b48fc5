"""The course website: the learner edition builds offline, has a page for every notebook, its links
resolve, it leaks no solution and no hidden test, and a browser shows the theme, sidebar and maths."""

from __future__ import annotations

import functools
import html
import json
import http.server
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from conftest import ROOT, solution_notebooks
from cvcourse import book, notebooks

pytestmark = pytest.mark.slow

COURSE = sorted(ROOT.glob("course/[0-9][0-9]-*/[0-9][0-9]-*.ipynb"))
TEXT_SUFFIXES = {".html", ".ipynb", ".md", ".txt", ".js", ".json", ".py"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site() -> Path:
    """The learner edition, built once for this module (about 15 s)."""
    return book.build(ROOT, "learner", quiet=True)


class Links(HTMLParser):
    """Every link target (href, src) and every element id of one page."""

    def __init__(self):
        super().__init__()
        self.targets, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.targets.append((tag, attrs, attrs[key]))


@functools.cache
def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def page_of(site: Path, notebook: Path) -> Path:
    return site / "course" / notebook.parent.name / f"{notebook.stem}.html"


# ---------------------------------------------------------------- structure


def test_parts_file_assigns_all_fifty_notebooks_to_seven_parts():
    parts = yaml.safe_load((ROOT / "book" / "_parts.yml").read_text())["parts"]
    numbers = [n["number"] for p in parts for n in p["notebooks"]]
    assert len(parts) == 7 and sorted(numbers) == list(range(1, 51))
    for path in COURSE:  # a notebook's folder name matches its syllabus slug
        entry = next(n for p in parts for n in p["notebooks"] if n["number"] == int(path.stem[:2]))
        assert path.stem == f"{entry['number']:02d}-{entry['slug']}"
        assert book.notebook_title(path) == f"Q{entry['number']}. {entry['question']}"


def test_every_course_notebook_has_its_page_with_objectives_and_buttons(site):
    assert COURSE, "no notebooks in course/"
    for path in COURSE:
        page = page_of(site, path)
        assert page.is_file(), f"no page for {path.stem}"
        text = page.read_text()
        assert book.notebook_title(path) in visible_text(page), f"{path.stem}: title"
        assert "Learning objectives." in text, f"{path.stem}: no learning objectives at the top"
        assert book.has_objectives(path), f"{path.stem}: the objectives paragraph has no list"
        assert f"_sources/course/{path.parent.name}/{path.name}" in text, f"{path.stem}: download button"
        assert (site / "_sources" / "course" / path.parent.name / path.name).is_file()
        assert f"http://localhost:8888/lab/tree/{path.parent.name}/{path.name}" in text, "JupyterLab button"
        assert "mybinder.org/v2/gh/" in text and f"urlpath=lab/tree/course/{path.parent.name}/{path.name}" in text
        assert "colab.research.google.com/github/" in text and f"/course/{path.parent.name}/{path.name}" in text


def test_part_pages_link_existing_notebooks_and_list_planned_ones(site):
    parts = book.load_parts(ROOT, "learner")
    existing = {int(p.stem[:2]) for p in COURSE}
    for part in parts:
        text = html.unescape((site / f"{part.page}.html").read_text())
        for entry in part.entries:
            assert entry.short in text, f"{part.slug}: {entry.number} missing"
            link = f'href="../course/{entry.number:02d}-{entry.slug}/{entry.number:02d}-{entry.slug}.html"'
            if entry.number in existing:
                assert link in text, f"{part.slug}: no link to notebook {entry.number}"
            else:
                assert f"{entry.label} <em>(planned)</em>" in text, f"{part.slug}: {entry.number} not planned"
                assert link not in text
        # a real introduction precedes the list
        intro = text.split("The notebooks of this part")[0]
        assert len(re.sub(r"<[^>]+>", " ", intro.split('<article', 1)[-1]).split()) > 60, part.slug


def test_internal_links_and_anchors_resolve(site):
    pages = sorted(p for p in site.rglob("*.html") if "_static" not in p.relative_to(site).parts)
    assert len(pages) >= 12 + len(COURSE)
    broken = []
    for page in pages:
        for tag, attrs, target in parse(page).targets:
            parts = urlsplit(target)
            if parts.scheme or target.startswith(("//", "mailto:", "javascript:")):
                continue
            path = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(site)}: {target}")
            elif parts.fragment and path.suffix == ".html" and unquote(parts.fragment) not in parse(path).ids:
                broken.append(f"{page.relative_to(site)}: {target} (no such anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken[:30])


def test_the_site_loads_nothing_from_the_network(site):
    """Offline: scripts, stylesheets, fonts and MathJax all come from the site itself."""
    remote = []
    for page in site.rglob("*.html"):
        for tag, attrs, target in parse(page).targets:
            loaded = tag in ("script", "img", "iframe", "source") or (
                tag == "link" and attrs.get("rel") in ("stylesheet", "preload", "icon", "modulepreload"))
            if loaded and urlsplit(target).scheme in ("http", "https"):
                remote.append(f"{page.relative_to(site)}: <{tag} {target}>")
    assert not remote, "\n".join(remote[:20])
    intro = (site / "intro.html").read_text()
    assert 'src="_static/mathjax/tex-chtml.js' in intro
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()


STRAIGHT_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def test_status_page_shows_the_committed_reports(site):
    text = html.unescape((site / "status.html").read_text())
    for profile in book.REPORT_ORDER:
        report_file = ROOT / "book" / "reports" / f"report-{profile}.json"
        if not report_file.exists():
            assert profile == "ci" or f"No {profile} report yet" in re.sub(r"<[^>]+>", "", text)
            continue
        report = json.loads(report_file.read_text())
        section = text.split(f'<section id="the-{profile}-profile">')[1]
        # Sphinx's smart quotes print the apostrophe of "CNN's" as a typographic one: compare without them.
        table = section.split("</table>")[0].translate(STRAIGHT_QUOTES)
        for entry in report["notebooks"]:
            assert entry["notebook"] in table
            for record in entry["headlines"]:
                assert html.unescape(html.escape(record["name"])) in table


# ---------------------------------------------------------------- no solutions, no hidden tests


@functools.cache
def public_lines() -> frozenset[str]:
    """Every line of every released learner notebook: public, so never a leak wherever it shows."""
    return frozenset(line.strip() for path in COURSE for cell in notebooks.read(path).cells
                     for line in cell.source.splitlines())


def secrets(solution: Path) -> dict[str, set[str]]:
    """Lines (longer than 12 characters) of a solutions notebook's solution regions and hidden-test
    regions that no released learner notebook contains."""
    nb = notebooks.read(solution)
    regions = {"solution": [], "hidden test": []}
    for cell in notebooks.solution_cells(nb):
        regions["solution"] += re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", cell.source, flags=re.S)
    for cell in notebooks.test_cells(nb):
        regions["hidden test"] += re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", cell.source,
                                             flags=re.S)
    return {kind: {line.strip() for text in found for line in text.splitlines()
                   if len(line.strip()) > 12 and line.strip() not in public_lines()}
            for kind, found in regions.items()}


def visible_text(path: Path) -> str:
    """What a reader of the file can see: HTML without tags and entities; other files as they are."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".html":
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    elif path.suffix == ".ipynb":
        text = "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                         for c in json.loads(text)["cells"])
    return text


def leaks(folder: Path, secret: dict[str, set[str]]) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.suffix not in TEXT_SUFFIXES or not path.is_file() or "_static" in path.parts:
            continue
        text = visible_text(path)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            if marker in text:
                found.append(f"{path.relative_to(folder)}: marker {marker!r}")
        shown = {line.strip() for line in text.splitlines()}
        for kind, lines in secret.items():
            found += [f"{path.relative_to(folder)}: {kind} line {line!r}" for line in sorted(lines & shown)]
    return found


@pytest.fixture(scope="module")
def all_secrets() -> dict[str, set[str]]:
    merged = {"solution": set(), "hidden test": set()}
    for solution in solution_notebooks():
        for kind, lines in secrets(solution).items():
            merged[kind] |= lines
    assert merged["solution"] and merged["hidden test"], "nothing to look for: the scan would be vacuous"
    return merged


def test_learner_edition_leaks_no_solution_and_no_hidden_test(site, all_secrets):
    found = leaks(site, all_secrets)
    assert not found, "the learner edition shows:\n" + "\n".join(found[:20])


def test_the_leak_scan_finds_a_leak_when_there_is_one(tmp_path, all_secrets):
    """The same scan flags a solution shown as Sphinx shows code (highlighted HTML) and a notebook."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    solution = next(p for p in solution_notebooks() if secrets(p)["solution"] and secrets(p)["hidden test"])
    cell = notebooks.solution_cells(notebooks.read(solution))[0]
    (tmp_path / "page.html").write_text(highlight(cell.source, PythonLexer(), HtmlFormatter()))
    shutil.copy(solution, tmp_path / "download.ipynb")
    found = leaks(tmp_path, all_secrets)
    assert any(f.startswith("page.html: solution line") for f in found)
    assert any(f.startswith("download.ipynb: hidden test line") for f in found)


# ---------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def served(site):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def chromium(url: str, profile_dir: Path, *extra: str) -> str:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile_dir}", "--window-size=1400,1000", "--virtual-time-budget=15000",
               *extra, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_browser_shows_theme_sidebar_and_typeset_maths(served, tmp_path):
    assert CHROMIUM, "the book's browser check needs Debian's chromium (apt install chromium)"
    dom = chromium(f"{served}/intro.html", tmp_path / "profile", "--dump-dom")
    assert "sphinx-book-theme" in dom and 'class="bd-header' in dom, "the book theme's page structure"
    sidebar = dom.split('id="pst-primary-sidebar"', 1)[1].split("</nav>", 1)[0] if 'id="pst-primary-sidebar"' in dom \
        else dom.split("bd-sidebar-primary", 1)[1].split("</nav>", 1)[0]
    assert "Part 1. Foundations" in sidebar and "How to run the course" in sidebar, "the sidebar"
    assert "<mjx-container" in dom and 'jax="CHTML"' in dom, "MathJax typeset the welcome page's equation"
    assert "$$" not in re.sub(r"<script.*?</script>", "", dom, flags=re.S), "raw TeX left on the page"
    shot = tmp_path / "intro.png"
    chromium(f"{served}/intro.html", tmp_path / "profile", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_a_browser_typesets_a_notebook_page(served, tmp_path):
    assert CHROMIUM, "the book's browser check needs Debian's chromium (apt install chromium)"
    with_maths = [p for p in COURSE if "$" in "".join(c.source for c in notebooks.read(p).cells
                                                     if c.cell_type == "markdown")]
    assert with_maths, "no course notebook has maths to typeset"
    path = with_maths[0]
    dom = chromium(f"{served}/course/{path.parent.name}/{path.stem}.html", tmp_path / "profile", "--dump-dom")
    assert "<mjx-container" in dom and "Learning objectives." in dom
    assert 'class="bd-sidebar-primary' in dom
