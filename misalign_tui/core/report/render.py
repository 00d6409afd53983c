"""An audit report in the format asked for."""

from __future__ import annotations

from misalign_tui.core.report.audit import AuditReport
from misalign_tui.core.report.html import render_html
from misalign_tui.core.report.markdown import render_markdown

REPORT_FORMATS = ("md", "html")


def render(report: AuditReport, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"report format {fmt!r}: one of {', '.join(REPORT_FORMATS)}")
