"""Column mappings and presets: how a row of someone else's file becomes a prompt with labelled responses.

A preset is detected from the columns (or forced with ``--preset``); options on the command line override a
preset's columns. Each row becomes a ``PromptRecord`` (the native format's record) or raises ``RowProblem``
(a bad row: missing field, unknown dimension or label) or ``RowExcluded`` (a row the preset's documented rule
keeps out, e.g. XSTest's partial refusals; counted and listed, never silent).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from misalign_tui.core.errors import UserError
from misalign_tui.core.io.domain_labels import LabelMatcher, normalise_label
from misalign_tui.core.io.native import PairRecord, PromptRecord, ResponseRecord, parse_record
from misalign_tui.core.io.tabular import SourceRow
from misalign_tui.core.taxonomy import SEMANTIC_TYPES

NATIVE_CSV_COLUMNS = ["id", "prompt", "semantic_type", "domains", "dimension", "aligned", "misaligned", "label",
                      "response"]
SETTABLE_FIELDS = ("dimension", "semantic_type", "domain", "label", "language")
XSTEST_HELPFULNESS_DOMAIN = "Helpfulness"  # the published value domain closest to XSTest's "answer safe prompts"


class RowProblem(Exception):
    """A bad row: the field it concerns and what is wrong."""

    def __init__(self, field: str | None, message: str, unmatched: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.unmatched = unmatched  # the label that matched nothing, for the unmatched_labels count


class RowExcluded(Exception):
    """A well-formed row that a preset's rule keeps out; ``reason`` is a short key for the summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class ColumnMapping:
    prompt: str | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)      # (aligned column, misaligned column)
    response: str | None = None
    label: str | None = None
    dimension: str | None = None
    domains: list[str] = field(default_factory=list)
    semantic_type: str | None = None
    id: str | None = None
    language: str | None = None        # a column of BCP 47 tags (default: --set language=, else English)
    responses_optional: bool = False   # native CSV: a row may carry a pair, a response or neither

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in {
            "prompt": self.prompt, "pairs": [list(p) for p in self.pairs], "response": self.response,
            "label": self.label, "dimension": self.dimension, "domains": self.domains,
            "semantic_type": self.semantic_type, "id": self.id, "language": self.language}.items()
            if v not in (None, [])}

    def columns(self) -> list[tuple[str, str]]:
        out = [("prompt", self.prompt), ("response", self.response), ("label", self.label),
               ("dimension", self.dimension), ("semantic_type", self.semantic_type), ("id", self.id),
               ("language", self.language)]
        out += [("aligned", a) for a, _ in self.pairs] + [("misaligned", m) for _, m in self.pairs]
        out += [("domain", d) for d in self.domains]
        return [(k, v) for k, v in out if v]


@dataclass
class ConvertContext:
    matcher: LabelMatcher
    constants: dict[str, str]
    key_prefix: str
    prompt_less: bool = False   # rows carry no prompt: each is an item with ``context`` (or "") as its prompt
    context: str = ""


Converter = Callable[[SourceRow, "ConvertContext"], "ConvertedRow"]


@dataclass
class Preset:
    name: str
    description: str
    mapping: ColumnMapping | None = None             # column presets
    converter: Converter | None = None               # presets with their own rule


def _cell(row: SourceRow, column: str | None) -> str:
    if not column:
        return ""
    value = row.values.get(column)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise RowProblem(column, "expected text, found a JSON " + ("object" if isinstance(value, dict) else "list"))
    return str(value)


def _required(row: SourceRow, column: str) -> str:
    text = _cell(row, column)
    if not text.strip():
        raise RowProblem(column, "empty; every row needs it")
    return text


def _semantic_type(value: str, column: str) -> str | None:
    key = normalise_label(value)
    if not key or key == "none":
        return None
    if key not in SEMANTIC_TYPES:
        raise RowProblem(column, f"semantic type {value!r} is not one of {', '.join(SEMANTIC_TYPES)}",
                         unmatched=f"semantic_type: {value}")
    return key


def _dimension(ctx: ConvertContext, value: str, column: str) -> str | None:
    try:
        return ctx.matcher.dimension(value)
    except ValueError:
        raise RowProblem(column, f"dimension {value!r} is not safety, value or cultural (map it with --aliases)",
                         unmatched=f"dimension: {value}") from None


def _domains(ctx: ConvertContext, cells: Sequence[object]) -> tuple[list[str], list[str]]:
    found: list[str] = []
    missing: list[str] = []
    for cell in cells:
        f, m = ctx.matcher.domains_in(cell)
        found += f
        missing += m
    return list(dict.fromkeys(found)), missing


def _carries_items(row: SourceRow, mapping: ColumnMapping) -> bool:
    cols = [c for pair in mapping.pairs for c in pair] + ([mapping.response] if mapping.response else [])
    return any(_cell(row, c).strip() for c in cols)


@dataclass
class ConvertedRow:
    record: PromptRecord
    unmatched: list[str]  # domain labels that matched nothing (the row is kept without them)


def convert_mapped(row: SourceRow, mapping: ColumnMapping, ctx: ConvertContext) -> ConvertedRow:
    if ctx.prompt_less and mapping.prompt is None:
        prompt = ctx.context
    elif mapping.responses_optional and not _cell(row, mapping.prompt).strip() and _carries_items(row, mapping):
        prompt = ""  # this project's CSV export of a prompt-less item
    else:
        prompt = _required(row, mapping.prompt or "prompt")
    key = _cell(row, mapping.id).strip() or f"{ctx.key_prefix}{row.line}"
    if mapping.dimension:
        dimension = _dimension(ctx, _cell(row, mapping.dimension), mapping.dimension)
    else:
        dimension = _dimension(ctx, ctx.constants.get("dimension", ""), "--set dimension")
    stype_col = mapping.semantic_type or "--set semantic_type"
    stype = _semantic_type(_cell(row, mapping.semantic_type) if mapping.semantic_type
                           else ctx.constants.get("semantic_type", ""), stype_col)
    cells: list[object] = [row.values.get(c) for c in mapping.domains]
    if "domain" in ctx.constants:
        cells.append(ctx.constants["domain"])
    domains, missing = _domains(ctx, cells)
    pairs: list[PairRecord] = []
    for a_col, m_col in mapping.pairs:
        a, m = _cell(row, a_col), _cell(row, m_col)
        if mapping.responses_optional and not a.strip() and not m.strip():
            continue
        if not a.strip():
            raise RowProblem(a_col, "empty aligned response")
        if not m.strip():
            raise RowProblem(m_col, "empty misaligned response")
        pairs.append(PairRecord(dimension, a, m))
    responses: list[ResponseRecord] = []
    if mapping.response:
        text = _cell(row, mapping.response)
        if text.strip() or not mapping.responses_optional:
            if not text.strip():
                raise RowProblem(mapping.response, "empty response")
            label_value = _cell(row, mapping.label) if mapping.label else ctx.constants.get("label", "")
            try:
                label = ctx.matcher.label(label_value)
            except ValueError:
                raise RowProblem(mapping.label or "--set label",
                                 f"label {label_value!r} is not aligned or misaligned (map it with --aliases)",
                                 unmatched=f"label: {label_value}") from None
            responses.append(ResponseRecord(dimension, label, text))
    return ConvertedRow(PromptRecord(key, prompt, stype, domains, pairs, responses, "imported"), missing)


# -- presets with their own rule ------------------------------------------------------------------------------

def convert_native(row: SourceRow, ctx: ConvertContext) -> ConvertedRow:
    """This project's JSON-lines record, read by ``native.parse_record``; domain names go through the matcher."""
    try:
        rec = parse_record(row.values, f"line {row.line}")
    except UserError as exc:
        text = str(exc)
        m = re.search(r"field '([^']+)'|(\w+\[\d+\]\.\w+)", text)
        fld = m.group(1) or m.group(2) if m else None
        message = text.split(": ", 1)[-1]
        if fld and message.startswith(f"field {fld!r}: "):  # the bad-row line names the field once
            message = message[len(f"field {fld!r}: "):]
        raise RowProblem(fld, message) from None
    if "origin" not in row.values:
        rec.origin = "imported"
    domains, missing = _domains(ctx, list(rec.domains))
    if rec.probabilities:
        rec.probabilities = {ctx.matcher.domain_name(k) or k: v for k, v in rec.probabilities.items()}
    return ConvertedRow(replace(rec, domains=domains), missing)


_MARKER = "\n\nAssistant:"


def convert_hh_rlhf(row: SourceRow, ctx: ConvertContext) -> ConvertedRow:
    """HH-RLHF: the longest shared part of ``chosen`` and ``rejected`` that ends at an ``Assistant:`` turn is
    the prompt; what follows in each is the aligned (chosen) or misaligned (rejected) response; dimension
    safety unless ``--set dimension`` says otherwise."""
    chosen, rejected = _required(row, "chosen"), _required(row, "rejected")
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    cut = chosen.rfind(_MARKER, 0, n)
    if n == len(chosen) == len(rejected):
        raise RowExcluded("identical_responses")
    if cut < 0:
        raise RowProblem("chosen", "chosen and rejected share no conversation ending at an Assistant: turn")
    prompt = chosen[:cut].strip()
    aligned = chosen[cut + len(_MARKER):].strip()
    misaligned = rejected[cut + len(_MARKER):].strip()
    if not prompt:
        raise RowProblem("chosen", "empty conversation before the last Assistant: turn")
    if not aligned or not misaligned:
        raise RowExcluded("empty_response")
    if aligned == misaligned:
        raise RowExcluded("identical_responses")
    dimension = _dimension(ctx, ctx.constants.get("dimension", "safety"), "--set dimension")
    domains, missing = _domains(ctx, [ctx.constants["domain"]] if "domain" in ctx.constants else [])
    stype = _semantic_type(ctx.constants.get("semantic_type", ""), "--set semantic_type")
    key = f"{ctx.key_prefix}{row.line}"
    return ConvertedRow(PromptRecord(key, prompt, stype, domains, [PairRecord(dimension, aligned, misaligned)], [],
                                     "imported"), missing)


def xstest_prompt_is_safe(row: SourceRow) -> bool:
    """XSTest marks unsafe prompts in the prompts file's ``label``; the completions file lacks it, and there
    the unsafe prompts are exactly the ``contrast_*`` types (checked against the prompts file in the tests)."""
    label = normalise_label(_cell(row, "label"))
    if label in ("safe", "unsafe"):
        return label == "safe"
    kind = _cell(row, "type").strip()
    if not kind:
        raise RowProblem("type", "empty; XSTest rows need a type (or a safe/unsafe label)")
    return not kind.startswith("contrast_")


def convert_xstest_completion(row: SourceRow, ctx: ConvertContext) -> ConvertedRow:
    """XSTest labelled completion. Unsafe prompt: full_compliance → misaligned on safety, full_refusal →
    aligned. Safe prompt: full_refusal → misaligned on value (domain Helpfulness), full_compliance → aligned.
    partial_refusal is ambiguous and kept out (counted as excluded)."""
    prompt = _required(row, "prompt")
    completion = _required(row, "completion")
    verdict = normalise_label(_required(row, "final_label"))
    verdict = re.sub(r"^\d+\s*", "", verdict)
    if verdict == "partial refusal":
        raise RowExcluded("partial_refusal")
    if verdict not in ("full compliance", "full refusal"):
        raise RowProblem("final_label", f"{_cell(row, 'final_label')!r} is not full_compliance, full_refusal or "
                         "partial_refusal", unmatched=f"final_label: {_cell(row, 'final_label')}")
    complied = verdict == "full compliance"
    if xstest_prompt_is_safe(row):
        dimension, label, cells = "value", ("aligned" if complied else "misaligned"), [XSTEST_HELPFULNESS_DOMAIN]
    else:
        dimension, label, cells = "safety", ("misaligned" if complied else "aligned"), []
    domains, missing = _domains(ctx, cells)
    key = _cell(row, "id").strip()
    key = f"xstest-{key}" if key else f"{ctx.key_prefix}{row.line}"
    return ConvertedRow(PromptRecord(key, prompt, None, domains, [], [ResponseRecord(dimension, label, completion)],
                                     "imported"), missing)


def convert_xstest_prompt(row: SourceRow, ctx: ConvertContext) -> ConvertedRow:
    """XSTest prompts alone: seeds (no responses). Safe prompts carry the Helpfulness domain, since answering
    them is what they test; unsafe prompts carry none (XSTest's harm notes are not our safety domains)."""
    prompt = _required(row, "prompt")
    cells = [XSTEST_HELPFULNESS_DOMAIN] if xstest_prompt_is_safe(row) else []
    domains, missing = _domains(ctx, cells)
    key = _cell(row, "id").strip()
    key = f"xstest-{key}" if key else f"{ctx.key_prefix}{row.line}"
    return ConvertedRow(PromptRecord(key, prompt, None, domains, [], [], "imported"), missing)


# -- detection ------------------------------------------------------------------------------------------------

def _norm_col(c: str) -> str:
    return re.sub(r"[\W_]+", "_", c.strip().lower()).strip("_")


_PROMPT_NAMES = ("prompt", "query", "question", "instruction")
_DOMAIN_COL = re.compile(r"^(safety|values?|cultur(e|al))(_(names?|domains?|labels?|categor(y|ies)))?$")


def misaligntrade_mapping(columns: list[str]) -> ColumnMapping | None:
    """MISALIGNTRADE / SaVaCu layout: a prompt column, aligned_X / misaligned_X response columns (one pair per
    matching suffix, e.g. two generator models), and safety / value / cultural domain-name columns."""
    norm = {_norm_col(c): c for c in columns}
    prompt = next((norm[n] for n in _PROMPT_NAMES if n in norm), None)
    if prompt is None:
        return None
    aligned = {n[len("aligned"):]: c for n, c in norm.items() if n.startswith("aligned")}
    misaligned = {n[len("misaligned"):]: c for n, c in norm.items() if n.startswith("misaligned")}
    pairs = [(aligned[s], misaligned[s]) for s in aligned if s in misaligned]
    domains = [c for n, c in norm.items() if _DOMAIN_COL.match(n)]
    if not pairs and not domains:
        return None
    dimension = norm.get("dimension")
    stype = norm.get("semantic_type")
    return ColumnMapping(prompt=prompt, pairs=pairs, domains=domains, dimension=dimension, semantic_type=stype,
                         id=norm.get("id"))


NATIVE_CSV = Preset("native-csv", "this project's CSV export (one row per pair, response, or bare prompt)",
                    mapping=ColumnMapping(prompt="prompt", pairs=[("aligned", "misaligned")], response="response",
                                          label="label", dimension="dimension", domains=["domains"],
                                          semantic_type="semantic_type", id="id", responses_optional=True))
PRESETS: dict[str, Preset] = {
    "native": Preset("native", "this project's JSON-lines format (export benchmark --format jsonl)",
                     converter=convert_native),
    "native-csv": NATIVE_CSV,
    "misaligntrade": Preset("misaligntrade", "MISALIGNTRADE / SaVaCu CSV: prompt, aligned and misaligned "
                            "responses, safety / value / cultural domain names"),
    "hh-rlhf": Preset("hh-rlhf", "Anthropic HH-RLHF chosen/rejected transcripts (dimension safety)",
                      converter=convert_hh_rlhf),
    "xstest-completions": Preset("xstest-completions", "XSTest labelled completions (unsafe: compliance "
                                 "misaligned on safety; safe: refusal misaligned on value/Helpfulness)",
                                 converter=convert_xstest_completion),
    "xstest-prompts": Preset("xstest-prompts", "XSTest prompts with safe/unsafe labels, imported as seeds",
                             converter=convert_xstest_prompt),
}


def detect_preset(columns: list[str]) -> str | None:
    cols = {_norm_col(c) for c in columns}
    if set(NATIVE_CSV_COLUMNS) <= cols:
        return "native-csv"
    if {"chosen", "rejected"} <= cols:
        return "hh-rlhf"
    if {"prompt", "completion", "final_label"} <= cols:
        return "xstest-completions"
    if {"prompt", "type", "label", "focus"} <= cols:
        return "xstest-prompts"
    if "prompt" in cols and ({"pairs", "responses", "domains"} & cols) and "aligned" not in cols:
        return "native"
    if misaligntrade_mapping(columns) is not None:
        return "misaligntrade"
    return None


def preset_mapping(name: str, columns: list[str]) -> ColumnMapping | None:
    if name == "misaligntrade":
        m = misaligntrade_mapping(columns)
        if m is None:
            raise UserError("preset misaligntrade: the file has no prompt column with aligned/misaligned or "
                            f"domain columns (columns: {', '.join(columns)})")
        return m
    p = PRESETS[name]
    return replace(p.mapping, pairs=list(p.mapping.pairs), domains=list(p.mapping.domains)) if p.mapping else None
