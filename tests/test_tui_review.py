"""The Review screen driven by keys through Pilot, on the app the CLI opens: 20 items reviewed and every decision
stored with the reviewer, what was shown and the time; quitting mid-queue resumes where it stopped; undo; a
flag with its note; the verdict toggle recorded; a reviewer name with control characters refused. Snapshots at
80×24 and 120×40 on a workspace under tmp_path."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from textual.widgets import Input, Static

from misalign_tui.tui.app import create_app
from misalign_tui.tui.screens.dialogs import NamePrompt
from misalign_tui.tui.screens.review import ReviewScreen
from tests.review_fixtures import gold_sample, seed_workspace


async def _settle(pilot) -> None:
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def _open_review(pilot, name: str | None = "Ana Lima") -> ReviewScreen:
    await pilot.press("V")
    await _settle(pilot)
    if name is not None:
        assert isinstance(pilot.app.screen, NamePrompt)
        await pilot.press(*name, "enter")
        await _settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ReviewScreen)
    while screen.queue is None or screen.writer is None:
        await pilot.pause(0.01)
    return screen


def _gold(db: Path) -> dict[int, str]:
    conn = sqlite3.connect(db)
    out = dict(conn.execute("SELECT id, label FROM review_responses"))
    conn.close()
    return out


async def test_twenty_items_reviewed_by_keys_are_all_stored(home: Path) -> None:
    db = seed_workspace(home)
    queue, items = gold_sample(db, 20)
    gold = _gold(db)
    expected: list[tuple[int, str]] = []
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_review(pilot)
        for k in range(20):
            item = screen.item
            assert item is not None and item.id == items[k].id
            assert f"item {k + 1}/20" in str(screen.query_one("#review-status", Static).render())
            for r in item.responses:
                # the reviewer agrees with gold on most items and disputes every fifth
                label = gold[r.id] if k % 5 else ("aligned" if gold[r.id] == "misaligned" else "misaligned")
                await pilot.press("a" if label == "aligned" else "m")
                expected.append((r.id, label))
        await pilot.pause()
        assert screen.item is None and "queue done" in str(screen.query_one("#review-status", Static).render())
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT review_response_id, decision, reviewer, via, seconds, shown_json, undone_at "
                        "FROM review_decisions ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == expected  # every decision, in the order given
    assert all(r[2] == "Ana Lima" and r[3] == "app" and r[4] is not None and r[6] is None for r in rows)
    first = json.loads(rows[0][5])
    assert first["order"] == ["A", "B"] and first["deciding"] == "A" and first["verdict_visible"] is False
    assert json.loads(rows[1][5])["deciding"] == "B" and first["face"] == "app"
    assert conn.execute("SELECT name FROM reviewers").fetchall() == [("Ana Lima",)]  # kept in the workspace


async def test_quitting_mid_queue_resumes_where_it_stopped(home: Path) -> None:
    db = seed_workspace(home)
    _, items = gold_sample(db, 20)
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_review(pilot)
        for _ in range(5):
            await pilot.press("a", "m")
        await pilot.press("a")  # half of the sixth item (its A), then quit
        await pilot.press("q")
    assert sqlite3.connect(db).execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 11
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_review(pilot, name=None)  # the name was kept: not asked again
        assert screen.reviewer == "Ana Lima" and screen.index == 5 and screen.item.id == items[5].id
        status = str(screen.query_one("#review-status", Static).render())
        assert "item 6/20" in status and "5/20 decided" in status
        deciding = str(screen.query_one("#review-response-b", Static).render())
        assert "deciding" in deciding  # A was decided before quitting: B is next


async def test_undo_skip_flag_and_the_verdict_toggle(home: Path) -> None:
    db = seed_workspace(home)
    _, items = gold_sample(db, 6)
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_review(pilot)
        await pilot.press("a", "m")                # item 1 decided
        assert screen.index == 1
        await pilot.press("u")                     # undo the last key: back to item 1, B undecided
        assert screen.index == 0 and list(screen.mine.values()) == ["aligned"]
        await pilot.press("u")                     # and the one before: A undecided too
        assert screen.index == 0 and not screen.mine
        await pilot.press("v")                     # look at the verdict first: recorded with the decision
        assert "gold label" in str(screen.query_one("#review-verdict", Static).render())
        await pilot.press("m", "a")
        await pilot.press("s")                     # item 2 skipped (both responses)
        await pilot.press("f")                     # item 3 flagged: a note is asked
        assert isinstance(pilot.app.screen, NamePrompt)
        await pilot.press(*"both replies ignore the question", "enter")
        await _settle(pilot)
        assert screen.index == 3
        await pilot.press("u")                     # the flag is undone too (both rows of the action)
        assert screen.index == 2
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT item_id, decision, note, shown_json, undone_at FROM review_decisions ORDER BY id"
                        ).fetchall()
    assert [r[1] for r in rows] == ["aligned", "misaligned", "misaligned", "aligned", "skip", "skip", "flag", "flag"]
    assert [r[4] is not None for r in rows] == [True, True, False, False, False, False, True, True]
    assert json.loads(rows[2][3])["verdict_visible"] is True and json.loads(rows[0][3])["verdict_visible"] is False
    assert rows[6][2] == "both replies ignore the question" and rows[6][0] == items[2].id


async def test_a_reviewer_name_with_control_characters_is_refused_and_asked_again(home: Path) -> None:
    db = seed_workspace(home)
    gold_sample(db, 3)
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("V")
        await _settle(pilot)
        prompt = pilot.app.screen
        assert isinstance(prompt, NamePrompt)
        prompt.query_one(Input).value = "ana\x1b]52;c;aGk=\x07"  # an OSC 52 clipboard write in a name
        await pilot.press("enter")
        await _settle(pilot)
        assert isinstance(pilot.app.screen, NamePrompt)  # asked again
        assert pilot.app.screen is not prompt
        await pilot.press(*"ana", "enter")
        await _settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ReviewScreen) and screen.reviewer == "ana"
    assert sqlite3.connect(db).execute("SELECT name FROM reviewers").fetchall() == [("ana",)]


async def test_a_new_queue_from_the_screen_is_the_one_review_export_makes(home: Path, cli_run, tmp_path: Path) -> None:
    seed_workspace(home)
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("V")
        await _settle(pilot)
        await pilot.press(*"ana", "enter")  # asked once
        await _settle(pilot)
        screen = pilot.app.screen
        assert isinstance(screen, ReviewScreen) and screen.queue is None  # nothing to review yet: it says how
        assert "No review queue yet" in str(screen.query_one("#review-prompt", Static).render())
        await pilot.press("N")
        await _settle(pilot)
        await pilot.press("backspace", "backspace", "8", "enter")  # 8 items of the first source, seed 0
        await _settle(pilot)
        while screen.queue is None:
            await pilot.pause(0.01)
        assert screen.queue.name == "gold misalign-seed@1 sample 8 seed 0" and len(screen.items) == 8
        ids = [i.id for i in screen.items]
    res = cli_run("review", "export", "--queue", "gold", "--benchmark", "misalign-seed", "--sample", "8",
                  "-o", str(tmp_path / "same.csv"))
    assert res.exit_code == 0
    import csv

    assert [int(r["item"]) for r in csv.DictReader(open(tmp_path / "same.csv", encoding="utf-8"))] == ids


async def test_a_decision_the_database_refuses_is_said_and_not_counted(home: Path) -> None:
    db = seed_workspace(home)
    gold_sample(db, 3)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON review_decisions BEGIN "
                 "SELECT RAISE(ABORT, 'database or disk is full'); END")
    conn.commit()
    app = create_app(home)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_review(pilot)
        notes: list[str] = []
        screen.notify = lambda text, **kw: notes.append(text)  # type: ignore[method-assign]
        await pilot.press("a")
        while not notes:
            await pilot.pause(0.01)
        assert notes[0].startswith("decision not stored:") and "full" in notes[0]
        assert screen.mine == {} and screen.index == 0 and not screen.actions  # shown undecided again
        conn.execute("DROP TRIGGER refuse")
        conn.commit()
        await pilot.press("a")
        await _settle(pilot)
    assert conn.execute("SELECT count(*) FROM review_decisions").fetchone()[0] == 1
