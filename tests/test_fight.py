"""drawai.fight: scoring checked against real drawings and the shipped classifier, bad input, the
statistics of the augmentation experiment, and a tiny experiment end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fight_stubs import BlankGenerator, MarkClassifier, MarkGenerator, ReplayGenerator

from drawai import bitmaps, classifier, data, fight
from drawai import categories as cats

CLASSIC10 = cats.resolve("classic10")


@pytest.fixture(scope="module")
def test_canonical(classic10):
    return bitmaps.to_canonical(classic10[1].images)


def test_win_rate_equals_the_classifiers_accuracy_on_the_drawings_it_gets(shipped, classic10, test_canonical):
    """A generator that hands out the real test drawings: the fight's score is the classifier's test
    accuracy on them, its choice restricted to the ten categories (computed here from its probabilities)."""
    test = classic10[1]
    result = fight.fight(ReplayGenerator(test, test_canonical), shipped, rounds=len(test), seed=3)
    assert result.labels == tuple(CLASSIC10) and result.rounds == 200
    assert np.bincount(result.requested).tolist() == [20] * 10  # every label, equally often
    # every test drawing was played exactly once, in each label's order
    for c in range(10):
        np.testing.assert_array_equal(result.images[result.requested == c], test_canonical[test.labels == c])
    columns = [shipped.categories.index(n) for n in CLASSIC10]
    probs = shipped.probabilities(test_canonical, canonical=True)[:, columns]
    correct = probs.argmax(1) == test.labels
    top5 = (np.argsort(-probs, 1)[:, :5] == test.labels[:, None]).any(1)
    assert result.score == pytest.approx(correct.mean())
    assert result.top5.mean() == pytest.approx(top5.mean())
    assert 0.5 < result.score <= 1  # the shipped model is good at classic10 (all 200 right in 464e183)
    for row in result.per_label():
        c = CLASSIC10.index(row.label)
        assert row.rounds == 20 and row.win_rate == pytest.approx(correct[test.labels == c].mean())
        p = probs[test.labels == c]
        assert row.confidence == pytest.approx((p[:, c] / p.sum(1)).mean(), rel=1e-5)


def test_blank_drawings_win_at_chance(shipped):
    result = fight.fight(BlankGenerator(CLASSIC10), shipped, rounds=500, seed=0)
    assert abs(result.score - result.chance) <= 0.02 and result.chance == 0.1
    # a blank page gets one answer whatever was asked: that label always wins, every other never
    assert len(set(result.guessed.tolist())) == 1
    assert sorted(s.win_rate for s in result.per_label())[:-1] == [0.0] * 9


def test_per_label_table_worst_best_and_summary():
    # "mug" is drawn as a cloud and "door" as a house: those two always lose
    gen = MarkGenerator(CLASSIC10, draws_as={"mug": "cloud", "door": "house"})
    result = fight.fight(gen, MarkClassifier(cats.CATEGORIES), labels="classic10", rounds=103, seed=1)
    rows = {s.label: s for s in result.per_label()}
    assert sum(s.rounds for s in rows.values()) == 103 and {s.rounds for s in rows.values()} == {10, 11}
    assert rows["mug"].win_rate == 0 and rows["mug"].wrong_guess == "cloud" and rows["mug"].wrong_guess_rate == 1
    assert rows["door"].wrong_guess == "house"
    assert rows["apple"].win_rate == 1 and rows["apple"].wrong_guess is None and rows["apple"].confidence > 0.9
    assert result.score == pytest.approx(1 - (rows["mug"].rounds + rows["door"].rounds) / 103)
    assert {s.label for s in result.worst(2)} == {"mug", "door"} and result.best(1)[0].win_rate == 1
    table = result.table()
    assert table.splitlines()[2].startswith("door") or table.splitlines()[2].startswith("mug")
    assert "cloud (100%)" in table and f"{result.score:.0%}" in table.splitlines()[-1]
    assert all(name in table for name in CLASSIC10)
    summary = json.loads(json.dumps(result.summary()))
    assert summary["rounds"] == 103 and summary["score"] == result.score
    assert set(summary["worst"][:2]) == {"mug", "door"}


def test_the_classifier_chooses_among_the_fights_labels_only():
    """A 345-category classifier judging a classic10 generator picks one of the ten: its probabilities of those
    ten, in the fight's order, renormalised; what it gives other categories does not count."""
    generator = MarkGenerator(CLASSIC10, draws_as={CLASSIC10[0]: "zebra"})  # read as a category outside the ten
    judge = MarkClassifier(cats.CATEGORIES)
    images = generator.generate(CLASSIC10, 2, seed=0)
    every = judge.probabilities(images)
    ten = every[:, [cats.CATEGORIES.index(name) for name in CLASSIC10]]
    restricted = fight.Referee(generator, judge).judge(images)
    np.testing.assert_allclose(restricted, ten / ten.sum(1, keepdims=True), rtol=1e-6)
    assert every[:2].argmax(1).tolist() == [cats.CATEGORIES.index("zebra")] * 2
    result = fight.fight(generator, judge, rounds=20)
    assert result.probabilities.shape == (20, 10) and result.labels == tuple(CLASSIC10)
    np.testing.assert_allclose(result.probabilities.sum(1), 1)
    won = result.guessed == result.requested
    assert won[result.requested != 0].all() and result.guessed.max() < 10


@pytest.mark.parametrize("kwargs, match", [
    ({"rounds": 0}, "rounds must be an integer >= 1"),
    ({"rounds": -5}, "rounds must be"),
    ({"rounds": 2.5}, "rounds must be"),
    ({"rounds": True}, "rounds must be"),
    ({"rounds": 5}, "every label needs at least one round"),
    ({"seed": -1}, "seed must be"),
    ({"labels": ["apple", "cat"]}, r"does not know \['cat'\]"),
    ({"labels": "mugg"}, "did you mean 'mug'"),
    ({"labels": ["apple"]}, "at least two labels"),
])
def test_bad_input_fails_before_anything_runs(kwargs, match):
    gen, clf = MarkGenerator(CLASSIC10), MarkClassifier(cats.CATEGORIES)
    with pytest.raises(fight.FightError, match=match):
        fight.fight(gen, clf, **kwargs)
    assert gen.calls == 0 and clf.calls == 0


def test_models_on_category_sets_that_do_not_fit():
    gen = MarkGenerator(CLASSIC10)
    with pytest.raises(fight.FightError, match="don't fit.*does not know"):
        fight.fight(gen, MarkClassifier(["apple", "cloud", "cat"]))
    # the categories both know can still be played
    assert fight.fight(gen, MarkClassifier(["apple", "cloud", "cat"]), labels=["apple", "cloud"], rounds=4).score == 1
    with pytest.raises(fight.FightError, match="has no categories or generate"):
        fight.fight(object(), MarkClassifier(CLASSIC10))
    assert gen.calls == 1


# --- the augmentation experiment ------------------------------------------------------------------------------

def test_mean_ci_is_students_t():
    mean, half = fight.mean_ci([0.70, 0.74, 0.72])
    assert mean == pytest.approx(0.72) and half == pytest.approx(4.302653 * 0.02 / np.sqrt(3), rel=1e-5)
    assert np.isnan(fight.mean_ci([0.5])[1])


def result_from(top1: dict, shifted: dict | None = None) -> fight.AugmentationResult:
    """top1: {k: [value per seed]}."""
    shifted = shifted or top1
    seeds = tuple(range(len(next(iter(top1.values())))))
    runs = tuple({"k": k, "seed": s, "top1": top1[k][s], "shifted_top1": shifted[k][s]} for k in top1 for s in seeds)
    return fight.AugmentationResult(tuple(top1), seeds, runs)


def test_summary_pairs_runs_by_seed():
    # seeds differ a lot, but k=40 beats k=0 by exactly 2 points in every seed: a clear gain when paired
    r = result_from({0: [0.60, 0.70, 0.80], 40: [0.62, 0.72, 0.82]})
    rows = r.summary()
    assert rows[0]["top1"]["mean"] == pytest.approx(0.70) and rows[0]["top1"]["ci95"] > 0.2
    assert rows[1]["top1"]["vs_k0"]["mean"] == pytest.approx(0.02) and rows[1]["top1"]["vs_k0"]["ci95"] < 1e-9
    assert "vs_k0" not in rows[0]["top1"]
    assert "helped at every k" in r.conclusion().splitlines()[0]
    assert "+2.0 pt [ +2.0,  +2.0]" in r.table().splitlines()[3]


@pytest.mark.parametrize("top1, verdict", [
    ({0: [0.70, 0.72, 0.74], 40: [0.71, 0.71, 0.75]}, "no measurable effect"),
    ({0: [0.70, 0.72, 0.74], 40: [0.60, 0.61, 0.65]}, "made the classifier worse"),
    ({0: [0.70, 0.72, 0.74], 40: [0.75, 0.78, 0.80], 80: [0.60, 0.61, 0.65]}, "mixed"),
    ({0: [0.70, 0.72, 0.74], 40: [0.75, 0.78, 0.80], 80: [0.71, 0.71, 0.75]}, "helped at some k, and hurt at none"),
])
def test_conclusion_says_what_the_intervals_support(top1, verdict):
    assert verdict in result_from(top1).conclusion().splitlines()[0]


def test_conclusion_needs_a_baseline():
    assert result_from({40: [0.7, 0.8]}).conclusion().startswith("No conclusion")


@pytest.mark.parametrize("kwargs, match", [
    ({"ks": ()}, "ks must be"),
    ({"ks": (0, -40)}, "every k"),
    ({"ks": (0, 40, 40)}, "repeated"),
    ({"seeds": (0,)}, "at least two seeds"),
    ({"seeds": 3}, "at least two seeds"),
    ({"config": {"epochs": 3}}, "TrainConfig"),
])
def test_experiment_bad_input(kwargs, match, classic10):
    gen = MarkGenerator(CLASSIC10)
    with pytest.raises(fight.FightError, match=match):
        fight.augmentation_experiment(gen, *classic10, **kwargs)
    assert gen.calls == 0


def test_experiment_needs_a_generator_of_the_training_categories(classic10):
    with pytest.raises(fight.FightError, match="does not know"):
        fight.augmentation_experiment(MarkGenerator(CLASSIC10[:5]), *classic10)


def test_generated_drawings_stay_as_generated_and_unreadable_ones_are_left_out(classic10, test_canonical):
    gen = ReplayGenerator(classic10[1], test_canonical.copy())
    gen.by_label["cloud"][1] = 0  # a blank drawing
    gen.by_label["door"][0] = 1  # all ink
    drawings, unreadable = fight.generated_drawings(gen, CLASSIC10, 3, seed=0)
    assert unreadable == 2 and len(drawings) == 28 and drawings.images.dtype == np.float32
    np.testing.assert_array_equal(drawings.images[drawings.labels == 0], test_canonical[classic10[1].labels == 0][:3])
    assert np.bincount(drawings.labels).tolist() == [3, 2, 3, 3, 2, 3, 3, 3, 3, 3]
    assert np.bincount(fight.first_per_class(drawings, 2).labels).tolist() == [2] * 10


@pytest.mark.slow
def test_a_tiny_experiment_end_to_end_and_resumed(classic10, tmp_path, monkeypatch):
    """Real training (2 short epochs), a generator of other real drawings, a results file that a rerun reads."""
    train, test = classic10
    train = train.subset(np.arange(0, len(train), 4))  # 20 per class
    other = data.load_sample("classic10").subset(np.arange(1, 1000, 2))  # any drawings: they are 'generated'
    gen = ReplayGenerator(other, bitmaps.to_canonical(other.images))
    config = classifier.TrainConfig(epochs=2, batch_size=32, threads=1)
    path = tmp_path / "runs.json"
    threads = torch.get_num_threads()
    said = []  # on_run: after every run, how many are done of how many, and the run's row
    try:
        result = fight.augmentation_experiment(gen, train, test, ks=(0, 5), seeds=(0, 1), config=config,
                                               results_path=path, progress=False,
                                               on_run=lambda done, total, run: said.append((done, total, run)))
    finally:
        torch.set_num_threads(threads)
    assert [(done, total, run["k"], run["seed"]) for done, total, run in said] == [
        (1, 4, 0, 0), (2, 4, 5, 0), (3, 4, 0, 1), (4, 4, 5, 1)]
    assert [(r["k"], r["seed"]) for r in result.runs] == [(0, 0), (5, 0), (0, 1), (5, 1)]
    assert [r["n_generated"] for r in result.runs] == [0, 50, 0, 50]
    assert [r["n_train"] for r in result.runs] == [200, 250, 200, 250]
    assert json.loads(path.read_text())["runs"] == list(result.runs)
    assert [row["k"] for row in result.summary()] == [0, 5] and "k=5" in result.conclusion()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(classifier, "train", no_training)
    again = fight.augmentation_experiment(gen, train, test, ks=(0, 5), seeds=(0, 1), config=config,
                                          results_path=path, progress=False)
    assert again.runs == result.runs
    with pytest.raises(fight.FightError, match="other settings"):
        fight.augmentation_experiment(gen, train, test, ks=(0, 10), seeds=(0, 1), config=config, results_path=path)
