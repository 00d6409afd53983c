"""``models``: the registry of GGUF files and remote servers."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from misalign_tui.cli import cli
from misalign_tui.cli.context import (
    Context,
    emit_json,
    format_option,
    id_column,
    pass_ctx,
    print_table,
    styled,
)
from misalign_tui.core.models.registry import (
    discover,
    list_models,
    register_file,
    register_remote,
    registered_name,
    resolve_model,
    same_file_note,
    update_model_settings,
)


def _size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"


def _params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


@cli.group()
def models() -> None:
    """List, add and inspect models."""


@models.command("list")
@format_option
@pass_ctx
def models_list(ctx: Context, fmt: str) -> None:
    """Every registered model; unusable files are listed with the reason."""
    discover(ctx.store, ctx.workspace.models_dir)
    rows = list_models(ctx.store)
    if fmt == "json":
        emit_json([m.as_dict() for m in rows])
        return
    table = Table(title=f"Models in {ctx.workspace.models_dir}")
    for col in ("name", "arch", "params", "quant", "ctx", "template", "size", "sha256", "status"):
        if col in ("name", "quant", "sha256", "status"):
            id_column(table, col)
        else:
            table.add_column(col)
    for m in rows:
        status = styled("ok") if m.usable else styled("unusable", "red")
        table.add_row(m.name + (" (default)" if m.is_default else ""), m.architecture or "-", _params(m.parameters),
                      m.quantization or "-", str(m.context_length or "-"),
                      "chat" if m.effective_chat_template else "plain", _size(m.size),
                      (m.sha256 or "-")[:12], status)
    if not rows:
        ctx.console.print("no models yet: misalign-tui init (assembles the default model) or models add PATH")
        return
    print_table(ctx.console, table)
    for m in rows:
        if not m.usable:
            ctx.console.print(styled("unusable", "red"), f"{m.name}: {m.path}: {m.error}", soft_wrap=True)


@models.command("add")
@click.argument("path", type=click.Path())
@click.option("--name", help="Name to register it under (default: the file name).")
@format_option
@pass_ctx
def models_add(ctx: Context, path: str, name: str | None, fmt: str) -> None:
    """Register a GGUF file anywhere on disk. The same file (sha256) under a second name shares its runs with
    the first (a run is identified by the file's sha256); the command says so."""
    before = registered_name(ctx.store, path)
    info = register_file(ctx.store, Path(path), name=name)
    note = same_file_note(ctx.store, info)
    if fmt == "json":
        emit_json({**info.as_dict(), "renamed_from": before if before not in (None, info.name) else None,
                   "same_file_note": note})
        return
    verb = f"renamed {before} to" if before not in (None, info.name) else "already registered:" \
        if before == info.name else "added"
    if info.usable:
        ctx.console.print(f"{verb} {info.name}: {info.architecture}, {_params(info.parameters)}, "
                          f"{info.quantization}, sha256 {info.sha256}")
    else:
        ctx.console.print(f"{verb} {info.name} as unusable: {info.error}")
    if note:
        ctx.err.print(f"note: {note}")


@models.command("show")
@click.argument("model")
@format_option
@pass_ctx
def models_show(ctx: Context, model: str, fmt: str) -> None:
    """Metadata of one model: default, a name, a path or a sha256 prefix."""
    info = resolve_model(ctx.store, model, ctx.workspace.models_dir)
    if fmt == "json":
        emit_json(info.as_dict())
        return
    table = Table(show_header=False, title=info.name, box=None, padding=(0, 2, 0, 0))
    id_column(table, "field", style="bold")
    table.add_column("value", overflow="fold")
    d = info.as_dict()
    d["parameters"] = f"{info.parameters:,}" if info.parameters else None
    d["size"] = f"{info.size:,} bytes" if info.size else None
    tmpl = info.chat_template
    d["chat_template"] = (tmpl[:200] + "…" if tmpl and len(tmpl) > 200 else tmpl) or "none (plain completion format)"
    for k, v in d.items():
        if v is not None:
            table.add_row(k, str(v))
    ctx.console.print(table)


@models.command("set")
@click.argument("model")
@click.option("--chat-template", "chat_template", help="A Jinja template FILE, or 'none' for plain completion.")
@click.option("--gpu-layers", type=int, help="Layers to offload (-1 all, 0 CPU only).")
@click.option("--threads", type=int, help="CPU threads.")
@click.option("--auto", "auto", is_flag=True, help="Reset GPU layers and threads to automatic.")
@pass_ctx
def models_set(ctx: Context, model: str, chat_template: str | None, gpu_layers: int | None, threads: int | None,
               auto: bool) -> None:
    """Per-model settings: chat template override, GPU layers, threads."""
    info = resolve_model(ctx.store, model, ctx.workspace.models_dir)
    updates: dict[str, object] = {}
    if chat_template is not None:
        if chat_template == "none":
            updates["chat_template_override"] = "none"
        elif chat_template == "auto":
            updates["chat_template_override"] = None
        else:
            p = Path(chat_template)
            try:
                updates["chat_template_override"] = p.read_text(encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(f"{p}: cannot read ({exc.strerror})", param_hint="--chat-template") from exc
    if gpu_layers is not None:
        updates["n_gpu_layers"] = gpu_layers
    if threads is not None:
        if threads < 1:
            raise click.BadParameter("must be at least 1", param_hint="--threads")
        updates["n_threads"] = threads
    if auto:
        updates.update(n_gpu_layers=None, n_threads=None)
    if not updates:
        raise click.UsageError("nothing to set: give --chat-template, --gpu-layers, --threads or --auto")
    update_model_settings(ctx.store, info.id, updates)
    ctx.err.print(f"{info.name}: updated {', '.join(updates)}")


@models.command("add-remote")
@click.argument("name")
@click.option("--url", "urls", multiple=True, required=True,
              help="Server address, e.g. http://127.0.0.1:8080 (repeat for several servers of the same model).")
@click.option("--model", "remote_model", required=True, help="The model name the server serves (its /v1/models).")
@click.option("--api-key-env", help="Name of the environment variable holding the API key (the key is never stored).")
@format_option
@pass_ctx
def models_add_remote(ctx: Context, name: str, urls: tuple[str, ...], remote_model: str, api_key_env: str | None,
                      fmt: str) -> None:
    """Register a model served by llama.cpp's server, llama-cpp-python's server or vLLM."""
    info = register_remote(ctx.store, name, list(urls), remote_model, api_key_env=api_key_env)
    if fmt == "json":
        emit_json(info.as_dict())
        return
    key = f", key from ${info.api_key_env}" if info.api_key_env else ""
    ctx.console.print(f"added {info.name}: {info.remote_model} at {info.url}{key}")
