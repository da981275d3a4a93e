import pytest

from drawai import categories as cats


def test_345_official_names():
    assert len(cats.CATEGORIES) == 345 == len(set(cats.CATEGORIES))
    for name in ("The Eiffel Tower", "cell phone", "hot dog", "yoga", "aircraft carrier"):
        assert name in cats.CATEGORIES


def test_presets():
    assert cats.resolve("classic10") == ["apple", "cloud", "diamond", "donut", "door",
                                         "mug", "house", "butterfly", "microphone", "bicycle"]
    assert cats.resolve("all") == list(cats.CATEGORIES) == cats.resolve(None)
    assert cats.resolve("cat") == ["cat"]
    assert cats.resolve(["zebra", "cat"]) == ["zebra", "cat"]  # order kept: it defines class indices


@pytest.mark.parametrize("bad, hint", [
    ("catt", "'cat'"),
    ("eiffel tower", "'The Eiffel Tower'"),
    (["cat", "hot_dog"], "'hot dog'"),
    ("classic11", "presets"),
])
def test_unknown_names_suggest(bad, hint):
    with pytest.raises(cats.UnknownCategoryError, match="unknown category") as e:
        cats.resolve(bad)
    assert hint in str(e.value)


def test_duplicates_empty_and_non_strings():
    with pytest.raises(cats.UnknownCategoryError, match="more than once"):
        cats.resolve(["cat", "dog", "cat"])
    with pytest.raises(cats.UnknownCategoryError, match="empty"):
        cats.resolve([])
    with pytest.raises(cats.UnknownCategoryError, match="strings"):
        cats.resolve([3])
