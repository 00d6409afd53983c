"""``models``: the registry of GGUF files and remote servers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
from misalign_tui.core.models.quantize import QuantizeProgress, parse_targets, quantize_model
from misalign_tui.core.models.registry import (
    discover,
    lineage_order,
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
    """Every registered model, quantization variants under their parent; unusable files with the reason."""
    discover(ctx.store, ctx.workspace.models_dir)
    grouped = lineage_order(list_models(ctx.store))
    if fmt == "json":
        by_sha = {m.sha256: m.name for m, _ in grouped if m.sha256}
        emit_json([{**m.as_dict(), "parent": by_sha.get(m.parent_sha256 or ""), "depth": depth}
                   for m, depth in grouped])
        return
    if not grouped:
        ctx.console.print("no models yet: misalign-tui init (assembles the default model) or models add PATH")
        return
    table = Table(title=f"Models in {ctx.workspace.models_dir}")
    for col in ("name", "arch", "params", "quant", "bits/w", "ctx", "template", "size", "sha256", "status"):
        if col in ("name", "quant", "sha256", "status"):
            id_column(table, col)
        else:
            table.add_column(col, justify="right" if col in ("params", "bits/w", "ctx", "size") else "left")
    requantized = False
    for m, depth in grouped:
        quant = m.quantization or "-"
        if m.requantized:
            quant, requantized = quant + "†", True
        status = styled("ok") if m.usable else styled("unusable", "red")
        table.add_row((" " * (depth - 1) + "└─" if depth else "") + m.name + (" (default)" if m.is_default else ""),
                      m.architecture or "-", _params(m.parameters), quant,
                      "-" if m.bits_per_weight is None else f"{m.bits_per_weight:.2f}", str(m.context_length or "-"),
                      "chat" if m.effective_chat_template else "plain", _size(m.size), (m.sha256 or "-")[:12], status)
    notes = ["└ quantized from the model above"] if any(depth for _, depth in grouped) else []
    if requantized:
        notes.append("† requantized")
    table.caption = " · ".join([*notes, "more: models show NAME"])
    print_table(ctx.console, table)
    for m, _ in grouped:
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


class QuantizeProgressView:
    """Quantization progress on stderr: a bar per variant on a terminal, else a line every few seconds (a log)."""

    LOG_EVERY_S = 5.0

    def __init__(self, ctx: Context) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.ctx = ctx
        self.live = ctx.err.is_terminal
        self.progress = Progress(TextColumn("[bold]{task.fields[target]}[/] {task.fields[phase]}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}% tensor {task.fields[tensors]}"),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=ctx.err)
        self.tasks: dict[str, Any] = {}
        self.last: dict[str, tuple[str, float]] = {}

    def __enter__(self) -> QuantizeProgressView:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def __call__(self, ev: QuantizeProgress) -> None:
        rate = f"{ev.weights_per_s / 1e6:,.1f} M weights/s" if ev.weights_per_s else ""
        tensors = f"{ev.tensors_done}/{ev.tensors_total}"
        if self.live:
            fields = dict(target=f"{ev.target} ({ev.variant}/{ev.variants})", phase=ev.phase, tensors=tensors,
                          rate=rate)
            if ev.target not in self.tasks:
                self.tasks[ev.target] = self.progress.add_task("", total=ev.weights_total or 1, **fields)
            self.progress.update(self.tasks[ev.target], completed=ev.weights_done, **fields)
            return
        now = time.monotonic()
        phase, at = self.last.get(ev.target, ("", 0.0))
        if ev.phase != phase or now - at >= self.LOG_EVERY_S:
            self.last[ev.target] = (ev.phase, now)
            eta = f", ETA {ev.eta_s:.0f} s" if ev.eta_s is not None and ev.phase == "quantizing" else ""
            self.ctx.err.print(f"{ev.target} ({ev.variant}/{ev.variants}) → {ev.output}: {ev.phase} "
                               f"{100 * ev.fraction:.0f}%, tensor {tensors}" + (f", {rate}" if rate else "") + eta,
                               soft_wrap=True, highlight=False)


@models.command("quantize")
@click.argument("model")
@click.option("--to", "targets", multiple=True, required=True,
              help="Types to make, comma-separated or repeated: e.g. Q8_0,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K.")
@click.option("--imatrix", type=click.Path(dir_okay=False, path_type=Path),
              help="Importance matrix from llama.cpp's llama-imatrix (GGUF or .dat); needed for IQ1/IQ2 types.")
@click.option("--allow-requantize", is_flag=True,
              help="Allow an already quantized source (e.g. the default Q4_K_M); the variants are flagged.")
@click.option("--threads", type=click.IntRange(1, None), help="Quantizer threads (default: llama.cpp's, all).")
@format_option
@pass_ctx
def models_quantize(ctx: Context, model: str, targets: tuple[str, ...], imatrix: Path | None,
                    allow_requantize: bool, threads: int | None, fmt: str) -> None:
    """Make quantization variants of a local GGUF model with llama.cpp's own quantizer, into models/, each
    registered with its lineage (parent sha256, type, quantizer). Variants already made are skipped; Ctrl+C
    stops at once and leaves no partial file."""
    discover(ctx.store, ctx.workspace.models_dir)
    source = resolve_model(ctx.store, model, ctx.workspace.models_dir)
    wanted = parse_targets(targets)
    with QuantizeProgressView(ctx) as view:
        results = quantize_model(ctx.store, source, wanted, ctx.workspace.models_dir, allow_requantize=allow_requantize,
                                 imatrix=imatrix, threads=threads, progress=view)
    if fmt == "json":
        emit_json({"source": source.as_dict(), "variants": [r.as_dict() for r in results]})
        return
    for r in results:
        m = r.model
        what = (f"{m.name}: {r.target}, {_size(m.size)}, "
                f"{'-' if m.bits_per_weight is None else f'{m.bits_per_weight:.2f}'} bits/weight"
                + (", requantized" if m.requantized else ""))
        if r.skipped:
            ctx.err.print(f"already made {what} (from {source.name})", soft_wrap=True, highlight=False)
        else:
            notes = f"; {r.report['fallback_tensors']} tensor(s) needed a fallback type" \
                if r.report.get("fallback_tensors") else ""
            ctx.err.print(f"made {what} in {r.seconds:.1f} s from {source.name} → {m.path}{notes}", soft_wrap=True,
                          highlight=False)
    ctx.err.print(f"next: misalign-tui run --ladder {source.name}; then misalign-tui compare ladder {source.name}",
                  soft_wrap=True, highlight=False)
