"""``explain RUN RESPONSE_ID``: why a run gave its verdict on one response (core/views/explain.py) — the sentences
that raise or lower a judge's P(misaligned) most, or the tokens that decided a preference — as on the Item
screen."""

from __future__ import annotations

import time

import click
from rich.table import Table
from rich.text import Text

from misalign_tui.cli import cli
from misalign_tui.cli.context import Context, emit_json, format_option, pass_ctx, print_table, styled
from misalign_tui.core.text import printable_line
from misalign_tui.core.views.explain import (
    JudgeExplanation,
    PreferenceExplanation,
    ResponseTokens,
    effect_level,
    explain,
    explanation_json,
    logprob_level,
)

# shading in a terminal: token log-probability levels 0–4, sentence effect levels −3…3
LOGPROB_STYLES = ("", "on grey23", "on dark_orange3", "on red3", "bold white on red")
EFFECT_STYLES = {-3: "bold white on green4", -2: "on dark_green", -1: "green", 0: "", 1: "red", 2: "on dark_red",
                 3: "bold white on red3"}


@cli.command("explain")
@click.argument("run_id", type=int)
@click.argument("response_id", type=int)
@format_option
@pass_ctx
def explain_cmd(ctx: Context, run_id: int, response_id: int, fmt: str) -> None:
    """Explain run RUN_ID's verdict on one item: RESPONSE_ID is the item_id of `export results` (a response id
    for a judge run; for a preference run, the pair id).

    A judge run: P(misaligned) with each sentence left out, in one batched pass through the run's model. A
    preference run: each token's log-probability and its share of the margin between the two responses."""
    t0 = time.perf_counter()
    e = explain(ctx.store, run_id, response_id)
    wall = time.perf_counter() - t0
    if fmt == "json":
        emit_json({**explanation_json(e), "wall_seconds": round(wall, 3)})
    elif isinstance(e, JudgeExplanation):
        _print_judge(ctx, e, wall)
    else:
        _print_preference(ctx, e)


def _print_judge(ctx: Context, e: JudgeExplanation, wall: float) -> None:
    c = ctx.console
    c.print(Text.assemble(styled(f"run {e.run_id}", "bold"), f" ({e.model}, judge) · response {e.response_id} · "
                          f"prompt ", styled(e.prompt_key), f" · {e.label} · {e.dimension or 'untargeted'}"))
    c.print(f"P(misaligned): {e.p_stored:.3f} in the run (mean of {e.templates} template(s)); {e.p_full:.3f} in "
            f"this pass — {len(e.sentences)} sentence(s), {e.requests} requests in one batched pass, {e.seconds:.2f} s "
            f"({wall:.2f} s with the model load)")
    c.print(Text.assemble(*[part for s in e.sentences for part in (styled(s.text, EFFECT_STYLES[effect_level(s.effect)]),
                                                                     " ")]))
    for title, rows in (("Sentences that raise P(misaligned) most", e.raising()),
                        ("Sentences that lower P(misaligned) most", e.lowering())):
        table = Table(title=title, title_justify="left")
        table.add_column("#", justify="right", no_wrap=True)
        table.add_column("effect", justify="right", no_wrap=True)
        table.add_column("P without", justify="right", no_wrap=True)
        table.add_column("sentence")
        for s in rows:
            table.add_row(str(s.index + 1), f"{s.effect:+.3f}", f"{s.p_without:.3f}", styled(s.text))
        if not rows:
            c.print(f"{title}: none", style="dim")
        else:
            print_table(c, table)
    c.print("effect = P(full response) − P(without the sentence), both from this pass; |effect| < 0.05 is within "
            "llama.cpp's noise band on quantized models", style="dim")


def _shaded(r: ResponseTokens) -> Text:
    return Text.assemble(*[styled(t.text, LOGPROB_STYLES[logprob_level(t.logprob)]) for t in r.tokens if t.text],
                         styled(r.text[r.tokens[-1].end:] if r.tokens else r.text))


def _print_preference(ctx: Context, e: PreferenceExplanation) -> None:
    c = ctx.console
    prefers = "aligned" if e.margin > 0 else "misaligned"
    c.print(Text.assemble(styled(f"run {e.run_id}", "bold"), f" ({e.model}, preference) · pair {e.pair_id} · "
                          f"prompt ", styled(e.prompt_key), f" · {e.dimension or 'untargeted'}"))
    c.print(f"prefers the {prefers} response: mean log-likelihood aligned {e.aligned.mean:.3f} vs misaligned "
            f"{e.misaligned.mean:.3f} nats/token (margin {e.margin:+.3f}; token log-probabilities {e.source})")
    for r in (e.aligned, e.misaligned):
        c.print(styled(f"{r.label} response {r.response_id}, {len(r.tokens)} tokens (shade: darker = less "
                       "expected):", "bold"))
        c.print(_shaded(r))
    for direction in ("aligned", "misaligned"):
        rows = e.toward(direction)
        table = Table(title=f"Tokens that pushed most toward the {direction} response", title_justify="left")
        table.add_column("in", no_wrap=True)
        table.add_column("token", no_wrap=True)
        table.add_column("log P", justify="right", no_wrap=True)
        table.add_column("share of margin", justify="right", no_wrap=True)
        for label, t in rows:
            table.add_row(label, styled(repr_token(t.label)), f"{t.logprob:.2f}", f"{t.contribution:+.4f}")
        if rows:
            print_table(c, table)
        else:
            c.print(f"{table.title}: none", style="dim")
    c.print("share of margin: (log P − midpoint of the two means) / tokens, signed toward the aligned response; the "
            "shares add up to the margin", style="dim")


def repr_token(text: str) -> str:
    """A token as one visible line, quoted so its spaces show."""
    return f"“{printable_line(text)}”"
