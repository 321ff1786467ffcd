"""The report's per-problem part, from ``samples.jsonl`` (one line per sample, written by
``harness evaluate`` and ``run`` beside ``results.json``).

* In ``report.html``: one row per task (task, difficulty, samples, passed, pass@1, the dominant
  failure), each task linking to its section of ``problems.html``; ``report.md`` links to
  ``problems.md``.  A thousand tasks make a table of a thousand rows, and the details live apart.
* ``problems.html`` / ``problems.md``: the same table, then one section per task with each distinct
  result (the samples whose verdicts and first failing test are the same: identical programs always
  are) and, for a failure, its first failing test: the input, the expected output and what the
  program printed or returned, or its traceback or syntax error with the sample's own line numbers.
  In HTML each result's details are collapsed (``<details>``).  Texts are cut at ``SHOWN_TEXT``
  characters, and at most ``DETAILED_RESULTS`` failing results of a task are detailed (``samples.jsonl``
  has every sample, each text to 2,000 characters).

Pure but for ``read_problems``, which reads the file.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness.judging.verdicts import FirstFailure, Verdict, clip, failure_from_record

SAMPLES_FILE = "samples.jsonl"  # as harness.evaluation.outputs writes it
PROBLEMS_HTML = "problems.html"
PROBLEMS_MARKDOWN = "problems.md"
SHOWN_TEXT = 1000  # characters of each text on the pages
DETAILED_RESULTS = 10  # failing distinct results of one task shown with their first failing test
SHOWN_VERDICTS = 40  # entries of a verdict list written out


@dataclass(frozen=True)
class DistinctResult:
    """Samples of one task with the same result: status, verdicts, first failing test."""

    samples: tuple[int, ...]
    status: str  # "judged" or "infra_error"
    verdicts: tuple[bool | int, ...] | None  # TACO's list; None: not scored
    outcome: str  # the word of harness.scoring.metrics.sample_outcome
    failure: FirstFailure | None
    reason: str = ""  # why a sample was not scored

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass(frozen=True)
class ProblemSummary:
    task_id: int
    difficulty: str | None
    samples: int
    scored: int
    passed: int
    results: tuple[DistinctResult, ...]  # failures first, most samples first

    @property
    def pass_at_1(self) -> float | None:
        return self.passed / self.scored if self.scored else None

    @property
    def dominant_failure(self) -> str:
        """The most common way this task's scored samples failed, with how many did; or why none is."""
        failed: Counter[str] = Counter()
        for result in self.results:
            if result.status == "judged" and not result.passed:
                failed[result.outcome] += len(result.samples)
        if failed:
            word, count = max(failed.items(), key=lambda item: (item[1], -_order(item[0])))
            return f"{word.replace('_', ' ')} ({count} of {self.scored})"
        if self.scored == 0:
            return "not scored"
        return "—"


@dataclass(frozen=True)
class ProblemsOverview:
    problems: tuple[ProblemSummary, ...]
    skipped_lines: int = 0  # lines of samples.jsonl that could not be read (left out)

    @property
    def failing(self) -> int:
        return sum(1 for p in self.problems if p.passed < p.scored)


def _order(word: str) -> int:
    words = [v.value for v in Verdict]
    return words.index(word) if word in words else len(words)


# --- reading samples.jsonl -------------------------------------------------------------------------


def _sample(record: object) -> tuple[int, int, str | None, DistinctResult]:
    """(task, sample index, difficulty, the sample's result); raises on a line of another shape."""
    if not isinstance(record, Mapping):
        raise TypeError("not an object")
    task, index = record["task_id"], record["sample"]
    if not isinstance(task, int) or not isinstance(index, int):
        raise TypeError("task_id and sample should be integers")
    verdicts = record.get("verdicts")
    difficulty = record.get("difficulty")
    result = DistinctResult(
        samples=(index,),
        status=str(record["status"]),
        verdicts=None if verdicts is None else tuple(verdicts),
        outcome=str(record["outcome"]),
        failure=failure_from_record(record.get("failure")),
        reason=str(record.get("reason") or ""),
    )
    return task, index, None if difficulty is None else str(difficulty), result


def build_problems(records: Iterable[object]) -> ProblemsOverview:
    """The per-problem overview of parsed samples.jsonl lines; lines of another shape are counted, not fatal."""
    by_task: dict[int, dict[int, DistinctResult]] = {}
    difficulty: dict[int, str | None] = {}
    skipped = 0
    for record in records:
        try:
            task, index, level, result = _sample(record)
        except (KeyError, TypeError, ValueError):
            skipped += 1
            continue
        by_task.setdefault(task, {})[index] = result
        difficulty.setdefault(task, level)
    problems = []
    for task, samples in sorted(by_task.items()):
        groups: dict[tuple, list[int]] = {}
        first: dict[tuple, DistinctResult] = {}
        for index, result in sorted(samples.items()):
            key = (result.status, result.verdicts, result.outcome, result.failure, result.reason)
            groups.setdefault(key, []).append(index)
            first.setdefault(key, result)
        results = [
            DistinctResult(tuple(indices), r.status, r.verdicts, r.outcome, r.failure, r.reason)
            for key, indices in groups.items()
            for r in [first[key]]
        ]
        results.sort(key=lambda r: (r.passed, -len(r.samples), r.samples[0]))
        scored = [r for r in samples.values() if r.status == "judged"]
        problems.append(
            ProblemSummary(
                task_id=task,
                difficulty=difficulty[task],
                samples=len(samples),
                scored=len(scored),
                passed=sum(r.passed for r in scored),
                results=tuple(results),
            )
        )
    return ProblemsOverview(tuple(problems), skipped)


def read_problems(directory: Path) -> ProblemsOverview | None:
    """The overview of DIRECTORY/samples.jsonl; None when there is none (an older run, an official file)."""
    path = Path(directory) / SAMPLES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    records: list[object] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            records.append(None)  # counted as skipped
    return build_problems(records)


# --- words -------------------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def verdict_list(verdicts: tuple[bool | int, ...] | None) -> str:
    """TACO's list as results.json writes it (shortened past SHOWN_VERDICTS entries); "not scored" for None."""
    if verdicts is None:
        return "not scored"
    shown = ", ".join("true" if v is True else "false" if v is False else str(v) for v in verdicts[:SHOWN_VERDICTS])
    more = f", … ({len(verdicts)} in all)" if len(verdicts) > SHOWN_VERDICTS else ""
    return f"[{shown}{more}]"


def sample_list(samples: tuple[int, ...]) -> str:
    word = "sample" if len(samples) == 1 else "samples"
    return f"{word} {', '.join(map(str, samples))}"


def failure_title(result: DistinctResult) -> str:
    """One line: what this result is (``wrong answer at test 2``, ``compile error``, ``passed``)."""
    if result.status != "judged":
        return f"not scored: {result.reason}" if result.reason else "not scored"
    if result.passed:
        return "passed every test"
    failure = result.failure
    if failure is None:
        return result.outcome.replace("_", " ")
    where = "" if failure.test is None else f" at test {failure.test}"
    second = " (TACO's second pass: the sample wrapped in def code())" if failure.pass_number == 2 else ""
    return f"{failure.verdict.value.replace('_', ' ')}{where}{second}"


def failure_texts(failure: FirstFailure) -> list[tuple[str, str]]:
    """(label, text) of the failure's texts worth showing, each cut at SHOWN_TEXT characters."""
    shown: list[tuple[str, str]] = []
    if failure.test is not None:
        shown += [("input", failure.input), ("expected output", failure.expected)]
        if failure.verdict in (Verdict.WRONG_ANSWER, Verdict.COMPARE_ERROR) or failure.output:
            shown.append(("program output", failure.output))
    if failure.error:
        shown.append(("error" if failure.verdict in (Verdict.RUNTIME_ERROR, Verdict.COMPILE_ERROR) else "note", failure.error))
    return [(label, clip(text, SHOWN_TEXT)) for label, text in shown]


TABLE_HEADER = ("task", "difficulty", "samples", "passed", "pass@1", "dominant failure")
NUMERIC = (2, 3, 4)


def table_rows(overview: ProblemsOverview) -> list[list[str]]:
    return [
        [str(p.task_id), p.difficulty or "—", f"{p.samples:,}", f"{p.passed:,}", _percent(p.pass_at_1), p.dominant_failure]
        for p in overview.problems
    ]


def anchor(task_id: int) -> str:
    return f"task-{task_id}"


def summary_sentence(overview: ProblemsOverview) -> str:
    tasks = len(overview.problems)
    text = f"{tasks:,} task{'' if tasks == 1 else 's'}, {overview.failing:,} with a failing sample."
    if overview.skipped_lines:
        text += f" {overview.skipped_lines:,} lines of {SAMPLES_FILE} could not be read and are left out."
    return text


NOT_RECORDED = (
    f"Per-problem results are not recorded: there is no {SAMPLES_FILE} beside metrics.json "
    "(`harness evaluate` and `harness run` write it; older runs and official metrics files have none)."
)


# --- markdown --------------------------------------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&!{}])")


def _md(text: object) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def _md_table(rows: list[list[str]], link: str | None) -> list[str]:
    align = ["---:" if i in NUMERIC else "---" for i in range(len(TABLE_HEADER))]
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        cells = [_md(c) for c in row]
        if link is not None:
            cells[0] = f"[{cells[0]}]({quote(link)}#{anchor(int(row[0]))})"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fenced(text: str) -> list[str]:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence, text.rstrip("\n") if text.strip() else "(nothing)", fence]


def problems_section_markdown(overview: ProblemsOverview | None) -> list[str]:
    """report.md's section: a sentence and a link to problems.md (the table and details live there)."""
    lines = ["## Problems", ""]
    if overview is None:
        return [*lines, _md(NOT_RECORDED), ""]
    return [
        *lines,
        f"{_md(summary_sentence(overview))} Per-problem table and details: [{PROBLEMS_MARKDOWN}]({PROBLEMS_MARKDOWN}).",
        "",
    ]


def problems_page_markdown(title: str, overview: ProblemsOverview) -> str:
    lines = [f"# Problems: {_md(title)}", "", f"{_md(summary_sentence(overview))} Back to the [report](report.md).", ""]
    lines += [_md(_PAGE_NOTE), "", "## Tasks", "", *_md_table(table_rows(overview), ""), ""]
    for problem in overview.problems:
        lines += [f"## Task {problem.task_id}", "", _md(_problem_line(problem)), ""]
        detailed = 0
        for result in problem.results:
            lines += [f"### {_md(sample_list(result.samples))}: {_md(failure_title(result))}", ""]
            if result.verdicts is not None:
                lines += [f"TACO verdicts: `{verdict_list(result.verdicts)}`", ""]
            if result.failure is None or result.passed:
                continue
            detailed += 1
            if detailed > DETAILED_RESULTS:
                lines += ["(details left out: see samples.jsonl)", ""]
                continue
            for label, text in failure_texts(result.failure):
                lines += [f"{label}:", "", *_fenced(text), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


_PAGE_NOTE = (
    "Each task lists its distinct results (samples with the same verdicts and first failing test) and, for a failure, "
    f"its first failing test: the input, the expected output and what the program printed or returned, or its "
    f"traceback with the line numbers of the sample as written. Texts are cut at {SHOWN_TEXT:,} characters; "
    f"{SAMPLES_FILE} has every sample."
)


def _problem_line(problem: ProblemSummary) -> str:
    level = problem.difficulty or "difficulty not recorded"
    not_scored = problem.samples - problem.scored
    extra = f", {not_scored} not scored" if not_scored else ""
    return (
        f"{level}; {problem.samples} samples{extra}; {problem.passed} passed; pass@1 {_percent(problem.pass_at_1)}; "
        f"dominant failure: {problem.dominant_failure}."
    )


# --- HTML --------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def problems_table_html(overview: ProblemsOverview, link: str | None, table_id: str = "problems") -> str:
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in NUMERIC else f"<th>{_e(h)}</th>" for i, h in enumerate(TABLE_HEADER))
    rows = []
    for row in table_rows(overview):
        cells = [f'<td class="num">{_e(c)}</td>' if i in NUMERIC else f"<td>{_e(c)}</td>" for i, c in enumerate(row)]
        if link is not None:
            cells[0] = f'<td><a href="{_e(quote(link))}#{anchor(int(row[0]))}">{_e(row[0])}</a></td>'
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "\n".join(rows)
    return f'<table id="{_e(table_id)}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def problems_section_html(overview: ProblemsOverview | None) -> str:
    """report.html's section: the per-problem table, each task linking to its details in problems.html."""
    heading = '<h2 id="problems-heading">Problems</h2>'
    if overview is None:
        return f'{heading}\n<p class="note" id="problems-note">{_e(NOT_RECORDED)}</p>'
    link = f'<a href="{PROBLEMS_HTML}">{PROBLEMS_HTML}</a>'
    note = f'<p class="note" id="problems-note">{_e(summary_sentence(overview))} Each task\'s results in detail: {link}.</p>'
    return f"{heading}\n{note}\n{problems_table_html(overview, PROBLEMS_HTML)}"


_PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
       background: #fff; max-width: 1160px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
details, p.result { margin: .3em 0 .5em; } summary { cursor: pointer; } code.verdicts { color: #555; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: .4em .6em; overflow-x: auto; white-space: pre-wrap;
      word-break: break-all; max-height: 24em; }
.note { color: #555; } .label { font-weight: 600; margin: .4em 0 .1em; }
""".strip()


def _result_html(task_id: int, result: DistinctResult, detailed: bool) -> str:
    """One distinct result: a line (passed, not scored), or a collapsed block with its first failing test."""
    verdicts = "" if result.verdicts is None else f'<code class="verdicts">{_e(verdict_list(result.verdicts))}</code>'
    line = f"<strong>{_e(sample_list(result.samples))}</strong>: {_e(failure_title(result))} {verdicts}"
    if result.failure is None or result.passed:
        return f'<p class="result">{line}</p>'
    if not detailed:
        return f'<p class="result">{line} <span class="note">(details left out: see {SAMPLES_FILE})</span></p>'
    blocks = "".join(
        f'<p class="label">{_e(label)}</p><pre class="{_e(label.replace(" ", "-"))}">{_pre(text)}</pre>'
        for label, text in failure_texts(result.failure)
    )
    element_id = f"{anchor(task_id)}-sample-{result.samples[0]}"
    return f'<details class="result" id="{element_id}"><summary>{line}</summary>{blocks}</details>'


def _pre(text: str) -> str:
    return _e(text) if text.strip() else "(nothing)"


def problems_page_html(title: str, overview: ProblemsOverview) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Problems: {_e(title)}</title>",
        f"<style>\n{_PAGE_CSS}\n</style></head>",
        "<body>",
        f"<h1>Problems: {_e(title)}</h1>",
        f'<p id="summary">{_e(summary_sentence(overview))} Back to the <a href="report.html">report</a>.</p>',
        f'<p class="note">{_e(_PAGE_NOTE)}</p>',
        problems_table_html(overview, "", "problems-index"),
    ]
    for problem in overview.problems:
        parts.append(f'<section id="{anchor(problem.task_id)}">')
        parts.append(f"<h2>Task {problem.task_id}</h2>")
        parts.append(f'<p class="problem">{_e(_problem_line(problem))}</p>')
        detailed = 0
        for result in problem.results:
            failing = result.failure is not None and not result.passed
            detailed += failing
            parts.append(_result_html(problem.task_id, result, detailed <= DETAILED_RESULTS))
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def problem_pages(title: str, overview: ProblemsOverview | None) -> tuple[tuple[str, str], ...]:
    """(file name, content) of the per-problem pages; none without samples.jsonl."""
    if overview is None:
        return ()
    return ((PROBLEMS_MARKDOWN, problems_page_markdown(title, overview)), (PROBLEMS_HTML, problems_page_html(title, overview)))
