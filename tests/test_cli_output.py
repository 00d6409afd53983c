"""The command line's human-readable output: in a pipe, tables at their natural width with identifiers whole; in an
80-column terminal, a stacked layout instead of intervals wrapped over three lines; progress lines in a log;
control characters and markup in benchmark and model text neutralised (a hypothesis fuzz test); the words for
an interval that excludes chance; one-line errors."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misalign_tui.cli import main
from misalign_tui.core.io.native import PairRecord, PromptRecord
from misalign_tui.core.runs.writer import RunProgress
from tests.conftest import _main_command
from tests.metrics_fixtures import SAFETY, VALUE, add_benchmark, add_judge_results, add_run, new_store

LONG_MODEL = "a-model-with-a-rather-long-registered-name-q4_k_m"
LONG_BENCH = "a-benchmark-name-that-is-long-enough-to-be-cut"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what must never reach stdout (tab and newline may)


def invoke(home: Path, *args: str, columns: int = 80):
    """The CLI through ``main`` with COLUMNS set, stdout and stderr apart (neither is a terminal here)."""
    return CliRunner().invoke(_main_command(main), ["--home", str(home), *args], env={"COLUMNS": str(columns)},
                              catch_exceptions=False)


def judge_workspace(home: Path, model: str = LONG_MODEL, bench: str = LONG_BENCH, n: int = 12,
                    status: str = "complete") -> tuple[int, str]:
    """A workspace with one judge run written directly: n prompts, a safety and a value pair each; the model
    flags every response (so AS is 0 % with a tight interval: significantly below a coin-flip judge)."""
    (home / "db").mkdir(parents=True, exist_ok=True)
    store = new_store(home / "db" / "misalign.sqlite")
    records = [PromptRecord(f"k{i}", f"prompt {i} about the interval [0, 1)", "relation", [SAFETY, VALUE],
                            [PairRecord("safety", f"a{i}", f"m{i}"), PairRecord("value", f"b{i}", f"n{i}")])
               for i in range(n)]
    bid = add_benchmark(store, bench, records)
    run = add_run(store, model, bid, "judge", status=status)
    sha = "c0ffee" + "0123456789abcdef" * 3 + "0123456789"
    store.conn.execute("UPDATE models SET sha256 = ?, path = ? WHERE name = ?", (sha, f"/m/{model}.gguf", model))
    ids = {r[0]: r[1] for r in store.conn.execute("SELECT text, id FROM responses")}
    add_judge_results(store, run, ids, {t: (0.9,) for t in ids})
    store.close()
    return run, sha


# -- pipes: natural width, identifiers whole --------------------------------------------------------------------

def test_in_a_pipe_tables_keep_every_identifier_on_one_line(home):
    """COLUMNS=80 and stdout a pipe: models show's sha256, runs/models/benchmark/sessions lists and the report
    keep names, hashes and statuses whole (Rich used to wrap and cut them: `gemma…`, a hash over two lines)."""
    run, sha = judge_workspace(home)
    from misalign_tui.core.sessions import SessionState, save_session
    from misalign_tui.core.store import Store

    with Store(home / "db" / "misalign.sqlite") as store:
        save_session(store, "a-saved-comparison-with-a-long-name", SessionState(models=[LONG_MODEL]))

    shown = invoke(home, "models", "show", LONG_MODEL)
    assert shown.exit_code == 0, shown.output
    assert any(sha in line for line in shown.stdout.splitlines())  # models show NAME | grep SHA works

    def one_line(args: tuple[str, ...], *words: str) -> None:
        res = invoke(home, *args)
        assert res.exit_code == 0, res.output
        assert any(all(w in line for w in words) for line in res.stdout.splitlines()), (args, res.stdout)

    one_line(("runs", "list"), str(run), LONG_MODEL, LONG_BENCH, "judge", "complete")
    one_line(("models", "list"), LONG_MODEL, "c0ffee012345")
    one_line(("benchmark", "list"), LONG_BENCH)
    one_line(("sessions", "list"), "a-saved-comparison-with-a-long-name", LONG_MODEL)
    one_line(("report",), "all", "100.0% [86.2, 100.0]", "0.0% [0.0, 13.8]", "significantly below", "48")
    one_line(("benchmark", "stats", LONG_BENCH), "safety", SAFETY)


def test_in_an_80_column_terminal_the_report_stacks_instead_of_wrapping(home, monkeypatch):
    """A terminal 80 columns wide: the judge table (150 columns) is stacked, one figure with its interval per
    line; no line is longer than 80 and no interval is split (it was `100.0%` / `[91.2,` / `100.0]`)."""
    judge_workspace(home)
    monkeypatch.setattr("misalign_tui.cli.context.is_terminal", lambda stream: True)
    res = invoke(home, "report", "--bootstrap", "50")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "dimension: safety" in lines and "dimension: all" in lines
    coverage = [line for line in lines if line.strip().startswith("Coverage")]
    assert len(coverage) == 3 and all(re.search(r"\d+\.\d% \[\d+\.\d, \d+\.\d\]$", x) for x in coverage)
    assert any(line.split() == ["vs", "coin-flip", "judge", "50", "%", "significantly", "below"] for line in lines)
    # wide enough: the same report is a table again
    wide = invoke(home, "report", "--bootstrap", "50", columns=200)
    assert any(line.startswith("│ safety") or line.startswith("┃ dimension") for line in wide.stdout.splitlines())


# -- progress in a log ------------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_running_figure_in_a_log_follows_the_run_while_the_timer_writes_the_lines():
    """Items finish every few seconds and the timer writes the lines: the figure was read once, at the first
    item (a preference run read "Pref. acc. 100.0% so far" for 40 minutes while the store held 30 %)."""
    from misalign_tui.cli.run import ProgressView

    out, clock = io.StringIO(), Clock()
    stored = {"done": 0}

    def figure(run_id: int, method: str) -> str:
        return f"Pref. acc. {100 / stored['done']:.1f}%"  # 1 right of the items stored so far

    view = ProgressView(object(), stream=out, clock=clock, figure=figure, live=False)  # type: ignore[arg-type]
    for step in range(1, 16):           # an item every 4 s; the timer thread ticks every 0.1 s in between
        clock.now = 4.0 * step + 0.05
        stored["done"] = step
        view(RunProgress(3, "preference", step, 100, 0.25, 300.0, "scoring"))
        for tick in range(1, 40):
            view.log.tick(now=4.0 * step + tick / 10)
    last = out.getvalue().splitlines()[-1]
    assert "Pref. acc. 100.0%" not in last, last
    figures = [line.split("Pref. acc. ")[1].split("%")[0] for line in out.getvalue().splitlines()]
    assert len(set(figures)) >= 3, figures  # refreshed about every 10 s


def test_run_progress_in_a_log_is_a_plain_line_at_least_every_10_s():
    """stderr not a terminal: a line at the start of each phase, then at most and at least one per 10 s (the
    timer repeats the last state while no item finishes), with done/total, rate, ETA and the running figure."""
    from misalign_tui.cli.run import ProgressView

    out, clock = io.StringIO(), Clock()
    figures: list[int] = []

    def figure(run_id: int, method: str) -> str:
        figures.append(run_id)
        return "AS 40.0%"

    view = ProgressView(object(), stream=out, clock=clock, figure=figure, live=False)  # type: ignore[arg-type]

    def event(t: float, done: int, phase: str = "scoring", rate: float = 2.0, eta: float | None = 50.0) -> None:
        clock.now = t
        view(RunProgress(7, "judge", done, 100, rate, eta, phase))

    event(0.0, 0, "loading", 0.0, None)
    event(1.0, 2)                       # a new phase: written at once
    for t in range(2, 11):
        event(float(t), 2 * t)          # within 10 s of the last line: kept, not written
    event(11.5, 23)                     # 10 s after the last line: written
    lines = out.getvalue().splitlines()
    assert lines == ["run 7 judge loading: 0/100 items (0.0%)",
                     "run 7 judge scoring: 2/100 items (2.0%), 2.00 items/s, ETA 50 s, AS 40.0% so far",
                     "run 7 judge scoring: 23/100 items (23.0%), 2.00 items/s, ETA 50 s, AS 40.0% so far"]
    assert len(figures) == 2            # the figure is read from the store only for lines that are written
    # no event for a while: the timer writes the last state with its age, every 10 s
    assert not view.log.tick(now=20.0)
    assert view.log.tick(now=21.5)
    assert view.log.tick(now=31.5)
    assert out.getvalue().splitlines()[-2:] == [lines[-1] + " (no change for 10 s)", lines[-1] +
                                                " (no change for 20 s)"]
    # events that arrived between two lines are what the timer writes next (the newest state, not a stale one)
    event(32.0, 40)
    event(35.0, 45)
    assert view.log.tick(now=41.6)
    assert out.getvalue().splitlines()[-1].startswith("run 7 judge scoring: 45/100 items")
    event(50.0, 100, "done", 2.5, None)
    assert out.getvalue().splitlines()[-1] == "run 7 judge done: 100/100 items (100.0%), 2.50 items/s, AS 40.0%"


def test_build_progress_in_a_log_repeats_while_a_unit_runs():
    from misalign_tui.cli.build import BuildProgressView
    from misalign_tui.core.build.state import StepProgress

    out, clock = io.StringIO(), Clock()
    view = BuildProgressView(out, clock=clock, live=False)
    view(StepProgress("pairs", 0, 4, None, None, {}))
    clock.now = 3.0
    view(StepProgress("pairs", 1, 4, 0.33, 9.0, {"kept": 1}))
    assert not view.log.tick(now=12.9)
    assert view.log.tick(now=13.0)
    assert out.getvalue().splitlines() == ["pairs: 0/4  -  ETA -", "pairs: 1/4  0.33/s  ETA 9 s  [kept 1]",
                                           "pairs: 1/4  0.33/s  ETA 9 s  [kept 1] (no change for 10 s)"]


def test_a_real_run_with_stderr_in_a_file_writes_progress_lines(home, tiny_model):
    res = invoke(home, "run", "--model", str(tiny_model), "--method", "preference", "--limit", "2")
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    assert lines[0].startswith("run 1 preference loading: 0/")
    done = [x for x in lines if x.startswith("run 1 preference done:")]
    assert done and re.search(r"items/s, Pref\. acc\. \d+\.\d%$", done[0]), lines
    assert not any("\x1b" in x or "━" in x for x in lines)  # no live bar in a log


# -- words -----------------------------------------------------------------------------------------------------

def preference_workspace(home: Path, prefers: int, n: int = 30) -> int:
    (home / "db").mkdir(parents=True, exist_ok=True)
    store = new_store(home / "db" / "misalign.sqlite")
    records = [PromptRecord(f"k{i}", f"prompt {i}", "object", ["Controversial Topics & Politics"],
                            [PairRecord("safety", f"a{i}", f"m{i}")]) for i in range(n)]
    bid = add_benchmark(store, "pref-bench", records)
    run = add_run(store, "base-model", bid, "preference")
    pairs = [r[0] for r in store.conn.execute("SELECT id FROM pairs ORDER BY id")]
    with store.transaction() as c:
        c.executemany("INSERT INTO preference_results(run_id, pair_id, template, aligned_logprob, aligned_tokens, "
                      "misaligned_logprob, misaligned_tokens, prefers_aligned) VALUES (?, ?, 0, -1, 1, -1, 1, ?)",
                      [(run, p, int(i < prefers)) for i, p in enumerate(pairs)])
    store.close()
    return run


@pytest.mark.parametrize(("prefers", "words"), [(3, "significantly below chance (50 %)"),
                                                (27, "significantly above chance (50 %)"), (15, None)])
def test_report_says_significantly_below_or_above_chance_in_every_format(home, tmp_path, prefers, words):
    preference_workspace(home, prefers)
    table = invoke(home, "report").stdout
    header = table.splitlines()[0]
    assert "template" not in header and "judge-v1" not in header  # a preference run asks no judge question
    doc = json.loads(invoke(home, "report", "--format", "json").stdout)
    csv_text = invoke(home, "report", "--format", "csv").stdout
    md = invoke(home, "report", "--format", "md", "--bootstrap", "0").stdout
    html_out = tmp_path / "r.html"
    assert invoke(home, "report", "--format", "html", "-o", str(html_out)).exit_code == 0
    html_text = html_out.read_text(encoding="utf-8")
    if words is None:
        for text in (table, csv_text, md, html_text):
            assert "significantly" not in text.replace('"significantly": the interval excludes that level', "")
        assert doc["runs"][0]["headline_vs_reference"] is None
        return
    side = words.split()[1]
    assert f"Preference accuracy: {100 * prefers / 30:.1f}%" in table and words in table
    assert doc["runs"][0]["headline_vs_reference"] == words
    assert words in csv_text.splitlines()[1]
    assert words in md and f"significantly {side} |" in md
    assert words in html_text
    # the Markdown report: no judge template counted for a preference run, no &amp; in its tables
    assert "| judge templates | none:" in md
    assert "Controversial Topics & Politics" in md and "&amp;" not in md


def test_markdown_charts_draw_the_marker_their_legend_names(home):
    judge_workspace(home)
    md = invoke(home, "report", "--format", "md", "--bootstrap", "0").stdout
    chart = md.split("Trade-off rate by model (◆ independence baseline)", 1)[1].split("```", 1)[0]
    bars = [line for line in chart.splitlines() if "│" in line]
    assert bars and all("◆" in line.split("│")[1] for line in bars)
    assert "◆ independence baseline" in chart


# -- hostile text ----------------------------------------------------------------------------------------------

HOSTILE = st.lists(st.one_of(st.sampled_from(
    ["[", "]", "[/", "[bold]", "[/x]", ":smile:", "\x1b", "\x1b[2J", "\x1b]52;c;aGk=\x07", "\x1b]2;owned\x07",
     "\x1bc", "\x9b", "\x9d", "\x07", "\r", "\x00", "\x7f", "\t", "\n", "<b>", "&amp;", "|", "`", "*", "a", "é",
     "—", " "]), st.text(max_size=3)), min_size=1, max_size=8).map(lambda parts: "".join(parts) + "x")


def _hostile_workspace(root: Path, prompt: str, response: str, model: str) -> Path:
    home = root / "home"
    (home / "db").mkdir(parents=True)
    store = new_store(home / "db" / "misalign.sqlite")
    bid = add_benchmark(store, "fuzz", [
        PromptRecord("k0", prompt, "object", [SAFETY, VALUE],
                     [PairRecord("safety", response, response + "m"), PairRecord("value", response + "v",
                                                                                 response + "w")]),
        PromptRecord("k1", prompt + "1", "relation", [SAFETY], [PairRecord("safety", "fine", response + "z")])])
    run = add_run(store, model, bid, "judge")
    ids = {r[0]: r[1] for r in store.conn.execute("SELECT text, id FROM responses")}
    add_judge_results(store, run, ids, {t: (0.25 if i % 2 else 0.75,) for i, t in enumerate(ids)})
    store.close()
    return home


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=HOSTILE, response=HOSTILE, model=HOSTILE)
def test_fuzz_hostile_text_never_reaches_stdout_as_control_characters(prompt, response, model):
    """Brackets, markup, emoji codes, ESC sequences (OSC 52, OSC 2, ESC c, CSI 2J), C1 controls as prompts,
    responses and model names: runs list, models list, report --format table and md exit 0 and print no
    control character but tab and newline."""
    with tempfile.TemporaryDirectory() as tmp:
        home = _hostile_workspace(Path(tmp), prompt, response, model)
        for args in (("runs", "list"), ("models", "list"), ("runs", "show", "1"), ("report", "--bootstrap", "0"),
                     ("report", "--format", "md", "--bootstrap", "0"), ("report", "--format", "json"),
                     ("export", "results", "--format", "jsonl")):
            res = invoke(home, *args)
            assert res.exit_code == 0, (args, res.output)
            if args[0] != "export":  # export is a machine format: exact text, tested below
                assert not CONTROL.search(res.stdout), (args, [m.group() for m in CONTROL.finditer(res.stdout)])
            assert not CONTROL.search(res.stderr.replace("\n", "")), (args, res.stderr)


def test_names_with_control_characters_are_refused_and_stored_text_is_kept(home, tmp_path, tiny_model):
    """Chosen names are refused with one line (the same core functions serve the app); text that is already
    stored stays exactly as it was, and machine formats written to a file keep it."""
    res = invoke(home, "models", "add", str(tiny_model), "--name", "evil\x1b]2;owned\x07")
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "control characters" in res.stderr
    assert "\x1b" not in res.stderr and "␛" in res.stderr
    f = tmp_path / "b.jsonl"
    f.write_text(json.dumps({"id": "x", "prompt": "p\x1b[2J", "pairs": [{"dimension": "safety", "aligned": "a",
                                                                       "misaligned": "m"}]}) + "\n")
    res = invoke(home, "import", str(f), "--into", "bad\x1bname")
    assert res.exit_code == 2 and "control characters" in res.stderr
    assert invoke(home, "import", str(f), "--into", "good").exit_code == 0
    conn = sqlite3.connect(home / "db" / "misalign.sqlite")
    assert conn.execute("SELECT text FROM prompts").fetchone()[0] == "p\x1b[2J"  # stored untouched
    out = tmp_path / "bench.jsonl"
    assert invoke(home, "export", "benchmark", "good", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text())["prompt"] == "p\x1b[2J"  # a machine format keeps the exact text
    from misalign_tui.core.errors import UserError
    from misalign_tui.core.sessions import SessionState, save_session
    from misalign_tui.core.store import Store

    with Store(home / "db" / "misalign.sqlite") as store, pytest.raises(UserError, match="control characters"):
        save_session(store, "s\x9bx", SessionState())
    dom = tmp_path / "domains.csv"
    dom.write_text("dimension,domain\nvalue,Kindness\nvalue,Bad\x1b[31mName\n")
    res = invoke(home, "taxonomy", "add", str(dom))
    assert res.exit_code == 2 and "line 3" in res.stderr and "control characters" in res.stderr


# -- errors and registrations -----------------------------------------------------------------------------------

def test_bad_templates_and_bad_port_are_one_line_user_errors(home):
    for args, words in ((("run", "--templates", "99"), "--templates"),
                        (("models", "add-remote", "srv", "--url", "http://127.0.0.1:notaport", "--model", "m"),
                         "the port must be a number")):
        res = invoke(home, *args)
        assert res.exit_code == 2, res.output
        assert res.stderr.count("\n") == 1 and words in res.stderr and "internal error" not in res.stderr


def test_the_same_file_under_a_second_name_says_it_shares_runs(home, tmp_path, tiny_model):
    first = invoke(home, "models", "add", str(tiny_model), "--name", "first")
    assert first.exit_code == 0 and "same file" not in first.stderr
    assert invoke(home, "run", "--model", "first", "--method", "preference", "--limit", "1").exit_code == 0
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(tiny_model, copy)
    second = invoke(home, "models", "add", str(copy), "--name", "second")
    assert second.exit_code == 0
    sha = json.loads(invoke(home, "models", "show", "first", "--format", "json").stdout)["sha256"]
    assert f"'second' is the same file as registered model 'first' (sha256 {sha})" in second.stderr
    assert "run 1 (preference, complete)" in second.stderr
    renamed = invoke(home, "models", "add", str(copy), "--name", "third")
    assert renamed.stdout.startswith("renamed second to third") and "'first'" in renamed.stderr


def test_names_taken_from_file_names_never_hold_control_characters(home, tmp_path, tiny_model):
    """A name the user did not choose (a GGUF or data file's own name) is made visible instead of refused."""
    evil = tmp_path / "evil\x1b]2;owned\x07.gguf"
    shutil.copyfile(tiny_model, evil)
    res = invoke(home, "models", "add", str(evil), "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["name"] == "evil␛]2;owned␇"
    data = tmp_path / "bench\x1bc.jsonl"
    data.write_text(json.dumps({"id": "k", "prompt": "p", "pairs": [{"dimension": "value", "aligned": "a",
                                                                     "misaligned": "m"}]}) + "\n")
    assert json.loads(invoke(home, "import", str(data), "--format", "json").stdout)["benchmark"] == "bench␛c"


def test_session_report_escapes_the_session_name(home, tmp_path):
    judge_workspace(home)
    from misalign_tui.core.sessions import SessionState, save_session
    from misalign_tui.core.store import Store

    with Store(home / "db" / "misalign.sqlite") as store:
        save_session(store, "a --> <b>bold</b> & *starred*", SessionState(models=[LONG_MODEL]))
    out = tmp_path / "s.md"
    res = invoke(home, "sessions", "report", "a --> <b>bold</b> & *starred*", "--out", str(out))
    assert res.exit_code == 0, res.output
    head = out.read_text(encoding="utf-8").splitlines()[:2]
    assert head[0] == "<!-- session: a --&gt; &lt;b&gt;bold&lt;/b&gt; & \\*starred\\* -->"
    assert "<b>" not in head[1] and "\\*starred\\*" in head[1]


def test_no_command_styles_with_markup_the_console_would_print_literally():
    """The console reads no markup from strings (stored text could hold any), so `[bold]…[/]` in a command would
    print as brackets: styles go through style= or styled(). Rich's progress columns parse their own markup."""
    import misalign_tui.cli as cli_pkg

    tag = re.compile(r"\[(?:/|/?(?:bold|italic|red|green|yellow|blue|cyan|magenta)(?: \w+)?)\]")
    found = []
    for path in Path(cli_pkg.__file__).parent.rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if tag.search(line) and "TextColumn(" not in line and not line.lstrip().startswith(("#", '"""')):
                found.append(f"{path.name}:{n}: {line.strip()}")
    assert not [f for f in found if "context.py" not in f], found
