"""FightArena driven from Python: rounds, score, history strip, category sets, and the timer on a
running asyncio loop (what a Jupyter kernel or Voila gives it)."""

from __future__ import annotations

import asyncio
import io
import os
import time

import numpy as np
import pytest
from fight_stubs import MarkClassifier, MarkGenerator
from PIL import Image

from drawai import categories as cats
from drawai.fight import FightError
from drawai.paths import ROOT
from drawai.widgets import FightArena, score_text

CLASSIC10 = cats.resolve("classic10")
SHAPES = ["circle", "square", "triangle", "line", "star", "zigzag"]


@pytest.fixture
def arena():
    # "mug" is drawn as a cloud: every mug round is lost, every other round won
    return FightArena(MarkGenerator(CLASSIC10, draws_as={"mug": "cloud"}), MarkClassifier(CLASSIC10), seed=1)


def strip_images(arena):
    """The history strip's pictures as the page shows them: each the top of its (picture, caption) column."""
    return [column.children[0] for column in arena.strip.children]


def test_play_round_updates_rounds_wins_score_and_history(arena):
    seen = []
    arena.observe(lambda change: seen.append((change["name"], change["new"])), names=["rounds", "wins"])
    assert (arena.rounds, arena.wins) == (0, 0) and arena.score.value == "0 / 0 won"
    results = [arena.play_round() for _ in range(30)]
    for r in results:
        assert set(r) == {"label", "guess", "confidence", "win"} and r["label"] in CLASSIC10
        assert r["win"] == (r["label"] != "mug") and r["guess"] == ("cloud" if r["label"] == "mug" else r["label"])
        assert 0.5 < r["confidence"] <= 1
    wins = sum(r["win"] for r in results)
    assert 0 < wins < 30  # the seed gave some mug rounds
    assert (arena.rounds, arena.wins) == (30, wins)
    assert arena.score.value == score_text(wins, 30) == f"{wins} / 30 won ({100 * wins / 30:.0f} %)"
    assert "drawai-fight-score" in arena.score._dom_classes
    assert seen.count(("rounds", 30)) == 1 and ("wins", wins) in seen
    # the strip: the last HISTORY rounds, newest last, green for a win and red for a loss
    assert len(arena.history) == arena.HISTORY
    assert [h["label"] for h in arena.history] == [r["label"] for r in results[-arena.HISTORY:]]
    for slot, item in zip(strip_images(arena), arena.history):
        assert ("drawai-fight-win" in slot._dom_classes) == item["win"]
        assert ("drawai-fight-lose" in slot._dom_classes) == (not item["win"])
        assert slot.layout.border.endswith("#2ca02c" if item["win"] else "#d62728")
        shown = np.asarray(Image.open(io.BytesIO(slot.value)))
        assert shown.shape == (56, 56) and shown.max() == np.rint(item["image"].max() * 255)
    last = results[-1]
    assert last["label"] in arena.asked.value and last["guess"] in arena.verdict.value
    assert ("won" if last["win"] else "lost") in arena.verdict.value


def test_the_same_seed_plays_the_same_rounds():
    a = FightArena(MarkGenerator(CLASSIC10), MarkClassifier(CLASSIC10), seed=5)
    b = FightArena(MarkGenerator(CLASSIC10), MarkClassifier(CLASSIC10), seed=5)
    assert [a.play_round()["label"] for _ in range(10)] == [b.play_round()["label"] for _ in range(10)]


def test_the_strip_starts_blank_and_fills_from_the_right(arena):
    assert all("drawai-fight-win" not in s._dom_classes and "drawai-fight-lose" not in s._dom_classes
               for s in strip_images(arena))
    arena.play_round()
    arena.play_round()
    filled = [bool({"drawai-fight-win", "drawai-fight-lose"} & set(s._dom_classes)) for s in strip_images(arena)]
    assert filled == [False] * (arena.HISTORY - 2) + [True, True]


def test_css_classes_the_dashboard_finds(arena):
    assert "drawai-fight-toggle" in arena.toggle._dom_classes
    assert "drawai-fight-categories" in arena.category_choice._dom_classes
    assert "drawai-fight-score" in arena.score._dom_classes


def test_category_sets_fit_both_models_and_a_switch_restarts_the_score():
    many = cats.CATEGORIES[:40] + tuple(SHAPES)
    arena = FightArena(MarkGenerator(many), MarkClassifier(many), categories=SHAPES)
    values = [v for _, v in arena.category_choice.options]
    assert values == [many, tuple(SHAPES)]
    assert arena.category_choice.value == tuple(SHAPES)
    arena.play_round()
    assert arena.rounds == 1 and arena.history[-1]["label"] in SHAPES
    # classic10 is not a choice: "mug", "microphone", ... are not among these models' categories
    arena.category_choice.value = many  # what the browser's Dropdown does
    assert arena.labels == list(many) and (arena.rounds, arena.wins, arena.history) == (0, 0, [])
    assert "0 / 0 won" in arena.score.value
    with pytest.raises(FightError, match="does not know"):
        arena.set_categories(["cat", "dog"])  # not drawn by the generator
    assert arena.labels == list(many)
    arena.set_categories(["airplane", "ant"])  # a new set shows up in the Dropdown
    assert arena.category_choice.value == ("airplane", "ant") and arena.labels == ["airplane", "ant"]


def test_presets_that_fit_are_offered():
    arena = FightArena(MarkGenerator(cats.CATEGORIES[:14] + tuple(CLASSIC10)), MarkClassifier(cats.CATEGORIES))
    assert [label for label, _ in arena.category_choice.options] == ["all 24 of the generator", "classic10 (10)"]


@pytest.mark.parametrize("kwargs, match", [
    ({"categories": "cat"}, "does not know"),
    ({"categories": "mugg"}, "did you mean 'mug'"),
    ({"categories": ["mug"]}, "at least two labels"),
    ({"interval": 0}, "interval"),
    ({"interval": "fast"}, "interval"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_fail_before_anything_runs(kwargs, match):
    gen = MarkGenerator(CLASSIC10)
    with pytest.raises(FightError, match=match):
        FightArena(gen, MarkClassifier(CLASSIC10), **kwargs)
    assert gen.calls == 0


def test_models_on_category_sets_that_do_not_fit():
    with pytest.raises(FightError, match="don't fit"):
        FightArena(MarkGenerator(CLASSIC10), MarkClassifier(SHAPES))


def test_start_needs_a_running_loop(arena):
    with pytest.raises(FightError, match="event loop"):
        arena.start()
    arena.toggle.value = True  # a click without a loop: a message in the widget, not a traceback
    assert arena.toggle.value is False and "event loop" in arena.message and not arena.running


def test_start_and_stop_on_a_running_loop(arena):
    arena.interval = 0.1
    ticks = []

    async def session():
        arena.start()
        assert arena.running and arena.toggle.value and arena.toggle.description == "Stop"
        arena.start()  # twice: still one timer
        for _ in range(10):
            await asyncio.sleep(0.05)  # the loop is free between rounds: this coroutine keeps running
            ticks.append(arena.rounds)
        arena.stop()
        stopped_at = arena.rounds
        await asyncio.sleep(0.3)
        return stopped_at

    stopped_at = asyncio.run(session())
    assert stopped_at >= 3 and arena.rounds == stopped_at  # no round after stop
    assert ticks == sorted(ticks) and len(set(ticks)) > 2
    assert not arena.running and arena.toggle.value is False and arena.toggle.description == "Start"


def test_the_toggle_button_starts_and_stops(arena):
    arena.interval = 0.1

    async def session():
        arena.toggle.value = True  # what a click in the browser sets
        await asyncio.sleep(0.45)
        running = arena.running
        arena.toggle.value = False
        n = arena.rounds
        await asyncio.sleep(0.3)
        return running, n

    running, n = asyncio.run(session())
    assert running and n >= 2 and arena.rounds == n and not arena.running


def test_a_failing_round_on_the_timer_shows_a_message_and_stops():
    arena = FightArena(MarkGenerator(CLASSIC10, fail_after=3), MarkClassifier(CLASSIC10), interval=0.1)

    async def session():
        arena.start()
        await asyncio.sleep(0.8)

    asyncio.run(session())
    assert arena.rounds == 3 and not arena.running and arena.toggle.value is False
    assert "weights are gone" in arena.message and "weights are gone" in arena.status.value
    arena.step_button.click()  # the button reports the same way
    assert arena.rounds == 3 and "weights are gone" in arena.message


@pytest.mark.slow
def test_the_timer_runs_in_a_real_kernel_while_it_is_idle():
    """In ipykernel (what JupyterLab and Voila run): start() from a cell, rounds go on while the kernel
    is idle, and a browser's click on the toggle (a comm message) starts the timer too."""
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(ROOT), env=env)

    def run(code: str) -> str:
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: out.append(msg))
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")

    try:
        out = []
        run("from fight_stubs import MarkClassifier, MarkGenerator\nfrom drawai.widgets import FightArena\n"
            "names = ['apple', 'cloud', 'mug']\n"
            "arena = FightArena(MarkGenerator(names), MarkClassifier(names), interval=0.2)\narena.start()")
        time.sleep(1.5)  # the kernel is idle; the timer plays on
        out = []
        rounds = int(run("print(arena.rounds); arena.stop()"))
        assert rounds >= 3
        out = []
        comm_id = run("print(arena.toggle.comm.comm_id)").strip()
        kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {
            "method": "update", "state": {"value": True}, "buffer_paths": []}}))
        time.sleep(1.5)
        out = []
        running, after = run("print(arena.running, arena.rounds); arena.stop()").split()
        assert running == "True" and int(after) >= rounds + 3
    finally:
        km.shutdown_kernel(now=True)
