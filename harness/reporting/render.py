"""``report.md`` and ``report.html`` from a ``ReportData``: pure text.  The HTML is one file with
inline CSS, no script and no network resource, and refers to the plots by relative path, so the
directory can be copied or served anywhere as it is.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Sequence
from urllib.parse import quote

from harness.reporting.intervals import intervals_html, intervals_markdown
from harness.reporting.model import (
    INFRA_GROUP,
    PLOTS,
    CorrectedSection,
    JudgesRow,
    PassAtKRow,
    PlotImage,
    ReportData,
    ReportImages,
    format_value,
    percent,
)
from harness.reporting.problems import problems_section_html, problems_section_markdown


def _summary(data: ReportData) -> str:
    parts: list[str] = []
    if data.tasks is not None:
        parts.append(f"{data.tasks:,} tasks")
    if data.verdict_groups is not None:
        passed = next(g.samples for g in data.verdict_groups if g.label == "passed")
        infra = next(g.samples for g in data.verdict_groups if g.label == INFRA_GROUP)
        parts.append(f"{data.samples:,} samples ({passed:,} passed, {infra:,} infrastructure errors)")
    overall = ", ".join(f"{k} {percent(v)}" for k, v in zip(data.ks, data.overall.values))
    return "; ".join(parts + ([overall] if overall else [])) + "."


def _no_groups(name: str) -> str:
    """In place of an empty table: the tasks carry no such field (a dataset without difficulties or skills)."""
    return f"No {name} recorded for these tasks."


_NO_PROVENANCE = "Provenance not recorded: this metrics.json does not say which model, dataset and software produced it."


def _not_reported(k: str, why: str) -> str:
    return f"{k} is not reported: {why} (TACO reports a k only when every task has at least k)."


def _contended_line(data: ReportData) -> str | None:
    """The one line on timeouts that came from waiting for a CPU (re-run, never scored as -1)."""
    if data.contended is None:
        return None
    reruns, unresolved = data.contended
    return (
        f"Contended timeouts (a run that waited for a CPU on a busy machine; never a verdict): "
        f"{reruns:,} run again, {unresolved:,} samples not scored."
    )


_INFRA_NOTE = (
    "Infrastructure errors (the sandbox failed on every retry) are not scored: they are left out of "
    "n for their task. Shares are of all samples."
)

# CommonMark backslash-escapes these; escaping them keeps a skill name from becoming markup.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&!{}])")


def md_text(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int]) -> list[str]:
    align = ["---:" if i in numeric else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(md_text(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _pass_numeric(data: ReportData) -> range:
    return range(1, 2 + len(data.ks))  # tasks and every pass@k: all columns after the name


def _pass_rows(rows: Sequence[PassAtKRow]) -> list[list[str]]:
    return [[r.name, format_value(r.tasks), *(percent(v) for v in r.values)] for r in rows]


def _group_rows(data: ReportData) -> list[list[str]]:
    return [
        [g.label, g.taco, f"{g.samples:,}", percent(data.share(g.samples)), ", ".join(o.outcome for o in g.outcomes) or "—"]
        for g in data.verdict_groups or ()
    ]


def _outcome_rows(data: ReportData) -> list[list[str]]:
    return [[o.outcome, o.group, f"{o.samples:,}", percent(data.share(o.samples))] for o in data.outcomes]


# -- the corrected judge beside TACO's --------------------------------------------------------------
_CORRECTED_NOTE = (
    "The corrected judge judges the same runs without TACO's comparison quirks: outputs as token sequences, "
    "case-insensitive and float-tolerant where TACO's Special-Judge list says so; problems with several valid "
    'outputs need a checker and are left out of its pass@k (README, "Corrected judge").'
)
_EXAMPLES_HEADER = ("task", "sample", "accepted by", "reason", "test", "output", "expected")


def _judges_header(data: ReportData, name: str) -> list[str]:
    return [name, "tasks", *(f"TACO {k}" for k in data.ks), "tasks (corrected)", *(f"corrected {k}" for k in data.ks)]


def _judges_numeric(data: ReportData) -> range:
    return range(1, 3 + 2 * len(data.ks))


def _judges_rows(rows: Sequence[JudgesRow]) -> list[list[str]]:
    return [
        [r.name, format_value(r.taco_tasks), *(percent(v) for v in r.taco), format_value(r.corrected_tasks),
         *(percent(v) for v in r.corrected)]
        for r in rows
    ]  # fmt: skip


def _corrected_lines(data: ReportData, section: CorrectedSection) -> list[str]:
    """The sentences under the side-by-side tables: like-with-like, the tasks left to a checker, the totals."""
    same = ", ".join(f"{k} {percent(v)}" for k, v in zip(data.ks, section.taco_same_tasks))
    lines = [f"TACO over the same {section.tasks:,} tasks the corrected judge judges: {same or '—'}."]
    if section.needs_checker:
        ids = ", ".join(str(t) for t in section.needs_checker[:40]) + (", …" if len(section.needs_checker) > 40 else "")
        lines.append(
            f"Needs a checker (several valid outputs): {_count(len(section.needs_checker), 'task')}, "
            f"{_count(section.needs_checker_samples, 'sample')}, of which TACO accepts {section.needs_checker_taco_accepts:,}; "
            f"task ids {ids}."
        )
    taco_only, corrected_only = section.totals
    lines.append(
        f"Of {section.compared:,} samples both judges judged, TACO accepts {taco_only:,} that the corrected judge rejects "
        f"and rejects {corrected_only:,} that it accepts."
    )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _disagreement_rows(section: CorrectedSection) -> list[list[str]]:
    rows = [[r.reason, f"{r.taco_accepts:,}", f"{r.corrected_accepts:,}"] for r in section.disagreements]
    taco_only, corrected_only = section.totals
    return [*rows, ["total", f"{taco_only:,}", f"{corrected_only:,}"]]


_DISAGREEMENT_HEADER = ("reason (first differing test)", "TACO accepts, corrected rejects", "corrected accepts, TACO rejects")


def _corrected_markdown(data: ReportData) -> list[str]:
    section = data.corrected
    if section is None:
        return []
    lines = ["## Corrected judge beside TACO's", "", md_text(_CORRECTED_NOTE), ""]
    lines += _md_table(_judges_header(data, ""), _judges_rows(section.overall), _judges_numeric(data))
    if section.by_skill:
        lines += ["### By skill, both judges", ""]
        lines += _md_table(_judges_header(data, "skill"), _judges_rows(section.by_skill), _judges_numeric(data))
    lines += [f"* {md_text(line)}" for line in _corrected_lines(data, section)] + [""]
    lines += ["### Disagreements", "", *_md_table(_DISAGREEMENT_HEADER, _disagreement_rows(section), (1, 2))]
    if section.examples:
        lines += ["### Examples", "", *_md_table(_EXAMPLES_HEADER, section.examples, (0, 1, 4))]
    return lines


def _corrected_html(data: ReportData) -> list[str]:
    section = data.corrected
    if section is None:
        return []
    parts = [
        '<h2 id="corrected-heading">Corrected judge beside TACO\'s</h2>',
        f'<p class="note">{_e(_CORRECTED_NOTE)}</p>',
        _html_table("pass-at-k-both-judges", _judges_header(data, ""), _judges_rows(section.overall), _judges_numeric(data)),
    ]
    if section.by_skill:
        parts += [
            "<h3>By skill, both judges</h3>",
            _html_table("pass-at-k-both-judges-by-skill", _judges_header(data, "skill"), _judges_rows(section.by_skill),
                        _judges_numeric(data)),
        ]  # fmt: skip
    parts += [f'<p class="note">{_e(line)}</p>' for line in _corrected_lines(data, section)]
    parts += ["<h3>Disagreements</h3>", _html_table("disagreements", _DISAGREEMENT_HEADER, _disagreement_rows(section), (1, 2))]
    if section.examples:
        parts += ["<h3>Examples</h3>", _html_table("disagreement-examples", _EXAMPLES_HEADER, section.examples, (0, 1, 4))]
    return parts


def render_markdown(data: ReportData, images: ReportImages = PLOTS) -> str:
    lines = [f"# {md_text(data.title)}", "", md_text(_summary(data)), ""]
    if data.partial is not None:
        lines += [f"**{md_text(data.partial)}**", ""]
    lines += ["## Provenance", ""]
    if data.provenance is None:
        lines += [md_text(_NO_PROVENANCE), ""]
    else:
        lines += _md_table(["what", "value"], data.provenance, ())
    pass_header = ["", "tasks", *data.ks]
    lines += ["## pass@k", "", *_md_table(pass_header, _pass_rows([data.overall]), _pass_numeric(data))]
    lines += [f"* {md_text(_not_reported(k, why))}" for k, why in data.not_reported] + ([""] if data.not_reported else [])
    if data.left_out:
        lines += ["### Tasks left out", "", *_md_table(["why", "tasks", "task ids"], data.left_out, (1,))]
    lines += ["## Plots", ""]
    for image in _shown(data, images):
        lines += [f"![{md_text(image.alt)}]({quote(image.filename)})", ""]
    lines += intervals_markdown(data.intervals)
    for heading, rows, name in (("By difficulty", data.by_difficulty, "difficulty"), ("By skill", data.by_skill, "skill")):
        lines += [f"### {heading}", ""]
        if rows is None:
            lines += ["Not recorded in metrics.json.", ""]
        elif not rows:
            lines += [_no_groups(name), ""]
        else:
            lines += _md_table([name, "tasks", *data.ks], _pass_rows(rows), _pass_numeric(data))
    lines += _corrected_markdown(data)
    lines += ["## Verdicts", ""]
    if data.verdict_groups is None:
        lines += ["Not recorded in metrics.json (no counts.outcomes).", ""]
    else:
        lines += _md_table(["verdict", "TACO value", "samples", "share", "outcomes"], _group_rows(data), (2, 3))
        contended = _contended_line(data)
        lines += [md_text(_INFRA_NOTE), "", *([md_text(contended), ""] if contended else []), "### Outcomes", ""]
        lines += _md_table(["outcome", "verdict", "samples", "share"], _outcome_rows(data), (2, 3))
    lines += problems_section_markdown(data.problems)
    lines += ["## Evaluation settings", ""]
    lines += (
        ["Not recorded in metrics.json.", ""] if data.settings is None else _md_table(["setting", "value"], data.settings, ())
    )
    if data.run_stats is not None or data.run_stats_problem is not None:
        lines += ["## Run statistics", ""]
        if data.run_stats_problem is not None:
            lines += [md_text(data.run_stats_problem), ""]
        if data.run_stats is not None:
            lines += _md_table(["statistic", "value"], data.run_stats, ())
    return "\n".join(lines).rstrip("\n") + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1b1b1b;
       background: #fff; max-width: 1160px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-top: 1.2em; }
table { border-collapse: collapse; margin: .4em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figure img { width: 560px; max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: .9em; }
.note { color: #555; }
.warning { background: #fff4e0; border-left: 4px solid #e09b2d; padding: .4em .7em; }
""".strip()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Collection[int]) -> str:
    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="num">{_e(v)}</{tag}>' if i in numeric else f"<{tag}>{_e(v)}</{tag}>" for i, v in enumerate(values)
        )

    body = "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<table id="{_e(table_id)}">\n<thead><tr>{cells("th", header)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _figure(image: PlotImage) -> str:
    return (
        f'<figure><img src="{_e(quote(image.filename))}" width="{image.width_px}" height="{image.height_px}" '
        f'alt="{_e(image.alt)}"><figcaption>{_e(image.alt)}</figcaption></figure>'
    )


def _shown(data: ReportData, images: ReportImages) -> tuple[PlotImage, ...]:
    """The plots of this report: the timeline only for a run that recorded one."""
    always = (images.pass_at_k, images.verdict_mix)
    return (*always, images.timeline) if data.timeline else always


def render_html(data: ReportData, images: ReportImages = PLOTS) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.title)}</title>",
        f"<style>\n{_CSS}\n</style></head>",
        "<body>",
        f"<h1>{_e(data.title)}</h1>",
        f'<p id="summary">{_e(_summary(data))}</p>',
        *([f'<p class="warning" id="partial">{_e(data.partial)}</p>'] if data.partial is not None else []),
        '<h2 id="provenance-heading">Provenance</h2>',
        f'<p class="note">{_e(_NO_PROVENANCE)}</p>'
        if data.provenance is None
        else _html_table("provenance", ["what", "value"], data.provenance, ()),
        '<h2 id="pass-at-k">pass@k</h2>',
        _html_table("pass-at-k-overall", ["", "tasks", *data.ks], _pass_rows([data.overall]), _pass_numeric(data)),
        *(f'<p class="note not-reported">{_e(_not_reported(k, why))}</p>' for k, why in data.not_reported),
        *(
            ["<h3>Tasks left out</h3>", _html_table("left-out", ["why", "tasks", "task ids"], data.left_out, (1,))]
            if data.left_out
            else []
        ),
        f'<div class="figures">{"".join(_figure(image) for image in _shown(data, images))}</div>',
    ]
    parts.append(intervals_html(data.intervals))
    for heading, rows, name, table_id in (
        ("By difficulty", data.by_difficulty, "difficulty", "pass-at-k-by-difficulty"),
        ("By skill", data.by_skill, "skill", "pass-at-k-by-skill"),
    ):
        parts.append(f"<h3>{heading}</h3>")
        if rows is None:
            parts.append('<p class="note">Not recorded in metrics.json.</p>')
        elif not rows:
            parts.append(f'<p class="note">{_e(_no_groups(name))}</p>')
        else:
            parts.append(_html_table(table_id, [name, "tasks", *data.ks], _pass_rows(rows), _pass_numeric(data)))
    parts += _corrected_html(data)
    parts.append('<h2 id="verdicts-heading">Verdicts</h2>')
    if data.verdict_groups is None:
        parts.append('<p class="note">Not recorded in metrics.json (no counts.outcomes).</p>')
    else:
        parts.append(
            _html_table("verdicts", ["verdict", "TACO value", "samples", "share", "outcomes"], _group_rows(data), (2, 3))
        )
        parts.append(f'<p class="note">{_e(_INFRA_NOTE)}</p>')
        contended = _contended_line(data)
        if contended:
            parts.append(f'<p class="note" id="contended">{_e(contended)}</p>')
        parts.append("<h3>Outcomes</h3>")
        parts.append(_html_table("outcomes", ["outcome", "verdict", "samples", "share"], _outcome_rows(data), (2, 3)))
    parts.append(problems_section_html(data.problems))
    parts.append("<h2>Evaluation settings</h2>")
    if data.settings is None:
        parts.append('<p class="note">Not recorded in metrics.json.</p>')
    else:
        parts.append(_html_table("settings", ["setting", "value"], data.settings, ()))
    if data.run_stats is not None or data.run_stats_problem is not None:
        parts.append("<h2>Run statistics</h2>")
        if data.run_stats_problem is not None:
            parts.append(f'<p class="note">{_e(data.run_stats_problem)}</p>')
        if data.run_stats is not None:
            parts.append(_html_table("run-stats", ["statistic", "value"], data.run_stats, ()))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"
