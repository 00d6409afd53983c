"""Stream rows out of CSV, TSV, JSON lines and JSON array files, plain or gzip, with their line numbers.

Every row comes out either as a ``SourceRow`` (column → text) or as a ``BadRow`` naming the line, the field and
what is wrong — broken quoting, a wrong number of cells, invalid UTF-8, a NUL byte, a cell over
``MAX_CELL_CHARS``, invalid JSON — so the importer can stop on it or set it aside. Nothing is read whole: memory
stays bounded by the largest record, whatever the file size.

Encoding: UTF-8 (with or without a byte-order mark). A UTF-16 or UTF-32 file with its byte-order mark is read as
such (the encoding found is recorded); one without a mark is refused with a line that says what was found, since
its NUL bytes would otherwise read as broken UTF-8. A CSV/TSV without a header row (``header=False``) names its
columns by position, ``1``, ``2``, …, and its first line is data.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from misalign_tui.core.errors import UserError
from misalign_tui.core.user_files import unreadable

MAX_CELL_CHARS = 1_048_576  # one cell (a prompt, a response) longer than this is a bad row, not data
FORMATS = ("csv", "tsv", "jsonl", "json")
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape
_READ_CHUNK = 1 << 20


@dataclass
class SourceRow:
    line: int                      # first physical line of the record (1-based; the header is line 1 in CSV)
    values: dict[str, object]
    raw: str = ""                  # the record as it stood in the file, for the reject file


@dataclass
class BadRow:
    line: int
    field: str | None
    error: str
    raw: str = ""
    end_line: int | None = None


@dataclass
class SourceFile:
    """One input file: its path, format, and the columns found in its header (or first JSON object)."""

    path: Path
    format: str
    gzip: bool
    columns: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    header: bool = True            # CSV/TSV: the first line names the columns (False: named 1, 2, … by position)


# Byte-order marks, longest first (UTF-32 LE starts like UTF-16 LE).
_BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def detect_encoding(path: Path, compressed: bool) -> str:
    """``utf-8``, or ``utf-16`` / ``utf-32`` when the file starts with that byte-order mark. A file whose first
    bytes are half NUL without a mark is UTF-16 or UTF-32 that cannot be read safely: a UserError says so."""
    head = _head(path, compressed)
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    if len(head) >= 4 and head.count(0) * 4 >= len(head):
        even, odd = head[0::2].count(0), head[1::2].count(0)
        guess = "UTF-16 (big-endian)" if even > 2 * odd else "UTF-16 (little-endian)" if odd > 2 * even else \
            "UTF-16 or UTF-32"
        raise UserError(f"{path}: looks like {guess} without a byte-order mark (NUL bytes between the characters); "
                        "expected UTF-8 — save the file as UTF-8 (or as UTF-16 with a byte-order mark)")
    return "utf-8"


def detect_format(path: Path, encoding: str = "utf-8") -> tuple[str, bool]:
    """The file's format from its name (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, ``.json``; ``.gz`` allowed),
    else from its first bytes; gzip is recognised by its magic number whatever the name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        raise unreadable(path, exc, "data file") from exc
    compressed = head == b"\x1f\x8b"
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if suffix in ("jsonl", "ndjson"):
        return "jsonl", compressed
    if suffix in FORMATS:
        return suffix, compressed
    start = _head(path, compressed).decode(encoding, errors="replace").lstrip("\ufeff \t\r\n")
    if start.startswith("["):
        return "json", compressed
    if start.startswith("{"):
        return "jsonl", compressed
    first = start.split("\n", 1)[0]
    if "\t" in first and "," not in first:
        return "tsv", compressed
    if "," in first:
        return "csv", compressed
    raise UserError(f"{path}: cannot tell the format; name it .csv, .tsv, .jsonl or .json (optionally .gz)")


def _open_binary(path: Path, compressed: bool) -> BinaryIO:
    return gzip.open(path, "rb") if compressed else open(path, "rb")  # type: ignore[return-value]


def _head(path: Path, compressed: bool, size: int = 4096) -> bytes:
    """The first bytes of the (uncompressed) data. gzip data cut short raises EOFError, which the command line
    would take for Ctrl+D: it is said as damaged data here, like in ``read_rows``."""
    try:
        with _open_binary(path, compressed) as fh:
            return fh.read(size)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise UserError(f"{path}: damaged gzip data ({exc}); recompress or unpack the file") from exc


def _open_text(src: SourceFile) -> io.TextIOWrapper:
    # surrogateescape: undecodable bytes survive as lone surrogates, so one bad line is one bad row.
    return io.TextIOWrapper(_open_binary(src.path, src.gzip), encoding=src.encoding, errors="surrogateescape",
                            newline="")


def cell_problem(value: str) -> str | None:
    """Why a cell's text cannot be stored, or None."""
    if len(value) > MAX_CELL_CHARS:
        return f"cell of {len(value):,} characters exceeds the limit of {MAX_CELL_CHARS:,}"
    if "\x00" in value:
        return "contains a NUL byte"
    m = _SURROGATE.search(value)
    if m:
        return f"invalid UTF-8 (byte 0x{ord(m.group()) - 0xDC00:02x}); save the file as UTF-8"
    return None


def _object_row(line: int, obj: object, raw: str, seen: dict[str, None], src: SourceFile, not_object: str
                ) -> SourceRow | BadRow:
    """One parsed JSON record as a row: columns are the union of the keys seen so far, in order of appearance."""
    if not isinstance(obj, dict):
        return BadRow(line, None, not_object, raw)
    for k in obj:
        seen.setdefault(k)
    src.columns = list(seen)
    problem = _check_values(obj)
    if problem:
        return BadRow(line, problem[0], problem[1], raw)
    return SourceRow(line, obj, raw)


def _check_values(values: dict[str, object]) -> tuple[str, str] | None:
    """The first (field, problem) among the row's text values, or None."""
    for key, value in values.items():
        problem = _value_problem(value)
        if problem:
            return key, problem
    return None


def _value_problem(value: object) -> str | None:
    if isinstance(value, str):
        return cell_problem(value)
    if isinstance(value, list):
        for v in value:
            p = _value_problem(v)
            if p:
                return p
    if isinstance(value, dict):
        for v in value.values():
            p = _value_problem(v)
            if p:
                return p
    return None


def open_source(path: str | Path, *, header: bool = True) -> SourceFile:
    """The file's format, compression and encoding; ``header=False``: a CSV/TSV whose first line is data."""
    p = Path(path)
    fmt, compressed = detect_format(p)
    encoding = detect_encoding(p, compressed)
    if encoding != "utf-8":
        fmt, compressed = detect_format(p, encoding)
    if not header and fmt not in ("csv", "tsv"):
        raise UserError(f"{p}: --no-header applies to CSV and TSV files; this one reads as {fmt.upper()}, whose "
                        "records name their fields")
    return SourceFile(p, fmt, compressed, encoding=encoding, header=header)


def read_rows(src: SourceFile) -> Iterator[SourceRow | BadRow]:
    """Rows of the file in order; ``src.columns`` is filled once the header (or first object) is read."""
    try:
        if src.format in ("csv", "tsv"):
            yield from _delimited_rows(src, "," if src.format == "csv" else "\t")
        elif src.format == "jsonl":
            yield from _jsonl_rows(src)
        else:
            yield from _json_array_rows(src)
    except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
            raise
        raise UserError(f"{src.path}: damaged gzip data ({exc}); recompress or unpack the file") from exc


class _Lines:
    """Physical lines with their count, keeping the current record's text for the reject file."""

    def __init__(self, fh: io.TextIOWrapper) -> None:
        self.fh = fh
        self.count = 0
        self.pending: list[str] = []
        self.first = True

    def __iter__(self) -> Iterator[str]:
        for line in self.fh:
            if self.first:
                line = line.lstrip("\ufeff")
                self.first = False
            self.count += 1
            self.pending.append(line)
            yield line

    def take(self) -> str:
        text = "".join(self.pending)
        self.pending = []
        return text


def _delimited_rows(src: SourceFile, delimiter: str) -> Iterator[SourceRow | BadRow]:
    csv.field_size_limit(MAX_CELL_CHARS + 1)
    with _open_text(src) as fh:
        lines = _Lines(fh)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        if src.header:
            try:
                header = next(reader)
            except StopIteration:
                raise UserError(f"{src.path}: empty file (no header line)") from None
            except csv.Error as exc:
                raise UserError(f"{src.path}:1: cannot read the header ({exc})") from exc
            lines.take()
            header = [h.strip() for h in header]
            for h in header:
                problem = cell_problem(h)
                if problem:
                    raise UserError(f"{src.path}:1: header: {problem}")
            if len(set(header)) != len(header):
                dupes = sorted({h for h in header if header.count(h) > 1})
                raise UserError(f"{src.path}:1: header names a column twice: {', '.join(dupes)}; rename it")
        else:
            header = _positional_header(src)
        src.columns = header
        while True:
            start = lines.count + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                msg = str(exc)
                if "field larger than field limit" in msg:
                    msg = f"a cell exceeds the limit of {MAX_CELL_CHARS:,} characters"
                elif "unexpected end of data" in msg:
                    msg = f"a quoted cell is never closed (from line {start} to the end of the file)"
                else:
                    msg = f"broken quoting ({msg})"
                yield BadRow(start, None, msg, lines.take(), lines.count)
                continue
            raw = lines.take()
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue  # blank line
            if len(cells) != len(header):
                yield BadRow(start, None, f"expected {len(header)} cells, found {len(cells)} (check the quoting "
                             "and the delimiter)", raw, lines.count)
                continue
            values: dict[str, object] = dict(zip(header, cells, strict=True))
            bad_value = _check_values(values)
            if bad_value:
                yield BadRow(start, bad_value[0], bad_value[1], raw, lines.count)
                continue
            yield SourceRow(start, values, raw)


def _positional_header(src: SourceFile) -> list[str]:
    """Columns ``1`` … ``n`` for a file without a header row, n from its first non-blank record (read here
    without consuming it: the file is opened again for the rows)."""
    with _open_text(src) as fh:
        probe = csv.reader(_Lines(fh), delimiter="," if src.format == "csv" else "\t", strict=True)
        try:
            for cells in probe:
                if cells and not (len(cells) == 1 and not cells[0].strip()):
                    return [str(i) for i in range(1, len(cells) + 1)]
        except csv.Error as exc:
            raise UserError(f"{src.path}:1: cannot read the first row ({exc})") from exc
    raise UserError(f"{src.path}: empty file (no rows)")


def _jsonl_rows(src: SourceFile) -> Iterator[SourceRow | BadRow]:
    seen: dict[str, None] = {}
    with _open_text(src) as fh:
        for n, line in enumerate(fh, 1):
            if n == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            if len(line) > 4 * MAX_CELL_CHARS:
                yield BadRow(n, None, f"line of {len(line):,} characters exceeds the limit of "
                             f"{4 * MAX_CELL_CHARS:,}", line)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRow(n, None, f"invalid JSON ({exc.msg} at column {exc.colno})", line)
                continue
            yield _object_row(n, obj, line, seen, src, "expected a JSON object on each line")


def _json_array_rows(src: SourceFile) -> Iterator[SourceRow | BadRow]:
    """A top-level JSON array of objects, decoded element by element."""
    decoder = json.JSONDecoder()
    seen: dict[str, None] = {}
    with _open_text(src) as fh:
        buf = fh.read(_READ_CHUNK).lstrip("\ufeff")
        eof = not buf
        pos = 0
        line = 1  # line number at buf[pos]

        def advance(to: int) -> None:
            nonlocal pos, line
            line += buf.count("\n", pos, to)
            pos = to

        def skip_space() -> bool:
            nonlocal buf, eof
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    advance(pos + 1)
                if pos < len(buf) or eof:
                    return pos < len(buf)
                more = fh.read(_READ_CHUNK)
                eof = not more
                buf += more

        if not skip_space() or buf[pos] != "[":
            raise UserError(f"{src.path}:{line}: expected a JSON array of objects; for one object per line "
                            "name the file .jsonl")
        advance(pos + 1)
        first = True
        while True:
            if not skip_space():
                yield BadRow(line, None, "the JSON array is never closed (file ends early)")
                return
            if buf[pos] == "]":
                return
            if not first:
                if buf[pos] != ",":
                    yield BadRow(line, None, f"expected ',' or ']' between elements, found {buf[pos]!r}; "
                                 "the rest of the file is unreadable")
                    return
                advance(pos + 1)
                if not skip_space():
                    yield BadRow(line, None, "the JSON array is never closed (file ends early)")
                    return
            first = False
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if eof or len(buf) - pos > 4 * MAX_CELL_CHARS:
                        why = exc.msg if eof else f"element exceeds {4 * MAX_CELL_CHARS:,} characters"
                        yield BadRow(line, None, f"invalid JSON ({why}); the rest of the file is unreadable")
                        return
                    more = fh.read(_READ_CHUNK)
                    eof = not more
                    buf = buf[pos:] + more
                    pos = 0
            start = line
            raw = buf[pos:end]
            advance(end)
            if pos > _READ_CHUNK:
                buf = buf[pos:]
                pos = 0
            yield _object_row(start, obj, raw, seen, src, "expected each element of the array to be an object")
