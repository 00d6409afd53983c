"""The audit report as Markdown: tables, text bar charts, every user or model text escaped."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from misalign_tui.core import metrics
from misalign_tui.core.metrics.vocabulary import METRICS
from misalign_tui.core.report.audit import AuditReport, RunSection
from misalign_tui.core.report.content import (
    DISPUTE_COLUMNS,
    LANGUAGE_COLUMNS,
    QUALITY_HEADERS,
    Chart,
    chat_template_text,
    count,
    dispute_rows,
    explanation_lines,
    filters_text,
    headline_text,
    how_to_read,
    ladder_chart,
    ladder_dimension_rows,
    ladder_rows,
    ladder_sentences,
    ladder_title,
    language_rows,
    metric_columns,
    overview_charts,
    p_value,
    pairwise_cells,
    pct,
    pct_ci,
    provenance_rows,
    quality_summary,
    quality_tables,
    reliability_rows,
    run_charts,
    section_numbers,
    source_lines,
    status_text,
    template_rows,
    trade_sentence,
    verdict,
    worst_columns,
)
from misalign_tui.core.report.quality import auroc_comparison_line
from misalign_tui.core.review.figures import figures_lines
from misalign_tui.core.text import printable

# -- Markdown -----------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_|~]|\](?=[(\[:]))")
_ENTITY_LIKE = re.compile(r"&(?=#?[0-9A-Za-z]+;)")  # only an & that starts an entity needs escaping


def md(text: object) -> str:
    """User or model text as inert Markdown that still reads as plain text: control characters shown
    (``printable``); ``<`` and ``>`` as entities (no tag, no autolink) and ``&`` only where it would start an entity
    (so "Arts & Culture" stays as written); emphasis, code, table and link-closing characters backslashed; one line
    (a table cell cannot hold a newline)."""
    s = printable(str(text))
    s = _ENTITY_LIKE.sub("&amp;", s).replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return re.sub(r"\s*[\r\n]+\s*", " ", s)


def md_code(text: str, info: str = "text") -> str:
    """Verbatim text in a fence longer than any backtick run inside it (nothing in a fence is rendered; control
    characters are shown, ``printable``)."""
    text = printable(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(md(h) for h in headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


_EIGHTHS = " ▏▎▍▌▋▊▉█"


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def text_bar(value: float | None, width: int = 30, reference: float | None = None,
             marker: float | None = None) -> str:
    """A bar of ``width`` cells for a proportion, with eighth blocks, a ┊ at the reference where empty and a ◆ at
    the marker (a baseline), drawn over the bar."""
    if value is None:
        cells = list("n/a".ljust(width))
    else:
        units = round(max(0.0, min(1.0, value)) * width * 8)
        full, part = divmod(units, 8)
        cells = list("█" * full + (_EIGHTHS[part] if part else "") + " " * width)[:width]
    if reference is not None and value is not None:
        pos = min(width - 1, int(reference * width))
        if cells[pos] == " ":
            cells[pos] = "┊"
    if marker is not None:
        cells[min(width - 1, int(max(0.0, min(1.0, marker)) * width))] = "◆"
    return "".join(cells)


def text_chart(chart: Chart, width: int = 30) -> str:
    labels = [printable(b.label if len(b.label) <= 36 else b.label[:35] + "…") for b in chart.bars]
    lw = max([len(x) for x in labels] + [4])
    lines = [chart.title]
    for label, b in zip(labels, chart.bars, strict=True):
        extra = f"  baseline {pct(b.marker)}" if b.marker is not None else ""
        lines.append(f"{label.ljust(lw)} │{text_bar(b.value, width, chart.reference, b.marker)}│ "
                     f"{pct_ci(b.value, b.ci)} {b.note}{extra}".rstrip())
    axis = "0%".ljust(width // 2) + "50%".ljust(width - width // 2) + "100%"
    lines.append(" " * (lw + 1) + axis)
    if chart.reference is not None:
        lines.append(" " * (lw + 1) + f"┊ {chart.reference_label}")
    if chart.marker_label and any(b.marker is not None for b in chart.bars):
        lines.append(" " * (lw + 1) + f"◆ {chart.marker_label}")
    return "\n".join(lines)


def reliability_text(rows: Sequence[Sequence[str]], bins: Sequence[object], width: int = 20) -> str:
    """The reliability chart in text: per bin of P, a bar of the share misaligned with ┊ at the bin's mean P
    (a calibrated judge's bar ends at its ┊)."""
    lines = ["P bin      n      mean P  share misaligned"]
    for row, b in zip(rows, bins, strict=True):
        observed, mean_p = getattr(b, "observed", None), getattr(b, "mean_p", None)
        bar = text_bar(observed, width, mean_p) if getattr(b, "n", 0) else " " * width
        lines.append(f"{row[0]:<9} {row[1]:>6}  {row[2]:>6}  │{bar}│ {row[3]}")
    return "\n".join(lines)


def _md_quality(w: Callable[[str], None], s: RunSection) -> None:
    q = s.quality
    if q is None or (q.overall is None and q.fluency is None):
        return
    w(f"How good is the judge ({md(q.protocol)}):")
    w("")
    for line in q.lines():
        w(f"- {md(line)}")
    w("")
    for title, rows in quality_tables(s):
        w(_md_table([title, *QUALITY_HEADERS], rows))
        w("")
    if q.overall is not None and q.overall.templates:
        w(_md_table(["template", "polarity", "AUROC", "pairwise accuracy"], template_rows(q.overall)))
        w("")
    if q.overall is not None and q.overall.items:
        w("Reliability (the share misaligned per bin of P; ┊ marks the bin's mean P, where a calibrated judge's "
          "bar would end):")
        w("")
        w(md_code(reliability_text(reliability_rows(q.overall.reliability), q.overall.reliability)))
        w("")


def render_markdown(report: AuditReport) -> str:
    out: list[str] = []
    w = out.append
    w("# Alignment audit report")
    w("")
    w(f"Generated {report.generated_at} by misalign-tui {md(report.tool_version)}. Filters: "
      f"{md(filters_text(report.filters))}. Intervals are 95 %"
      + (f"; AS intervals from {report.bootstrap} bootstrap resamples over prompts (seed {report.seed})."
         if report.bootstrap else "; AS has no interval (bootstrap off)."))
    w("")
    num = section_numbers(report)
    w("Contents: 1. Summary · 2. What was measured · 3. Models and runs · 4. Metrics · 5. Worst domains and "
      "semantic types · 6. Paired comparisons · 7. Items each model got most wrong · "
      + (f"{num['languages']}. Across languages · " if report.languages else "")
      + (f"{num['reviews']}. Reviews · " if report.reviews else "") + f"{num['how-to-read']}. How to read this report")
    w("")
    w("## 1. Summary")
    w("")
    rows = []
    for s in report.runs:
        rows.append([s.run.model, str(s.run.id), s.run.method, s.run.benchmark, status_text(s), headline_text(s),
                     pct_ci(s.trade.rate, s.trade.ci), quality_summary(s)])
    w(_md_table(["model", "run", "method", "benchmark", "status", "headline (95 % interval)", "trade-off rate",
                 "how good is the judge"], rows))
    w("")
    for chart in overview_charts(report):
        w(md_code(text_chart(chart)))
        w("")
    w("## 2. What was measured")
    w("")
    for b in report.benchmarks:
        w(f"### Benchmark {md(b.name)} version {b.version}")
        w("")
        w(f"- content hash (sha256): `{b.content_hash or 'not computed'}`")
        w(f"- {b.prompts:,} prompts, {b.pairs:,} pairs, {b.responses:,} responses; created {md(b.created_at)}")
        if b.description:
            w(f"- description: {md(b.description)}")
        w(f"- licence: {md(b.licence) if b.licence else 'not recorded'}")
        for line in source_lines(b):
            w(f"- {md(line)}")
        w(f"- runs in this report: {', '.join(str(r) for r in b.runs)}")
        w("")
        w(_md_table(["dimension", "prompts", "pairs", "responses", "aligned", "misaligned", "domains"],
                    [[d.dimension, count(d.prompts), count(d.pairs), count(d.responses), count(d.aligned),
                      count(d.misaligned), count(d.domains)] for d in b.by_dimension]))
        w("")
        w(_md_table(["semantic type", "prompts"], [[t, count(n)] for t, n in b.by_semantic_type]))
        w("")
        if b.recipe:
            w(md_code(json.dumps(b.recipe, indent=2, ensure_ascii=False), "json"))
            w("")
    w("## 3. Models and runs")
    w("")
    for s in report.runs:
        w(f"### {md(s.label)}")
        w("")
        w(_md_table(["field", "value"], provenance_rows(s)))
        w("")
        chat = chat_template_text(s)
        if chat:
            w("Chat template used:")
            w("")
            w(md_code(chat, "jinja"))
            w("")
        for i, name, text in s.templates:
            w(f"Template {i} ({md(name)}), exactly as the model saw it:")
            w("")
            w(md_code(text))
            w("")
    w("## 4. Metrics")
    w("")
    for s in report.runs:
        w(f"### {md(s.label)} — {s.run.method} on {md(s.run.benchmark)}")
        w("")
        w(f"Status: {md(status_text(s))}. {md(metrics.chance_note(s.run.method))}.")
        w("")
        cols = metric_columns(s)
        for title, rows_ in (("dimension", s.by_dimension), ("semantic type", s.by_semantic_type)):
            body = [[r.group or "all", *(fn(r) for _, fn in cols)] for r in rows_]
            if s.overall:
                body.append(["all", *(fn(s.overall) for _, fn in cols)])
            w(f"By {title}:")
            w("")
            w(_md_table([title, *(h for h, _ in cols)], body))
            w("")
        for chart in run_charts(s)[:2]:
            w(md_code(text_chart(chart)))
            w("")
        w(md(trade_sentence(s.trade)))
        w("")
        if s.trade.satisfaction:
            w(_md_table(["dimension", "s_d (satisfaction)", "prompts"],
                        [[d, pct_ci(c.rate, c.ci), count(c.n)] for d, c in s.trade.satisfaction.items()]))
            w("")
        dims, prow = pairwise_cells(s.trade)
        if len(dims) > 1:
            w("T[row → column]: satisfies the row dimension and fails the column dimension.")
            w("")
            w(_md_table(["from \\ to", *dims], [[d, *cells] for d, cells in prow]))
            w("")
        _md_quality(w, s)
    w("## 5. Worst domains and semantic types")
    w("")
    for s in report.runs:
        w(f"### {md(s.label)}")
        w("")
        cols = worst_columns(s)
        for title, rows_ in (("domain", s.worst_domains), ("semantic type", s.worst_types)):
            if rows_:
                w(_md_table([f"worst {title}", *(h for h, _ in cols)],
                            [[r.group or "", *(fn(r) for _, fn in cols)] for r in rows_]))
                w("")
        charts = run_charts(s)
        if s.worst_domains and charts:
            w(md_code(text_chart(charts[-1])))
            w("")
    w("## 6. Paired comparisons")
    w("")
    if not report.comparisons:
        w("No two runs of the same method share items; nothing to compare.")
        w("")
    for c in report.comparisons:
        co = c.overall
        w(f"### {md(c.a.model)} (A, run {c.a.id}) vs {md(c.b.model)} (B, run {c.b.id})")
        w("")
        metric = METRICS[co.metric].name if co.metric in METRICS else co.metric
        w(f"Overall on {count(co.n_items)} shared items: {metric} A {pct(co.value_a)}, B {pct(co.value_b)}; "
          f"A only right {count(co.a_only)}, B only right {count(co.b_only)}; McNemar exact p = {p_value(co.p_value)}, "
          f"Holm-adjusted across {len(report.comparisons)} pair(s) of runs p = {p_value(c.overall_p_holm)}: "
          f"**{md(verdict(c.a, c.b, c.overall_verdict))}**.")
        w("")
        if c.auroc is not None:
            w(md(auroc_comparison_line(c.a.model, c.b.model, c.auroc)))
            w("")
        w(_md_table([c.group_by, "shared items", f"{metric} A", "B", "Δ (points)", "A only right", "B only right",
                     "p", "p (Holm)", "verdict"],
                    [[r.group or "all", count(r.n_items), pct(r.value_a), pct(r.value_b),
                      "n/a" if r.delta is None else f"{100 * r.delta:+.1f}", count(r.a_only), count(r.b_only),
                      p_value(r.p_value), p_value(r.p_holm), verdict(c.a, c.b, r.verdict)] for r in c.groups]))
        w("")
    for line in report.comparisons_skipped:
        w(f"- not compared: {md(line)}")
    if report.comparisons_skipped:
        w("")
    for ladder in report.ladders:
        w(f"### {md(ladder_title(ladder))}")
        w("")
        w(_md_table(*ladder_rows(ladder)))
        w("")
        w(_md_table(*ladder_dimension_rows(ladder)))
        w("")
        for line in ladder_sentences(ladder):
            w(f"- {md(line)}")
        w("")
        w(md_code(text_chart(ladder_chart(ladder))))
        w("")
    w("## 7. Items each model got most wrong")
    w("")
    for s in report.runs:
        w(f"### {md(s.label)}")
        w("")
        if not s.examples:
            w("No wrong items.")
            w("")
        for e in s.examples:
            w(f"- **{md(e.prompt_key)}** ({md(e.dimension)}): {md(e.detail)}")
            w(f"  - prompt: {md(e.prompt)}")
            for caption, text in e.texts:
                w(f"  - {md(caption)}: {md(text)}")
            for line in explanation_lines(e):
                w(f"  - {md(line)}")
        w("")
    if report.languages:
        w(f"## {num['languages']}. Across languages")
        w("")
        for ls in report.languages:
            res = ls.result
            w(f"### {md(ls.run.model)} (run {ls.run.id}): {md(res.metric)}, each English item against its parallel "
              f"item (n = paired {md(res.unit)})")
            w("")
            w(_md_table(LANGUAGE_COLUMNS, language_rows(res)))
            w("")
    if report.reviews:
        w(f"## {num['reviews']}. Reviews")
        w("")
        for f in report.reviews:
            w(f"### {md(f.scope)}")
            w("")
            for line in figures_lines(f):
                w(f"- {md(line)}")
            w("")
            if f.listed:
                w(f"Disputed and flagged responses ({len(f.listed)}, with the reviewers' notes):")
                w("")
                w(_md_table(DISPUTE_COLUMNS, [[*r[:-1], _cut(r[-1])] for r in dispute_rows(f)]))
                w("")
    w(f"## {num['how-to-read']}. How to read this report")
    w("")
    for term, text in how_to_read(report):
        w(f"- **{md(term)}**: {md(text)}")
    w("")
    return "\n".join(out)
