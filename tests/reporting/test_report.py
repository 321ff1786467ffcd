"""`harness report`: report.md, report.html and the plots checked against metrics.json from a real
`harness evaluate` (real containers), escaping, the run statistics table, the CLI's errors, and the
HTML as a real headless browser (Debian's chromium) renders it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "problems.jsonl"
GENERATIONS = ROOT / "samples" / "generations.json"
PLOT_FILES = ("pass_at_k_by_difficulty.png", "verdict_mix.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The verdict groups as the brief defines them (written out here, not taken from the code under test).
EXPECTED_GROUP = {
    "passed": "passed",
    "wrong_answer": "wrong answer",
    "output_limit": "wrong answer",
    "timeout": "timeout",
    "compare_error": "timeout",
    "crashed": "timeout",
    "runtime_error": "runtime error",
    "call_timeout": "runtime error",
    "compile_error": "compile error",
    "infra_error": "infrastructure error",
}
GROUP_ORDER = ["passed", "wrong answer", "timeout", "runtime error", "compile error", "infrastructure error"]
HOSTILE_SKILL = '<b>&"x"'
PIPE_SKILL = "Sorting | Searching"
RUN_STATS = {
    "stages": {
        "generation": {"seconds": 12.5, "tokens_per_s": 1834.25, "engine": "fast"},
        "evaluation": {"seconds": 3.25, "samples": 20},
    },
    "wall_seconds": 16.0,
    "gpus": [0, 1],
}


def harness_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT)


def report_cli(directory: Path) -> None:
    from click.testing import CliRunner

    done = CliRunner().invoke(main, ["report", str(directory)])
    assert done.exit_code == 0, done.output
    assert str(directory / "report.html") in done.output


# --- reading the report back ----------------------------------------------------------------------


class PageParts(HTMLParser):
    """Cell texts of every <table id=...>, the attributes of every <img>, markup found in cells."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict[str, str]] = []
        self.tags_in_cells: list[str] = []
        self.tags: list[str] = []
        self.body_attrs: dict[str, str] = {}
        self._table: list[list[str]] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if self._cell is not None:
            self.tags_in_cells.append(tag)
        if tag == "table":
            self._table = self.tables.setdefault(attributes.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "body":
            self.body_attrs = attributes

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


HTML_TABLES = {
    "overall": "pass-at-k-overall",
    "by_difficulty": "pass-at-k-by-difficulty",
    "by_skill": "pass-at-k-by-skill",
    "verdicts": "verdicts",
    "outcomes": "outcomes",
    "settings": "settings",
    "run_stats": "run-stats",
}
MARKDOWN_TABLES = {
    "overall": "pass@k",
    "by_difficulty": "By difficulty",
    "by_skill": "By skill",
    "verdicts": "Verdicts",
    "outcomes": "Outcomes",
    "settings": "Evaluation settings",
    "run_stats": "Run statistics",
}


def records(rows: list[list[str]]) -> list[dict[str, str]]:
    header, *body = rows
    assert all(len(row) == len(header) for row in body), rows
    return [dict(zip(header, row)) for row in body]


def html_tables(text: str) -> dict[str, list[dict[str, str]]]:
    tables = PageParts(text).tables
    return {name: records(tables[table_id]) for name, table_id in HTML_TABLES.items() if table_id in tables}


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    by_heading: dict[str, list[list[str]]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|"):
            # Split at unescaped pipes only, then undo the backslash escapes.
            cells = [re.sub(r"\\(.)", r"\1", c.strip()) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                by_heading.setdefault(heading, []).append(cells)
    return {name: records(by_heading[h]) for name, h in MARKDOWN_TABLES.items() if h in by_heading}


def dotted_keys(value, prefix: str = "") -> list[str]:
    """The leaf keys of nested objects, dotted (lists of plain values are one leaf)."""
    if isinstance(value, dict):
        return [key for k, v in value.items() for key in dotted_keys(v, f"{prefix}.{k}" if prefix else k)]
    return [prefix]


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def assert_tables_match(tables: dict[str, list[dict[str, str]]], metrics: dict) -> None:
    """Every figure of the report's tables, against metrics.json."""
    ks = sorted((k for k in metrics if re.fullmatch(r"pass@\d+", k)), key=lambda k: int(k[5:]))
    assert ks, "metrics.json has no pass@k"
    (overall,) = tables["overall"]
    assert int(overall["tasks"]) == metrics["counts"]["tasks"]
    for k in ks:
        assert number(overall[k]) / 100 == pytest.approx(metrics[k], abs=5e-5), k
    for name, column in (("by_difficulty", "difficulty"), ("by_skill", "skill")):
        rows = {row[column]: row for row in tables[name]}
        assert list(rows) == list(metrics[name]), name
        for group, entry in metrics[name].items():
            assert int(rows[group]["tasks"]) == entry["tasks"], (name, group)
            for k in ks:
                assert number(rows[group][k]) / 100 == pytest.approx(entry[k], abs=5e-5), (name, group, k)

    samples = metrics["counts"]["samples"]
    outcomes = {row["outcome"]: int(number(row["samples"])) for row in tables["outcomes"]}
    assert sum(outcomes.values()) == samples
    assert {w: n for w, n in outcomes.items() if n} == {w: n for w, n in metrics["counts"]["outcomes"].items() if n}
    for row in tables["outcomes"]:
        assert row["verdict"] == EXPECTED_GROUP[row["outcome"]], row
        assert number(row["share"]) == pytest.approx(100 * number(row["samples"]) / samples, abs=0.005)
    groups = {row["verdict"]: row for row in tables["verdicts"]}
    assert list(groups) == GROUP_ORDER
    for label, row in groups.items():
        expected = sum(n for w, n in metrics["counts"]["outcomes"].items() if EXPECTED_GROUP[w] == label)
        assert int(number(row["samples"])) == expected, label
        assert number(row["share"]) == pytest.approx(100 * expected / samples, abs=0.005), label
    assert sum(int(number(row["samples"])) for row in groups.values()) == samples
    assert {row["verdict"]: row["TACO value"] for row in tables["verdicts"]} == {
        "passed": "True",
        "wrong answer": "False",
        "timeout": "-1",
        "runtime error": "-3",
        "compile error": "-2",
        "infrastructure error": "not scored",
    }

    settings = {row["setting"]: row["value"] for row in tables["settings"]}
    assert set(settings) == set(metrics["settings"])
    assert settings["judge"] == metrics["settings"]["judge"]
    assert number(settings["timeout_s"]) == metrics["settings"]["timeout_s"]


def coloured_fraction(pixels) -> float:
    """Share of clearly coloured (saturated) pixels: bars, not text, grid lines or background."""
    rgb = pixels[..., :3].astype(float)
    if rgb.max() > 1.0:  # 8-bit data
        rgb = rgb / 255.0
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).mean())


def non_white_fraction(pixels) -> float:
    rgb = pixels[..., :3].astype(float)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    return float((rgb.min(axis=-1) < 0.95).mean())


def assert_valid_plots(directory: Path) -> dict[str, tuple[int, int, float]]:
    """Each PNG decodes, has a sane size and shows coloured bars; returns (width, height, coloured)."""
    from matplotlib.image import imread

    found = {}
    for name in PLOT_FILES:
        path = directory / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, name
        pixels = imread(path)
        height, width = pixels.shape[:2]
        assert 400 <= width <= 2000 and 250 <= height <= 2000, (name, pixels.shape)
        coloured = coloured_fraction(pixels)
        assert coloured > 0.02, (name, coloured)  # the bars are drawn
        assert non_white_fraction(pixels) < 0.9, name  # and it is not a solid block
        found[name] = (width, height, coloured)
    return found


def synthetic_metrics() -> dict:
    """Two tasks, pass@1 and pass@10, a skill name full of HTML and one with a Markdown pipe."""
    return {
        "pass@1": 0.55,
        "pass@10": 0.875,
        "detail": {"pass@1": {"0": 0.6, "1": 0.5}, "pass@10": {"0": 1.0, "1": 0.75}},
        "by_difficulty": {
            "EASY": {"tasks": 1, "pass@1": 0.6, "pass@10": 1.0},
            "HARD": {"tasks": 1, "pass@1": 0.5, "pass@10": 0.75},
        },
        "by_skill": {
            HOSTILE_SKILL: {"tasks": 1, "pass@1": 0.6, "pass@10": 1.0},
            PIPE_SKILL: {"tasks": 2, "pass@1": 0.55, "pass@10": 0.875},
        },
        "counts": {
            "tasks": 2,
            "samples": 20,
            "passed_samples": 11,
            "infra_errors": 1,
            "outcomes": {
                "passed": 11,
                "wrong_answer": 2,
                "output_limit": 1,
                "crashed": 2,
                "compare_error": 1,
                "call_timeout": 1,
                "compile_error": 1,
                "infra_error": 1,
            },
        },
        "infra_error_samples": {"1": [7]},
        "settings": {
            "judge": "taco",
            "timeout_s": 4.0,
            "output_limit_bytes": 67108864,
            "early_exit": True,
            "dedup": True,
            "sandbox": "taco-harness-sandbox:test memory=2048MB",
        },
    }


# --- a real evaluation --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """The bundled sample through `harness evaluate` in real sandbox containers; it writes the report."""
    directory = tmp_path_factory.mktemp("evaluated") / "out"
    done = harness_cli("evaluate", "--dataset", str(SAMPLE), "--generations", str(GENERATIONS), "--output", str(directory))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"report: {directory / 'report.html'}" in done.stdout
    return directory


@pytest.mark.docker
def test_evaluate_writes_a_report_that_matches_metrics(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["counts"]["samples"] == 24 and len({w for w, n in metrics["counts"]["outcomes"].items() if n}) >= 4
    for files_from in ("evaluate", "report"):
        if files_from == "report":
            for name in ("report.md", "report.html", *PLOT_FILES):
                (evaluated / name).unlink()
            report_cli(evaluated)
        markdown = (evaluated / "report.md").read_text()
        page = (evaluated / "report.html").read_text()
        assert_tables_match(markdown_tables(markdown), metrics)
        assert_tables_match(html_tables(page), metrics)
        # `harness evaluate` may write run_stats.json beside metrics.json; the report shows it if so.
        if (evaluated / "run_stats.json").exists():
            stats = json.loads((evaluated / "run_stats.json").read_text())
            # Its provenance is metrics.json's, shown at the top of the report (tests/reporting/test_provenance.py).
            expected = dotted_keys({k: v for k, v in stats.items() if k != "provenance"})
            for tables in (markdown_tables(markdown), html_tables(page)):
                assert [row["statistic"] for row in tables["run_stats"]] == expected
        else:
            assert "run_stats" not in html_tables(page) and "Run statistics" not in markdown
        assert_valid_plots(evaluated)
        for name in PLOT_FILES:
            assert f"]({name})" in markdown
        assert [image["src"] for image in PageParts(page).images] == list(PLOT_FILES)
        # One self-contained file: no script, no network resource.
        assert "<script" not in page.lower()
        assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)|@import|url\(", page, re.IGNORECASE)
    assert not list(evaluated.glob(".*.tmp")) and not list(evaluated.glob("*.tmp"))  # atomic writes cleaned up


@pytest.mark.docker
def test_a_failing_report_does_not_fail_the_evaluation(evaluated, tmp_path):
    """results.json and metrics.json come first; a report that cannot be written is a warning."""
    directory = tmp_path / "out"
    (directory / "report.html").mkdir(parents=True)  # a directory where the page should go
    done = harness_cli("evaluate", "--dataset", str(SAMPLE), "--generations", str(GENERATIONS), "--output", str(directory))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "harness: warning: no report" in done.stderr
    assert json.loads((directory / "results.json").read_text()) == json.loads((evaluated / "results.json").read_text())
    assert json.loads((directory / "metrics.json").read_text())["pass@1"] == pytest.approx(
        json.loads((evaluated / "metrics.json").read_text())["pass@1"]
    )


# --- synthetic metrics: escaping, run statistics ------------------------------------------------


@pytest.fixture
def synthetic(tmp_path) -> Path:
    directory = tmp_path / "synthetic"
    directory.mkdir()
    (directory / "metrics.json").write_text(json.dumps(synthetic_metrics(), indent=4))
    (directory / "run_stats.json").write_text(json.dumps(RUN_STATS, indent=4))
    return directory


def test_skill_names_are_escaped(synthetic):
    report_cli(synthetic)
    page = (synthetic / "report.html").read_text()
    markdown = (synthetic / "report.md").read_text()
    assert HOSTILE_SKILL not in page and "&lt;b&gt;&amp;&quot;x&quot;" in page
    parts = PageParts(page)
    assert "b" not in parts.tags and not parts.tags_in_cells
    assert [row["skill"] for row in html_tables(page)["by_skill"]] == [HOSTILE_SKILL, PIPE_SKILL]
    # Markdown: no raw tag, and the pipe does not split the row.
    assert "<b>" not in markdown
    assert [row["skill"] for row in markdown_tables(markdown)["by_skill"]] == [HOSTILE_SKILL, PIPE_SKILL]
    for tables in (html_tables(page), markdown_tables(markdown)):
        assert_tables_match(tables, synthetic_metrics())


def test_run_statistics_are_flattened(synthetic):
    report_cli(synthetic)
    expected = {  # with their units
        "stages.generation.seconds": "12.5 s",
        "stages.generation.tokens_per_s": "1,834.2 tok/s",
        "stages.generation.engine": "fast",
        "stages.evaluation.seconds": "3.25 s",
        "stages.evaluation.samples": "20",
        "wall_seconds": "16 s",
        "gpus": "0, 1",
    }
    for tables in (html_tables((synthetic / "report.html").read_text()), markdown_tables((synthetic / "report.md").read_text())):
        assert {row["statistic"]: row["value"] for row in tables["run_stats"]} == expected

    # A damaged run_stats.json is noted in the report, which is still written.
    (synthetic / "run_stats.json").write_text("{")
    report_cli(synthetic)
    page = (synthetic / "report.html").read_text()
    assert "run_stats.json could not be shown" in page and "run_stats" not in html_tables(page)
    assert_tables_match(html_tables(page), synthetic_metrics())


def test_official_taco_metrics_file(tmp_path):
    """TACO's own taco_metrics.json has only pass@k and detail: the report says what is missing."""
    (tmp_path / "metrics.json").write_text(json.dumps({"pass@1": 0.25, "detail": {"pass@1": {"0": 0.5, "1": 0.0}}}))
    report_cli(tmp_path)
    page = (tmp_path / "report.html").read_text()
    (overall,) = html_tables(page)["overall"]
    assert overall == {"": "all tasks", "tasks": "2", "pass@1": "25.00%"}
    assert page.count("Not recorded in metrics.json") == 4  # difficulty, skill, verdicts, settings
    assert (tmp_path / "report.md").read_text().count("Not recorded in metrics.json") == 4
    for name in PLOT_FILES:
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE


def test_importing_the_report_module_loads_no_matplotlib():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, harness.reporting.report, harness.cli; print('matplotlib' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.stdout.strip() == "False", done.stderr


# --- the command line's errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "metrics.json: not found"),
        ("{", "metrics.json: not valid JSON"),
        ('{"pass@1": "high"}', "metrics.json: pass@1 should be a number"),
        ("[1, 2]", "metrics.json: the top level should be an object"),
    ],
)
def test_report_without_usable_metrics_is_a_one_line_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "metrics.json").write_text(content)
    done = harness_cli("report", str(tmp_path))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: ") and message in lines[0], done.stderr
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "report.md").exists()


def test_report_that_cannot_be_written_is_a_one_line_error(synthetic):
    (synthetic / "report.html").mkdir()
    done = harness_cli("report", str(synthetic))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"harness: error: {synthetic / 'report.html'}: cannot write: Is a directory"]
    assert not list(synthetic.glob(".*.tmp"))


# --- a real browser -----------------------------------------------------------------------------

WINDOW = (1200, 2000)

# Test-only: the product page has no script.  This copy records, once everything has loaded,
# whether each image decoded (naturalWidth) and where it was laid out.
PROBE_SCRIPT = """<script>
window.addEventListener("load", function () {
  for (const img of document.images) {
    const r = img.getBoundingClientRect();
    img.setAttribute("data-natural", img.naturalWidth + "x" + img.naturalHeight);
    img.setAttribute("data-rect", [r.left, r.top, r.width, r.height].map(Math.round).join(","));
  }
  document.body.setAttribute("data-probed", "yes");
});
</script>
"""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not on PATH; `bash scripts/setup.sh test` (run by `make test`) installs Debian's chromium as root"
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{reason} (CI is set: the browser check must run, not skip)")
    pytest.skip(reason)


class Browser:
    def __init__(self, binary: str, profile: Path) -> None:
        self.binary, self.profile = binary, profile

    def run(self, page: Path, *args: str) -> str:
        done = subprocess.run(
            [
                self.binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--no-first-run",
                "--disable-extensions",
                # A profile of its own: parallel or concurrent runs do not fight over one.
                f"--user-data-dir={self.profile}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                *args,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def dom(self, page: Path) -> str:
        return self.run(page, "--dump-dom", "--virtual-time-budget=5000")

    def screenshot(self, page: Path, out: Path):
        from matplotlib.image import imread

        self.run(page, f"--screenshot={out}", "--virtual-time-budget=5000")
        return imread(out)


@pytest.mark.docker
def test_browser_renders_the_report(evaluated, tmp_path):
    browser = Browser(chromium_binary(), tmp_path / "chromium-profile")  # in the test: a missing one fails it
    directory = tmp_path / "copied"
    shutil.copytree(evaluated, directory)  # the page must work wherever the directory goes
    (directory / "run_stats.json").write_text(json.dumps(RUN_STATS))
    report_cli(directory)
    metrics = json.loads((directory / "metrics.json").read_text())
    page = directory / "report.html"

    # The DOM as the browser parsed it: the tables hold the right figures, the images exist.
    dom = browser.dom(page)
    assert_tables_match(html_tables(dom), metrics)
    assert {row["statistic"] for row in html_tables(dom)["run_stats"]} >= {"stages.generation.seconds", "wall_seconds"}
    sources = [image["src"] for image in PageParts(dom).images]
    assert sources == list(PLOT_FILES) and all((directory / src).is_file() for src in sources)
    plots = assert_valid_plots(directory)

    # The images load and decode in the browser, and are laid out inside the screenshot's window.
    probe = directory / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE_SCRIPT + "</body>"))
    probed = PageParts(browser.dom(probe))
    assert probed.body_attrs.get("data-probed") == "yes", "the probe script did not run"
    rects = {}
    for image in probed.images:
        width, height, _ = plots[image["src"]]
        assert image["data-natural"] == f"{width}x{height}", image
        left, top, shown_width, shown_height = map(int, image["data-rect"].split(","))
        assert shown_width >= 300 and shown_height >= 150, image
        assert left >= 0 and top >= 0 and left + shown_width <= WINDOW[0] and top + shown_height <= WINDOW[1], image
        rects[image["src"]] = (left, top, shown_width, shown_height)

    # The screenshot of the product page: not blank, and the plots are drawn where they were laid out.
    pixels = browser.screenshot(page, tmp_path / "report.png")
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0]), pixels.shape
    assert non_white_fraction(pixels) > 0.05, non_white_fraction(pixels)
    for name, (left, top, width, height) in rects.items():
        region = pixels[top : top + height, left : left + width]
        outside = pixels[top + height + 400 : top + height + 400 + height, left : left + width]
        # Scaled down, a plot keeps about its share of coloured pixels; the tables below have none.
        assert coloured_fraction(region) > 0.5 * plots[name][2], (name, coloured_fraction(region), plots[name][2])
        assert coloured_fraction(outside) < 0.01, name


def test_browser_shows_escaped_skill_names_as_text(synthetic, tmp_path):
    browser = Browser(chromium_binary(), tmp_path / "chromium-profile")
    report_cli(synthetic)
    parsed = PageParts(browser.dom(synthetic / "report.html"))
    assert "b" not in parsed.tags and not parsed.tags_in_cells  # the browser built no element from a name
    assert [row[0] for row in parsed.tables["pass-at-k-by-skill"][1:]] == [HOSTILE_SKILL, PIPE_SKILL]
