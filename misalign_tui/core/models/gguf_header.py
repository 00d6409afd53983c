"""Read a GGUF file's header (metadata and tensor table) without loading its weights.

``gguf.GGUFReader`` builds a numpy view per array element: 26 s for the default model's 262k-token
vocabulary. This reader walks the header with ``struct`` over an mmap and skips the arrays it does not need
(about 0.2 s), and checks that the file is long enough for every tensor it declares.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

MAGIC = b"GGUF"
# GGUF value types
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
ARRAY_KEEP_LIMIT = 64  # arrays longer than this are skipped (tokenizer vocabularies); their length is kept


class GGUFError(ValueError):
    """The file is not a readable GGUF; the message says why."""


@dataclass
class GGUFHeader:
    version: int
    metadata: dict[str, object]
    array_lengths: dict[str, int]
    tensor_count: int
    parameters: int
    data_end: int  # bytes the tensors need; the file must be at least this long
    tensor_types: dict[str, int] = field(default_factory=dict)
    tensor_elements: dict[str, int] = field(default_factory=dict)  # weights per tensor (quantization progress)
    tensor_bytes: int = 0  # bytes the tensors hold, summed (bits per weight = 8 × this / parameters)

    @property
    def bits_per_weight(self) -> float | None:
        return 8 * self.tensor_bytes / self.parameters if self.parameters else None


def read_gguf_header(path: str | Path) -> GGUFHeader:
    path = Path(path)
    if path.is_dir():
        raise GGUFError("is a folder, not a GGUF file")
    size = path.stat().st_size
    if size == 0:
        raise GGUFError("empty file (0 bytes)")
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise GGUFError("not a GGUF file (bad magic bytes)")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                return _parse(mm, size)
            except (struct.error, IndexError, UnicodeDecodeError, OverflowError) as exc:
                raise GGUFError(f"truncated or damaged header ({exc})") from exc


def _parse(mm: mmap.mmap, size: int) -> GGUFHeader:
    pos = 4
    (version,) = struct.unpack_from("<I", mm, pos)
    pos += 4
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    tensor_count, kv_count = struct.unpack_from("<QQ", mm, pos)
    pos += 16
    if tensor_count > 1_000_000 or kv_count > 1_000_000:
        raise GGUFError("implausible header counts; the file is damaged")

    def read_str(p: int) -> tuple[str, int]:
        (n,) = struct.unpack_from("<Q", mm, p)
        p += 8
        if p + n > size:
            raise GGUFError("truncated header (a string runs past the end of the file)")
        return bytes(mm[p:p + n]).decode("utf-8"), p + n

    def read_value(vtype: int, p: int, keep: bool) -> tuple[object, int]:
        if vtype in _SCALARS:
            fmt = _SCALARS[vtype]
            return struct.unpack_from(fmt, mm, p)[0], p + struct.calcsize(fmt)
        if vtype == _STRING:
            return read_str(p)
        if vtype == _ARRAY:
            (etype,) = struct.unpack_from("<I", mm, p)
            (n,) = struct.unpack_from("<Q", mm, p + 4)
            p += 12
            if etype in _SCALARS and not (keep and n <= ARRAY_KEEP_LIMIT):
                p += n * struct.calcsize(_SCALARS[etype])
                if p > size:
                    raise GGUFError("truncated header (an array runs past the end of the file)")
                return n, p
            items = []
            for _ in range(n):
                v, p = read_value(etype, p, keep and n <= ARRAY_KEEP_LIMIT)
                if keep and n <= ARRAY_KEEP_LIMIT:
                    items.append(v)
            return (items if keep and n <= ARRAY_KEEP_LIMIT else n), p
        raise GGUFError(f"unknown metadata value type {vtype}")

    metadata: dict[str, object] = {}
    array_lengths: dict[str, int] = {}
    for _ in range(kv_count):
        key, pos = read_str(pos)
        (vtype,) = struct.unpack_from("<I", mm, pos)
        pos += 4
        value, pos = read_value(vtype, pos, True)
        if vtype == _ARRAY and isinstance(value, int):
            array_lengths[key] = value
        else:
            metadata[key] = value
            if vtype == _ARRAY:
                array_lengths[key] = len(value)  # type: ignore[arg-type]

    parameters = 0
    data_needed = 0
    tensor_types: dict[str, int] = {}
    tensor_elements: dict[str, int] = {}
    tensor_bytes = 0
    for _ in range(tensor_count):
        name, pos = read_str(pos)
        (n_dims,) = struct.unpack_from("<I", mm, pos)
        pos += 4
        if n_dims > 8:
            raise GGUFError(f"tensor {name}: implausible {n_dims} dimensions; the file is damaged")
        dims = struct.unpack_from(f"<{n_dims}Q", mm, pos)
        pos += 8 * n_dims
        ttype, offset = struct.unpack_from("<IQ", mm, pos)
        pos += 12
        n = 1
        for d in dims:
            n *= d
        parameters += n
        try:
            block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise GGUFError(f"tensor {name}: unknown tensor type {ttype}") from None
        data_needed = max(data_needed, offset + n // block * type_size)
        tensor_types[name] = ttype
        tensor_elements[name] = n
        tensor_bytes += n // block * type_size
    raw_alignment = metadata.get("general.alignment", 32)
    if not isinstance(raw_alignment, int) or isinstance(raw_alignment, bool) or raw_alignment < 1:
        raise GGUFError(f"general.alignment = {raw_alignment!r}: must be a positive integer")
    alignment = raw_alignment
    data_start = (pos + alignment - 1) // alignment * alignment
    data_end = data_start + data_needed
    if data_end > size:
        raise GGUFError(f"truncated: the tensors need {data_end:,} bytes, the file has {size:,}")
    return GGUFHeader(version, metadata, array_lengths, tensor_count, parameters, data_end, tensor_types,
                      tensor_elements, tensor_bytes)
