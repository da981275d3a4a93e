"""The 345 Quick, Draw! category names, named presets, and name checking."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Google's categories.txt, spelled and ordered exactly as Google publishes it.
CATEGORIES: tuple[str, ...] = (
    "aircraft carrier", "airplane", "alarm clock", "ambulance", "angel", "animal migration", "ant",
    "anvil", "apple", "arm", "asparagus", "axe", "backpack", "banana", "bandage", "barn",
    "baseball", "baseball bat", "basket", "basketball", "bat", "bathtub", "beach", "bear", "beard",
    "bed", "bee", "belt", "bench", "bicycle", "binoculars", "bird", "birthday cake", "blackberry",
    "blueberry", "book", "boomerang", "bottlecap", "bowtie", "bracelet", "brain", "bread",
    "bridge", "broccoli", "broom", "bucket", "bulldozer", "bus", "bush", "butterfly", "cactus",
    "cake", "calculator", "calendar", "camel", "camera", "camouflage", "campfire", "candle",
    "cannon", "canoe", "car", "carrot", "castle", "cat", "ceiling fan", "cello", "cell phone",
    "chair", "chandelier", "church", "circle", "clarinet", "clock", "cloud", "coffee cup",
    "compass", "computer", "cookie", "cooler", "couch", "cow", "crab", "crayon", "crocodile",
    "crown", "cruise ship", "cup", "diamond", "dishwasher", "diving board", "dog", "dolphin",
    "donut", "door", "dragon", "dresser", "drill", "drums", "duck", "dumbbell", "ear", "elbow",
    "elephant", "envelope", "eraser", "eye", "eyeglasses", "face", "fan", "feather", "fence",
    "finger", "fire hydrant", "fireplace", "firetruck", "fish", "flamingo", "flashlight",
    "flip flops", "floor lamp", "flower", "flying saucer", "foot", "fork", "frog", "frying pan",
    "garden", "garden hose", "giraffe", "goatee", "golf club", "grapes", "grass", "guitar",
    "hamburger", "hammer", "hand", "harp", "hat", "headphones", "hedgehog", "helicopter", "helmet",
    "hexagon", "hockey puck", "hockey stick", "horse", "hospital", "hot air balloon", "hot dog",
    "hot tub", "hourglass", "house", "house plant", "hurricane", "ice cream", "jacket", "jail",
    "kangaroo", "key", "keyboard", "knee", "knife", "ladder", "lantern", "laptop", "leaf", "leg",
    "light bulb", "lighter", "lighthouse", "lightning", "line", "lion", "lipstick", "lobster",
    "lollipop", "mailbox", "map", "marker", "matches", "megaphone", "mermaid", "microphone",
    "microwave", "monkey", "moon", "mosquito", "motorbike", "mountain", "mouse", "moustache",
    "mouth", "mug", "mushroom", "nail", "necklace", "nose", "ocean", "octagon", "octopus", "onion",
    "oven", "owl", "paintbrush", "paint can", "palm tree", "panda", "pants", "paper clip",
    "parachute", "parrot", "passport", "peanut", "pear", "peas", "pencil", "penguin", "piano",
    "pickup truck", "picture frame", "pig", "pillow", "pineapple", "pizza", "pliers", "police car",
    "pond", "pool", "popsicle", "postcard", "potato", "power outlet", "purse", "rabbit", "raccoon",
    "radio", "rain", "rainbow", "rake", "remote control", "rhinoceros", "rifle", "river",
    "roller coaster", "rollerskates", "sailboat", "sandwich", "saw", "saxophone", "school bus",
    "scissors", "scorpion", "screwdriver", "sea turtle", "see saw", "shark", "sheep", "shoe",
    "shorts", "shovel", "sink", "skateboard", "skull", "skyscraper", "sleeping bag", "smiley face",
    "snail", "snake", "snorkel", "snowflake", "snowman", "soccer ball", "sock", "speedboat",
    "spider", "spoon", "spreadsheet", "square", "squiggle", "squirrel", "stairs", "star", "steak",
    "stereo", "stethoscope", "stitches", "stop sign", "stove", "strawberry", "streetlight",
    "string bean", "submarine", "suitcase", "sun", "swan", "sweater", "swing set", "sword",
    "syringe", "table", "teapot", "teddy-bear", "telephone", "television", "tennis racquet",
    "tent", "The Eiffel Tower", "The Great Wall of China", "The Mona Lisa", "tiger", "toaster",
    "toe", "toilet", "tooth", "toothbrush", "toothpaste", "tornado", "tractor", "traffic light",
    "train", "tree", "triangle", "trombone", "truck", "trumpet", "t-shirt", "umbrella",
    "underwear", "van", "vase", "violin", "washing machine", "watermelon", "waterslide", "whale",
    "wheel", "windmill", "wine bottle", "wine glass", "wristwatch", "yoga", "zebra", "zigzag",
)

PRESETS: dict[str, tuple[str, ...]] = {
    "all": CATEGORIES,
    # The ten categories of the original draw-ai.
    "classic10": (
        "apple", "cloud", "diamond", "donut", "door",
        "mug", "house", "butterfly", "microphone", "bicycle",
    ),
}


class UnknownCategoryError(ValueError):
    """A category name (or preset) that Quick, Draw! does not have."""


def check_name(name: str) -> str:
    """Return `name` if it is one of the 345 categories, else raise with the closest names."""
    if not isinstance(name, str):
        raise UnknownCategoryError(f"category names are strings, got {type(name).__name__}: {name!r}")
    if name in _INDEX:
        return name
    # Case and separators are forgiven only as suggestions ("hot_dog" -> did you mean 'hot dog'?).
    key = name.strip().lower().replace("_", " ")
    close = [_LOWER[c] for c in difflib.get_close_matches(key, list(_LOWER), n=3, cutoff=0.6)]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownCategoryError(f"unknown category {name!r}{hint} (see drawai.categories.CATEGORIES)")


def resolve(categories: str | Iterable[str] | None = "all") -> list[str]:
    """Turn a preset name, a single category or a list of categories into a checked list of names.

    The order is kept (it defines the class indices), duplicates and empty lists are errors.
    """
    if categories is None:
        categories = "all"
    if isinstance(categories, str):
        if categories in PRESETS:
            return list(PRESETS[categories])
        if categories not in _INDEX:
            try:
                check_name(categories)
            except UnknownCategoryError as e:
                raise UnknownCategoryError(f"{e}; presets are {sorted(PRESETS)}") from None
        return [categories]
    names = [check_name(n) for n in categories]
    if not names:
        raise UnknownCategoryError("the category list is empty; give names or a preset such as 'classic10'")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UnknownCategoryError(f"categories listed more than once: {dupes}")
    return names


_INDEX = {name: i for i, name in enumerate(CATEGORIES)}
_LOWER = {name.lower(): name for name in CATEGORIES}
assert len(CATEGORIES) == 345 and len(_INDEX) == 345
