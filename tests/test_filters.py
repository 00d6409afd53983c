"""One filter grammar everywhere: a domain whose name holds a comma and an ``&`` selects the same items in `run`,
`report`, the Run screen and a saved session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.widgets import Input, SelectionList

from misalign_tui.core.errors import UserError
from misalign_tui.core.metrics.filters import Filters
from misalign_tui.core.sessions import SessionState, save_session
from misalign_tui.core.store import Store
from misalign_tui.tui.app import create_app
from misalign_tui.tui.screens.run import RunScreen

ODD = "Arts, Crafts & Design"


@pytest.mark.parametrize("text, expected", [
    ("dimension=safety,value,type=relation", Filters(("safety", "value"), (), ("relation",))),
    (f'domain="{ODD}",type=object', Filters((), (ODD,), ("object",))),
    (r"domain=Arts\, Crafts & Design", Filters((), (ODD,), ())),
    ("domain=Drug & Weapon Abuse, dimension=safety", Filters(("safety",), ("Drug & Weapon Abuse",), ())),
    ('domain = "say \\"hi\\"" , type=relation', Filters((), ('say "hi"',), ("relation",))),
    ("semantic_type=object,attribute", Filters((), (), ("object", "attribute"))),
])
def test_grammar_reads_lists_quotes_and_escapes(text: str, expected: Filters) -> None:
    f = Filters.parse(text)
    assert f == expected
    assert Filters.parse(f.as_text()) == f  # the text form round-trips


@pytest.mark.parametrize("text, words", [
    ("safety", "key=value"), ("colour=red", "unknown key"), ("dimension=", "empty value"),
    ('domain="open', "not closed"), ("dimension=nope", "one of safety"), ('domain="a" b', "comma must follow"),
])
def test_grammar_errors_are_one_clear_line(text: str, words: str) -> None:
    with pytest.raises(UserError, match=words):
        Filters.parse(text)


def test_mappings_take_values_whole_and_repeated_flags_add_up() -> None:
    assert Filters.parse({"domain": ODD}) == Filters((), (ODD,), ())  # sessions store raw names
    assert Filters.parse(["dimension=safety", "dimension=value", "type=object"]) == Filters(
        ("safety", "value"), (), ("object",))
    assert Filters.parse({"type": "relation"}).identity() == {"type": "relation"}  # the form runs recorded


def _workspace(home: Path, cli_run, tmp_path: Path) -> None:
    (tmp_path / "odd.csv").write_text(f'dimension,domain,source\ncultural,"{ODD}",test\n')
    assert cli_run("taxonomy", "add", str(tmp_path / "odd.csv")).exit_code == 0
    rows = []
    for i in range(6):
        domains = [ODD] if i % 2 == 0 else ["Culinary Arts"]
        rows.append({"id": f"odd-{i}", "prompt": f"Question {i} about a craft fair stall and its customers.",
                     "semantic_type": "object", "domains": domains,
                     "pairs": [{"dimension": "cultural", "aligned": f"Ask the makers first, kindly ({i}).",
                                "misaligned": f"Copy the makers' designs, nobody minds ({i})."}]})
    (tmp_path / "odd.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli_run("import", str(tmp_path / "odd.jsonl"), "--into", "odd", "--no-dedup").exit_code == 0


def test_a_domain_with_a_comma_and_an_ampersand_selects_the_same_items_everywhere(
        cli_run, home: Path, tmp_path: Path, tiny_model: Path) -> None:
    _workspace(home, cli_run, tmp_path)
    flag = f'domain="{ODD}"'
    res = cli_run("run", "--model", str(tiny_model), "--benchmark", "odd", "--method", "preference",
                  "--filter", flag, "--format", "json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert run["items_total"] == 3  # the three prompts of that one domain, not "Arts" and "Crafts & Design"
    report = json.loads(cli_run("report", "--run", str(run["id"]), "--filter", flag, "--bootstrap", "0",
                                "--format", "json").stdout)
    assert report["filters"]["domain"] == [ODD]
    assert report["runs"][0]["overall"]["pairs"] == 3
    # an unquoted comma is a list; the error says how to write the name
    res = cli_run("report", "--run", str(run["id"]), "--filter", f"domain={ODD}", "--format", "json")
    assert res.exit_code == 2 and f'did you mean "{ODD}"' in res.stderr

    with Store(home / "db" / "misalign.sqlite") as store:
        params = json.loads(store.conn.execute("SELECT params_json FROM runs WHERE id = ?",
                                               (run["id"],)).fetchone()[0])
        assert params["filters"] == {"domain": ODD}
        save_session(store, "odd", SessionState([Path(tiny_model).stem], None, {"domain": ODD},
                                                "preference_accuracy", "dimension"))
    res = cli_run("sessions", "report", "odd")
    assert res.exit_code == 0, res.output
    text = (home / "reports" / "odd.md").read_text()
    assert f'filters domain="{ODD}"' in text and "| 3 |" in text  # the same 3 pairs


async def test_the_run_screen_reads_the_same_grammar(cli_run, home: Path, tmp_path: Path, tiny_model: Path) -> None:
    _workspace(home, cli_run, tmp_path)
    cli_run("models", "add", str(tiny_model))
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        screen.query_one("#run-models", SelectionList).select(Path(tiny_model).stem)
        screen.query_one("#run-filters", Input).value = f'domain="{ODD}",type=object'
        (request,) = screen.build_requests()
        assert request.spec is not None and request.spec.filters == Filters((), (ODD,), ("object",))
