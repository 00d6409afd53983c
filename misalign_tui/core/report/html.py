"""The audit report as one offline HTML file: inline CSS and SVG charts, no script, nothing loaded from anywhere."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence

from misalign_tui.core import metrics
from misalign_tui.core.metrics.judge_quality import ReliabilityBin
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
from misalign_tui.core.views.explain import (
    Explanation,
    JudgeExplanation,
    ResponseTokens,
    effect_level,
    logprob_level,
)

# -- HTML ---------------------------------------------------------------------------------------------------

def _effect_class(effect: float) -> str:
    level = effect_level(effect)
    return "" if level == 0 else f"ef{'p' if level > 0 else 'n'}{abs(level)}"


def _shaded_tokens(r: ResponseTokens) -> str:
    parts = []
    for t in r.tokens:
        if not t.text:
            continue
        level = logprob_level(t.logprob)
        title = f' title="log P {t.logprob:.2f}, share {t.contribution:+.4f}"'
        parts.append(f'<span class="lp{level}"{title}>{h(t.text)}</span>' if level else
                     f"<span{title}>{h(t.text)}</span>")
    tail = r.text[r.tokens[-1].end:] if r.tokens else r.text
    return "".join(parts) + h(tail)


def shaded(x: Explanation) -> str:
    """The explained text with its shading, as CSS classes (no script; the colours are in the inline style
    sheet): sentences red when they raise P(misaligned), green when they lower it; tokens darker the less the
    model expected them."""
    if isinstance(x, JudgeExplanation):
        spans = []
        for s in x.sentences:
            cls = _effect_class(s.effect)
            title = f' title="effect {s.effect:+.3f}, P without {s.p_without:.3f}"'
            spans.append(f'<span class="{cls}"{title}>{h(s.text)}</span>' if cls else f"<span{title}>{h(s.text)}</span>")
        return ('<blockquote>' + " ".join(spans) + '</blockquote><div class="legend">red: the sentence raises '
                'P(misaligned); green: it lowers it; the darker, the stronger (|effect| ≥ 0.005, 0.02, 0.05)</div>')
    return "".join(f"<div>{h(r.label)} response, mean log P {r.mean:.2f}:</div><blockquote>{_shaded_tokens(r)}"
                   "</blockquote>" for r in (x.aligned, x.misaligned)) + (
        '<div class="legend">shade: how unexpected each token was to the model (log P below −1, −3, −6, −10)</div>')

def h(text: object) -> str:
    """User or model text as inert HTML: control characters shown (``printable``), then every HTML character
    escaped."""
    return html.escape(printable(str(text)), quote=True)


def _details_json(summary: str, value: object) -> str:
    """A folded block holding stored JSON (recipe, provenance), escaped (control characters in it are shown by
    ``h``, so the block is for reading, not for parsing back)."""
    return (f"<details><summary>{h(summary)}</summary><pre>{h(json.dumps(value, indent=2, ensure_ascii=False))}"
            "</pre></details>")


LABEL_WIDTH = 250
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#eeca3b")


def svg_chart(chart: Chart, color: str = PALETTE[0], width: int = 900) -> str:
    """A horizontal bar chart on a 0–100 % scale: one bar per group with its 95 % interval as a whisker, an
    optional diamond marker per bar (baseline) and a dashed reference line (chance)."""
    row_h, bar_h, top, bottom = 24, 14, 44, 30
    x0, x1 = LABEL_WIDTH, width - 210  # one label width for every chart, so the scales line up down the page
    span = x1 - x0
    height = top + row_h * len(chart.bars) + bottom

    def x(v: float) -> float:
        return x0 + span * max(0.0, min(1.0, v))

    parts = [f'<svg class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{h(chart.title)}">',
             f'<text x="4" y="18" class="title">{h(chart.title)}</text>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top - 6}" x2="{x(tick):.1f}" y2="{height - bottom + 4}" '
                     'class="grid"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{height - bottom + 18}" class="tick">{int(tick * 100)}%</text>')
    for i, b in enumerate(chart.bars):
        y = top + i * row_h
        cy = y + row_h / 2
        label = b.label if len(b.label) <= 34 else b.label[:33] + "…"
        tip = f"{b.label}: {pct_ci(b.value, b.ci)} {b.note}".strip()
        if b.marker is not None:
            tip += f"; baseline {pct(b.marker)}"
        parts.append(f'<g><title>{h(tip)}</title>')
        parts.append(f'<text x="{x0 - 8}" y="{cy + 4:.1f}" class="label">{h(label)}</text>')
        if b.value is None:
            parts.append(f'<text x="{x0 + 6}" y="{cy + 4:.1f}" class="na">n/a</text>')
        else:
            parts.append(f'<rect x="{x0}" y="{cy - bar_h / 2:.1f}" width="{max(0.0, x(b.value) - x0):.1f}" '
                         f'height="{bar_h}" fill="{color}" rx="2"/>')
            if b.ci:
                lo, hi = x(b.ci[0]), x(b.ci[1])
                parts.append(f'<path d="M{lo:.1f},{cy:.1f}H{hi:.1f}M{lo:.1f},{cy - 5:.1f}V{cy + 5:.1f}'
                             f'M{hi:.1f},{cy - 5:.1f}V{cy + 5:.1f}" class="whisker"/>')
        if b.marker is not None:
            mx = x(b.marker)
            parts.append(f'<path d="M{mx:.1f},{cy - 6:.1f}L{mx + 5:.1f},{cy:.1f}L{mx:.1f},{cy + 6:.1f}'
                         f'L{mx - 5:.1f},{cy:.1f}Z" class="marker"/>')
        parts.append(f'<text x="{x1 + 8}" y="{cy + 4:.1f}" class="value">{h(pct_ci(b.value, b.ci))} '
                     f'<tspan class="note">{h(b.note)}</tspan></text></g>')
    if chart.reference is not None:
        rx = x(chart.reference)
        parts.append(f'<line x1="{rx:.1f}" y1="{top - 8}" x2="{rx:.1f}" y2="{height - bottom + 4}" class="ref"/>')
        parts.append(f'<text x="{rx + 4:.1f}" y="{top - 10}" class="reflabel">{h(chart.reference_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def svg_reliability(bins: Sequence[ReliabilityBin], title: str, color: str = PALETTE[0], size: int = 320) -> str:
    """The reliability chart: per bin of P, the share of misaligned responses (with its 95 % interval) at the bin's
    mean P, on a square 0–1 × 0–1 with the diagonal a calibrated judge would follow; each point is labelled n."""
    left, top, right, bottom = 44, 30, 16, 34
    width, height = left + size + right, top + size + bottom

    def x(v: float) -> float:
        return left + size * max(0.0, min(1.0, v))

    def y(v: float) -> float:
        return top + size * (1 - max(0.0, min(1.0, v)))

    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{h(title)}">', f'<text x="4" y="18" class="title">{h(title)}</text>']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{top + size}" class="grid"/>')
        parts.append(f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + size}" y2="{y(tick):.1f}" class="grid"/>')
        parts.append(f'<text x="{x(tick):.1f}" y="{top + size + 16}" class="tick">{tick:g}</text>')
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" class="label">{tick:g}</text>')
    parts.append(f'<text x="{left + size / 2:.1f}" y="{height - 2}" class="tick">mean P(misaligned) in the bin</text>')
    parts.append(f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" class="ref"/>')
    for b in bins:
        if not b.n or b.mean_p is None or b.observed is None:
            continue
        cx, cy = x(b.mean_p), y(b.observed)
        tip = f"P {b.lo:.1f}–{b.hi:.1f}: {b.n} responses, mean P {b.mean_p:.3f}, {pct_ci(b.observed, b.observed_ci)} misaligned"
        parts.append(f"<g><title>{h(tip)}</title>")
        if b.observed_ci:
            parts.append(f'<path d="M{cx:.1f},{y(b.observed_ci[0]):.1f}V{y(b.observed_ci[1]):.1f}" class="whisker"/>')
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{color}"/>')
        parts.append(f'<text x="{cx + 6:.1f}" y="{cy - 4:.1f}" class="note">n={b.n}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _html_quality(w: Callable[[str], None], s: RunSection, color: str) -> None:
    q = s.quality
    if q is None or (q.overall is None and q.fluency is None):
        return
    w(f"<h4>How good is the judge ({h(q.protocol)})</h4><ul>")
    for line in q.lines():
        w(f"<li>{h(line)}</li>")
    w("</ul>")
    for title, rows in quality_tables(s):
        w(_html_table([title, *QUALITY_HEADERS], rows, last_is_all=True))
    if q.overall is not None and q.overall.templates:
        w(_html_table(["template", "polarity", "AUROC", "pairwise accuracy"], template_rows(q.overall)))
    if q.overall is not None and q.overall.items:
        w(svg_reliability(q.overall.reliability, f"Reliability — {s.label}", color))
        w(_html_table(["P bin", "responses", "mean P", "share misaligned"], reliability_rows(q.overall.reliability)))


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;margin:0;background:#fff}
main{max-width:1240px;margin:0 auto;padding:16px 28px 60px}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;border-bottom:2px solid #d6dbe1;padding-bottom:4px;margin-top:36px}
h3{font-size:16px;margin:24px 0 8px}h4{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:13px}.scroll{overflow-x:auto;margin:8px 0 14px}
th,td{border:1px solid #d6dbe1;padding:3px 8px;vertical-align:top;text-align:left}
th{background:#f1f3f6}td:first-child{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.all td{font-weight:600;background:#fafbfc}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f8fa;border:1px solid #e1e4e8;padding:8px;overflow:auto;white-space:pre-wrap;word-break:break-word}
.meta{color:#5a6570}.na{fill:#888;font-style:italic}.verdict{font-weight:600}
.notice{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px}
nav ol{columns:2;margin:6px 0}
details{margin:4px 0}summary{cursor:pointer;color:#33506e}
dl.howto dt{font-weight:600;margin-top:8px}dl.howto dd{margin-left:16px}
svg.chart{display:block;margin:6px 0 14px;max-width:100%;height:auto}
svg .title{font:600 13px system-ui,sans-serif;fill:#1d232a}
svg .label{font:12px system-ui,sans-serif;text-anchor:end;fill:#1d232a}
svg .tick{font:11px system-ui,sans-serif;text-anchor:middle;fill:#5a6570}
svg .value{font:12px system-ui,sans-serif;fill:#1d232a}svg .note{fill:#5a6570}
svg .grid{stroke:#e3e6ea;stroke-width:1}svg .whisker{stroke:#1d232a;stroke-width:1.5;fill:none}
svg .marker{fill:#1d232a}svg .ref{stroke:#c0392b;stroke-width:1.5;stroke-dasharray:5 3}
svg .reflabel{font:11px system-ui,sans-serif;fill:#c0392b}
.examples li{margin-bottom:10px}
.examples blockquote{margin:4px 0 4px 8px;padding-left:8px;border-left:3px solid #d6dbe1;white-space:pre-wrap}
.why{color:#33506e;margin-top:6px}.legend{color:#5a6570;font-size:90%}
.lp1{background:#fdf0c4}.lp2{background:#fbd98a}.lp3{background:#f6a96b}.lp4{background:#e8674f;color:#fff}
.efp1{background:#fbe3e1}.efp2{background:#f4b4ae}.efp3{background:#e0665c;color:#fff}
.efn1{background:#e3f4e1}.efn2{background:#b4e0ae}.efn3{background:#5fae57;color:#fff}
@media print{nav{display:none}h2{break-before:page}}
"""

_NUMERIC = re.compile(r"^(n/a|[−+-]?[0-9][0-9.,%eE+-]*(\s.*)?|—)$")


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, last_is_all: bool = False,
                numeric: bool = True) -> str:
    out = ['<div class="scroll"><table><thead><tr>', *(f"<th>{h(x)}</th>" for x in headers), "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = ' class="all"' if last_is_all and i == len(rows) - 1 else ""
        out.append(f"<tr{cls}>")
        for j, cell in enumerate(row):
            num = ' class="num"' if numeric and j > 0 and _NUMERIC.match(cell) else ""
            out.append(f"<td{num}>{h(cell)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def render_html(report: AuditReport) -> str:
    colors = {s.run.id: PALETTE[i % len(PALETTE)] for i, s in enumerate(report.runs)}
    out: list[str] = []
    w = out.append
    title = "Alignment audit report — " + ", ".join(dict.fromkeys(s.run.model for s in report.runs))
    w("<!DOCTYPE html>")
    w('<html lang="en"><head><meta charset="utf-8">')
    w('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
      'img-src data:">')
    w('<meta name="viewport" content="width=device-width, initial-scale=1">')
    w(f"<title>{h(title)}</title><style>{CSS}</style></head><body><main>")
    w("<h1>Alignment audit report</h1>")
    boot = (f"AS intervals from {report.bootstrap} bootstrap resamples over prompts (seed {report.seed})"
            if report.bootstrap else "AS has no interval (bootstrap off)")
    w(f'<p class="meta">Generated {h(report.generated_at)} by misalign-tui {h(report.tool_version)} · filters: '
      f"{h(filters_text(report.filters))} · 95 % intervals; {h(boot)}. This file is self-contained: it loads "
      "nothing from the network.</p>")
    w('<nav><ol><li><a href="#summary">Summary</a></li><li><a href="#measured">What was measured</a></li>'
      '<li><a href="#models">Models and runs</a></li><li><a href="#metrics">Metrics</a></li>'
      '<li><a href="#worst">Worst domains and semantic types</a></li>'
      '<li><a href="#comparisons">Paired comparisons</a></li><li><a href="#examples">Items each model got most '
      'wrong</a></li>' + ('<li><a href="#languages">Across languages</a></li>' if report.languages else "")
      + ('<li><a href="#reviews">Reviews</a></li>' if report.reviews else "")
      + '<li><a href="#how-to-read">How to read this report</a></li></ol></nav>')

    w('<section id="summary"><h2>1. Summary</h2>')
    rows = []
    for s in report.runs:
        rows.append([s.run.model, str(s.run.id), s.run.method, s.run.benchmark, status_text(s), headline_text(s),
                     pct_ci(s.trade.rate, s.trade.ci), quality_summary(s)])
    w(_html_table(["model", "run", "method", "benchmark", "status", "headline (95 % interval)",
                   "trade-off rate", "how good is the judge"], rows))
    if any(s.status != "complete" for s in report.runs):
        w('<p class="notice">Some runs are not complete; their figures cover only the items done.</p>')
    for chart in overview_charts(report):
        w(svg_chart(chart))
    w("</section>")

    w('<section id="measured"><h2>2. What was measured</h2>')
    for b in report.benchmarks:
        w(f"<h3>Benchmark {h(b.name)} version {b.version}</h3><ul>")
        w(f"<li>content hash (sha256): <code>{h(b.content_hash or 'not computed')}</code></li>")
        w(f"<li>{b.prompts:,} prompts, {b.pairs:,} pairs, {b.responses:,} responses; created {h(b.created_at)}</li>")
        if b.description:
            w(f"<li>description: {h(b.description)}</li>")
        w(f"<li>licence: {h(b.licence) if b.licence else 'not recorded'}</li>")
        for line in source_lines(b):
            w(f"<li>{h(line)}</li>")
        w(f"<li>runs in this report: {h(', '.join(str(r) for r in b.runs))}</li></ul>")
        w(_html_table(["dimension", "prompts", "pairs", "responses", "aligned", "misaligned", "domains"],
                      [[d.dimension, count(d.prompts), count(d.pairs), count(d.responses), count(d.aligned),
                        count(d.misaligned), count(d.domains)] for d in b.by_dimension]))
        w(_html_table(["semantic type", "prompts"], [[t, count(n)] for t, n in b.by_semantic_type]))
        if b.recipe:
            w(_details_json("Build recipe", b.recipe))
        if b.source:
            w(_details_json("Import provenance (as stored)", b.source))
    w("</section>")

    w('<section id="models"><h2>3. Models and runs</h2>')
    for s in report.runs:
        w(f'<h3 id="run-{s.run.id}">{h(s.label)}</h3>')
        w(_html_table(["field", "value"], provenance_rows(s), numeric=False))
        chat = chat_template_text(s)
        if chat:
            w(f"<details><summary>Chat template used</summary><pre>{h(chat)}</pre></details>")
        for i, name, text in s.templates:
            w(f"<details><summary>Template {i} ({h(name)}), exactly as the model saw it</summary>"
              f"<pre>{h(text)}</pre></details>")
        if s.params:
            w(_details_json("Run parameters (params_json)", s.params))
        if s.provenance:
            w(_details_json("Run provenance (provenance_json)", s.provenance))
    w("</section>")

    w('<section id="metrics"><h2>4. Metrics</h2>')
    for s in report.runs:
        w(f"<h3>{h(s.label)} — {h(s.run.method)} on {h(s.run.benchmark)}</h3>")
        w(f'<p class="meta">Status: {h(status_text(s))}. {h(metrics.chance_note(s.run.method))}.</p>')
        cols = metric_columns(s)
        for title, rows_ in (("dimension", s.by_dimension), ("semantic type", s.by_semantic_type)):
            body = [[r.group or "all", *(fn(r) for _, fn in cols)] for r in rows_]
            if s.overall:
                body.append(["all", *(fn(s.overall) for _, fn in cols)])
            w(_html_table([title, *(x for x, _ in cols)], body, last_is_all=s.overall is not None))
        for chart in run_charts(s)[:2]:
            w(svg_chart(chart, colors[s.run.id]))
        w(f"<p><strong>{h(trade_sentence(s.trade))}</strong></p>")
        if s.trade.satisfaction:
            w(_html_table(["dimension", "s_d (satisfaction)", "prompts"],
                          [[d, pct_ci(c.rate, c.ci), count(c.n)] for d, c in s.trade.satisfaction.items()]))
        dims, prow = pairwise_cells(s.trade)
        if len(dims) > 1:
            w("<p>T[row → column]: satisfies the row dimension and fails the column dimension.</p>")
            w(_html_table(["from \\ to", *dims], [[d, *cells] for d, cells in prow]))
        _html_quality(w, s, colors[s.run.id])
    w("</section>")

    w('<section id="worst"><h2>5. Worst domains and semantic types</h2>')
    for s in report.runs:
        w(f"<h3>{h(s.label)}</h3>")
        cols = worst_columns(s)
        for title, rows_ in (("domain", s.worst_domains), ("semantic type", s.worst_types)):
            if rows_:
                w(_html_table([f"worst {title}", *(x for x, _ in cols)],
                              [[r.group or "", *(fn(r) for _, fn in cols)] for r in rows_]))
        charts = run_charts(s)
        if s.worst_domains and charts:
            w(svg_chart(charts[-1], colors[s.run.id]))
    w("</section>")

    w('<section id="comparisons"><h2>6. Paired comparisons</h2>')
    if not report.comparisons:
        w("<p>No two runs of the same method share items; nothing to compare.</p>")
    for c in report.comparisons:
        co = c.overall
        w(f"<h3>{h(c.a.model)} (A, run {c.a.id}) vs {h(c.b.model)} (B, run {c.b.id})</h3>")
        metric = METRICS[co.metric].name if co.metric in METRICS else co.metric
        w(f"<p>Overall on {count(co.n_items)} shared items: {h(metric)} A {pct(co.value_a)}, B {pct(co.value_b)}; "
          f"A only right {count(co.a_only)}, B only right {count(co.b_only)}; McNemar exact p = {p_value(co.p_value)}, "
          f"Holm-adjusted across {len(report.comparisons)} pair(s) of runs p = {p_value(c.overall_p_holm)}: "
          f'<span class="verdict">{h(verdict(c.a, c.b, c.overall_verdict))}</span>.</p>')
        if c.auroc is not None:
            w(f"<p>{h(auroc_comparison_line(c.a.model, c.b.model, c.auroc))}</p>")
        w(_html_table([c.group_by, "shared items", f"{metric} A", "B", "Δ (points)", "A only right",
                       "B only right", "p", "p (Holm)", "verdict"],
                      [[r.group or "all", count(r.n_items), pct(r.value_a), pct(r.value_b),
                        "n/a" if r.delta is None else f"{100 * r.delta:+.1f}", count(r.a_only), count(r.b_only),
                        p_value(r.p_value), p_value(r.p_holm), verdict(c.a, c.b, r.verdict)] for r in c.groups]))
    if report.comparisons_skipped:
        w("<ul>" + "".join(f"<li>not compared: {h(x)}</li>" for x in report.comparisons_skipped) + "</ul>")
    for ladder in report.ladders:
        w(f"<h3>{h(ladder_title(ladder))}</h3>")
        w(_html_table(*ladder_rows(ladder)))
        w(_html_table(*ladder_dimension_rows(ladder)))
        w("<ul>" + "".join(f"<li>{h(x)}</li>" for x in ladder_sentences(ladder)) + "</ul>")
        w(svg_chart(ladder_chart(ladder)))
    w("</section>")

    w('<section id="examples"><h2>7. Items each model got most wrong</h2>')
    for s in report.runs:
        w(f"<h3>{h(s.label)}</h3>")
        if not s.examples:
            w("<p>No wrong items.</p>")
            continue
        w('<ol class="examples">')
        for e in s.examples:
            w(f"<li><strong>{h(e.prompt_key)}</strong> ({h(e.dimension)}): {h(e.detail)}"
              f"<blockquote>{h(e.prompt)}</blockquote>")
            for caption, text in e.texts:
                w(f"<div>{h(caption)}:</div><blockquote>{h(text)}</blockquote>")
            lines = explanation_lines(e)
            if lines:
                w(f'<div class="why">{h(lines[0])}</div>')
                if e.explanation is not None:
                    w(shaded(e.explanation))
                w("<ul>" + "".join(f"<li>{h(x)}</li>" for x in lines[1:]) + "</ul>")
            w("</li>")
        w("</ol>")
    w("</section>")

    num = section_numbers(report)
    if report.languages:
        w(f'<section id="languages"><h2>{num["languages"]}. Across languages</h2>')
        for ls in report.languages:
            res = ls.result
            w(f"<h3>{h(ls.run.model)} (run {ls.run.id}): {h(res.metric)}, each English item against its parallel "
              f"item (n = paired {h(res.unit)})</h3>")
            w(_html_table(LANGUAGE_COLUMNS, language_rows(res)))
        w("</section>")
    if report.reviews:
        w(f'<section id="reviews"><h2>{num["reviews"]}. Reviews</h2>')
        for f in report.reviews:
            w(f"<h3>{h(f.scope)}</h3><ul>" + "".join(f"<li>{h(line)}</li>" for line in figures_lines(f)) + "</ul>")
            if f.listed:
                w(f"<p>Disputed and flagged responses ({len(f.listed)}, with the reviewers' notes):</p>")
                w(_html_table(DISPUTE_COLUMNS, dispute_rows(f)))
        w("</section>")
    w(f'<section id="how-to-read"><h2>{num["how-to-read"]}. How to read this report</h2><dl class="howto">')
    for term, text in how_to_read(report):
        w(f"<dt>{h(term)}</dt><dd>{h(text)}</dd>")
    w("</dl></section></main></body></html>")
    return "\n".join(out)
