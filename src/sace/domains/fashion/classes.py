"""Fashion-MNIST class metadata, caption sets and concept words for the ``fashion`` domain.

Every class has a *training* caption set (templates x synonyms, which contains the canonical
prompt :func:`canonical_prompt`, e.g. ``"a photo of a sneaker"``) and a separate hand-written
*held-out* paraphrase set (:func:`heldout_captions`) that shares no caption with the training set and
uses other sentence shapes and some other synonyms. :func:`concept_words` lists the words and phrases
that name a class (singular and plural), and :func:`remove_concept_words` deletes them from a prompt.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from ...errors import SaceError

__all__ = [
    "NUM_CLASSES", "CLASS_KEYS", "CLASS_NAMES", "TRAINING_TEMPLATES",
    "class_index", "class_key", "class_name", "canonical_name", "canonical_prompt",
    "synonyms", "training_captions", "heldout_captions", "all_training_captions", "all_heldout_captions",
    "concept_words", "mentions_concept", "remove_concept_words",
]

NUM_CLASSES = 10

@dataclass(frozen=True)
class _Class:
    key: str
    name: str  # official Fashion-MNIST name
    canonical: tuple[str, str]  # (determiner, noun phrase)
    synonyms: tuple[tuple[str, str], ...]  # further (determiner, noun phrase) pairs used in training
    extra_words: tuple[str, ...]  # other words naming the class, plurals spelled out (not derived)
    heldout: tuple[str, ...]  # hand-written paraphrases, never used for training


# Determiner "a pair of" marks plural-only nouns (never pluralised again).
_CLASSES: tuple[_Class, ...] = (
    _Class("tshirt", "T-shirt/top", ("a", "t-shirt"),
           (("a", "tee"), ("a", "top"), ("a", "short-sleeved top"), ("a", "tank top"), ("a", "cotton tee")),
           ("tshirt", "tshirts", "crew-neck tee", "crew-neck tees", "graphic tee", "graphic tees"),
           ("a plain tee laid flat on a table",
            "a basic crew-neck t-shirt seen from the front",
            "a casual summer tee for everyday wear",
            "a sleeveless tank top on a dark background",
            "a graphic tee with a round neckline",
            "a loose-fitting top with short sleeves",
            "a jersey t-shirt photographed for an online shop",
            "an oversized tee, flat lay",
            "short-sleeved tops stacked on a shelf",
            "a fitted top with thin shoulder straps")),
    _Class("trouser", "Trouser", ("a pair of", "trousers"),
           (("a pair of", "pants"), ("a pair of", "jeans"), ("a pair of", "slacks"),
            ("a pair of", "leggings"), ("a pair of", "long pants")),
           ("trouser", "chinos", "sweatpants"),
           ("denim jeans laid out flat",
            "long pants with straight legs",
            "tailored trousers for the office",
            "chinos on a plain background",
            "skinny jeans, front view",
            "black leggings for yoga class",
            "wide-leg slacks photographed from above",
            "casual cotton pants for everyday wear",
            "pressed suit trousers with a crease",
            "sweatpants for lounging at home")),
    _Class("pullover", "Pullover", ("a", "pullover"),
           (("a", "sweater"), ("a", "jumper"), ("a", "sweatshirt"), ("a", "hoodie"), ("a", "knit sweater")),
           ("turtleneck", "turtlenecks", "knitwear", "hooded sweatshirt", "hooded sweatshirts"),
           ("a warm wool sweater for winter",
            "a cozy knitted jumper, flat lay",
            "a long-sleeved pullover with ribbed cuffs",
            "a chunky cable-knit sweater",
            "a fleece sweatshirt on a white background",
            "a crew-neck jumper shown in a catalog",
            "a hooded sweatshirt for cold days",
            "a turtleneck seen from the front",
            "knitwear for the colder months",
            "a soft hoodie with a front pocket")),
    _Class("dress", "Dress", ("a", "dress"),
           (("a", "gown"), ("a", "sundress"), ("a", "frock"), ("a", "cocktail dress"), ("a", "summer dress")),
           ("maxi dress", "maxi dresses", "evening gown", "evening gowns"),
           ("a flowing evening gown",
            "a sleeveless dress with a flared skirt",
            "a knee-length dress for a party",
            "a little black dress on a plain background",
            "a floral sundress for the beach",
            "a long maxi dress, front view",
            "an elegant frock with thin straps",
            "a wrap dress photographed for an online store",
            "a fitted bodycon dress",
            "a ball gown with a full skirt")),
    _Class("coat", "Coat", ("a", "coat"),
           (("a", "jacket"), ("an", "overcoat"), ("a", "parka"), ("a", "trench coat"), ("a", "winter coat")),
           ("anorak", "anoraks", "outerwear", "puffer jacket", "puffer jackets", "raincoat", "raincoats"),
           ("a heavy winter coat with buttons",
            "a zip-up jacket with long sleeves",
            "a padded parka for snowy weather",
            "a leather jacket on a dark background",
            "a long trench coat, front view",
            "a wool overcoat for cold mornings",
            "a denim jacket photographed flat",
            "an anorak with a hood",
            "outerwear for rainy days",
            "a puffer jacket for skiing")),
    _Class("sandal", "Sandal", ("a", "sandal"),
           (("a", "flip-flop"), ("an", "open-toe shoe"), ("a", "strappy sandal"), ("a", "summer sandal"),
            ("a", "slide sandal")),
           ("slide", "slides", "gladiator sandal", "gladiator sandals", "wedge sandal", "wedge sandals"),
           ("strappy sandals for a day at the beach",
            "a pair of flip-flops by the pool",
            "a pair of slides for the swimming pool",
            "a high-heeled sandal with thin straps",
            "leather sandals, side view",
            "a gladiator sandal with many straps",
            "an open-toe shoe with a low heel",
            "summer sandals photographed from above",
            "a wedge sandal for warm days",
            "flip-flops made of rubber")),
    _Class("shirt", "Shirt", ("a", "shirt"),
           (("a", "blouse"), ("a", "button-down shirt"), ("a", "flannel shirt"), ("a", "collared shirt"),
            ("a", "long-sleeved shirt")),
           ("button-up shirt", "button-up shirts", "oxford shirt", "linen shirt"),
           ("a long-sleeved blouse with buttons",
            "a checked flannel shirt, front view",
            "a formal shirt with a collar and cuffs",
            "a silk blouse on a plain background",
            "a button-up shirt for the office",
            "a plaid shirt hanging flat",
            "a linen shirt for warm weather",
            "an oxford shirt photographed for a catalog",
            "a denim shirt with chest pockets")),
    _Class("sneaker", "Sneaker", ("a", "sneaker"),
           (("a", "running shoe"), ("a", "trainer"), ("a", "sports shoe"), ("an", "athletic shoe"),
            ("a", "low-top sneaker")),
           ("athletic footwear", "tennis shoe", "tennis shoes", "basketball sneaker", "basketball sneakers"),
           ("running shoes on a white background",
            "a pair of trainers for jogging",
            "athletic footwear for the gym",
            "a canvas sneaker with white laces",
            "lace-up trainers for the track",
            "a lightweight running shoe photographed from the side",
            "a high-top basketball sneaker",
            "tennis shoes for sport",
            "a sporty sneaker with a thick sole",
            "sneakers, side view")),
    _Class("bag", "Bag", ("a", "bag"),
           (("a", "handbag"), ("a", "purse"), ("a", "tote bag"), ("a", "shoulder bag"), ("a", "leather bag")),
           ("tote", "totes", "clutch", "clutches", "backpack", "backpacks", "satchel", "satchels",
            "messenger bag", "crossbody bag", "beach bag"),
           ("a leather handbag with a short handle",
            "a canvas tote for shopping",
            "a small clutch for an evening out",
            "a backpack for school",
            "a designer purse on a plain background",
            "a satchel with a long strap",
            "a messenger bag, front view",
            "a woven beach bag",
            "a crossbody bag photographed from above")),
    _Class("ankle_boot", "Ankle boot", ("an", "ankle boot"),
           (("a", "boot"), ("a", "short boot"), ("a", "chelsea boot"), ("a", "heeled boot"),
            ("a", "leather boot")),
           ("bootie", "booties", "combat boot", "combat boots", "hiking boot", "hiking boots", "cowboy boot",
            "cowboy boots"),
           ("a pair of leather boots for autumn",
            "ankle-high boots with a zip",
            "a suede bootie with a block heel",
            "winter boots on a white background",
            "a lace-up combat boot",
            "chelsea boots photographed from the side",
            "a hiking boot with a rugged sole",
            "a heeled ankle boot for a night out",
            "a cowboy boot, side view")),
)

CLASS_KEYS: tuple[str, ...] = tuple(c.key for c in _CLASSES)
"""Stable short keys in the official order: tshirt, trouser, pullover, dress, coat, sandal, shirt, sneaker,
bag, ankle_boot."""
CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in _CLASSES)
"""Official Fashion-MNIST names in label order (index = label)."""

TRAINING_TEMPLATES: tuple[str, ...] = (
    "a photo of {}",
    "a picture of {}",
    "an image of {}",
    "a product photo of {}",
    "{}",
    "a close-up photo of {}",
    "a black and white photo of {}",
    "a catalog photo of {}",
)
"""Templates of the training captions; ``{}`` takes a determiner plus noun, e.g. ``"an ankle boot"``."""


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().replace("_", " ").split())


@functools.cache
def _words(idx: int) -> tuple[str, ...]:
    c = _CLASSES[idx]
    words: set[str] = set()
    for det, noun in (c.canonical, *c.synonyms):
        words.add(noun)
        if det != "a pair of":
            words.add(_plural(noun))
    words.update(c.extra_words)
    return tuple(sorted(words, key=lambda w: (-len(w), w)))


@functools.cache
def _lookup() -> dict[str, int]:
    table: dict[str, int] = {}
    for i, c in enumerate(_CLASSES):
        for alias in (c.key, c.name, str(i), *_words(i)):
            a = _norm(alias)
            if table.get(a, i) != i:  # guarded by the tests; keeps lookups unambiguous
                raise AssertionError(f"alias {a!r} names two classes")
            table[a] = i
    return table


def class_index(concept: str | int) -> int:
    """Index ``0..9`` of a class given its index, key (``"ankle_boot"``), official name (``"Ankle boot"``,
    ``"T-shirt/top"``) or any concept word/synonym (``"running shoe"``, ``"trainers"``); case-insensitive,
    ``_`` and spaces are interchangeable.

    Raises:
        SaceError: unknown concept; the message lists the valid keys.
    """
    if isinstance(concept, (int, np.integer)) and not isinstance(concept, bool):
        if 0 <= int(concept) < NUM_CLASSES:
            return int(concept)
        raise SaceError(f"class index {int(concept)} is out of range 0..{NUM_CLASSES - 1}")
    if isinstance(concept, str):
        idx = _lookup().get(_norm(concept))
        if idx is not None:
            return idx
    raise SaceError(f"unknown Fashion-MNIST concept {concept!r}; valid keys: {', '.join(CLASS_KEYS)} "
                    f"(official names, indices 0-9 and synonyms such as 'running shoe' work too)")


def class_key(cls: str | int) -> str:
    """Short key of a class (e.g. ``"sneaker"``). Raises SaceError for an unknown concept."""
    return CLASS_KEYS[class_index(cls)]


def class_name(cls: str | int) -> str:
    """Official name of a class (e.g. ``"Ankle boot"``). Raises SaceError for an unknown concept."""
    return CLASS_NAMES[class_index(cls)]


def canonical_name(cls: str | int) -> str:
    """The canonical noun phrase with its determiner, e.g. ``"a sneaker"``, ``"an ankle boot"``,
    ``"a pair of trousers"``. Raises SaceError for an unknown concept."""
    det, noun = _CLASSES[class_index(cls)].canonical
    return f"{det} {noun}"


def canonical_prompt(cls: str | int) -> str:
    """The canonical prompt ``"a photo of <canonical name>"``, e.g. ``"a photo of an ankle boot"``.

    It is always one of :func:`training_captions`. Raises SaceError for an unknown concept."""
    return TRAINING_TEMPLATES[0].format(canonical_name(cls))


def synonyms(cls: str | int) -> list[tuple[str, str]]:
    """``(determiner, noun)`` of each synonym of a class in caption order (the canonical noun excluded).
    Raises SaceError for an unknown concept."""
    return list(_CLASSES[class_index(cls)].synonyms)


def training_captions(cls: str | int) -> list[str]:
    """Training captions of one class: every template of :data:`TRAINING_TEMPLATES` times the canonical
    noun and 5 synonyms (48 captions, canonical prompt first, no duplicates).

    Raises:
        SaceError: unknown concept.
    """
    c = _CLASSES[class_index(cls)]
    out: list[str] = []
    for det, noun in (c.canonical, *c.synonyms):
        for t in TRAINING_TEMPLATES:
            cap = t.format(f"{det} {noun}")
            if cap not in out:
                out.append(cap)
    return out


def heldout_captions(cls: str | int) -> list[str]:
    """Held-out paraphrases of one class (>= 9), written by hand with other sentence shapes and partly other
    synonyms; none of them is a training caption of any class. Use them only for evaluation.

    Raises:
        SaceError: unknown concept.
    """
    return list(_CLASSES[class_index(cls)].heldout)


def all_training_captions() -> list[tuple[str, int]]:
    """Every training caption with its class index, class by class: ``[(caption, idx), ...]``."""
    return [(cap, i) for i in range(NUM_CLASSES) for cap in training_captions(i)]


def all_heldout_captions() -> list[tuple[str, int]]:
    """Every held-out paraphrase with its class index: ``[(caption, idx), ...]``."""
    return [(cap, i) for i in range(NUM_CLASSES) for cap in heldout_captions(i)]


def concept_words(cls: str | int) -> list[str]:
    """Lower-case words and phrases that name a class (singular and plural forms, synonyms of both caption
    sets), longest first so that phrase deletion removes ``"running shoes"`` before ``"shoes"``-like parts.

    Example: ``concept_words("sandal")`` contains ``"sandal"``, ``"sandals"``, ``"flip-flops"``,
    ``"open-toe shoe"``. Every training and held-out caption of the class contains one of them (as a whole
    word, see :func:`mentions_concept`) and none of another class. Raises SaceError for an unknown concept.
    """
    return list(_words(class_index(cls)))


@functools.cache
def _pattern(idx: int) -> re.Pattern:
    alts = "|".join(re.escape(w) for w in _words(idx))
    # a hyphen counts as part of a word: "t-shirt" must not match the word "shirt"
    return re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE)


def mentions_concept(text: str, cls: str | int) -> bool:
    """True when ``text`` contains a concept word of the class as a whole word (case-insensitive; hyphens
    join words, so ``"t-shirt"`` does not mention ``"shirt"``). Raises SaceError for an unknown concept."""
    return _pattern(class_index(cls)).search(text) is not None


def remove_concept_words(text: str, cls: str | int) -> str:
    """``text`` with every concept word of the class deleted (whole words, longest phrase first) and
    whitespace collapsed, e.g. ``"a photo of a sneaker"`` -> ``"a photo of a"``. Determiners are kept.
    Raises SaceError for an unknown concept."""
    out = _pattern(class_index(cls)).sub(" ", text)
    out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    return " ".join(out.split())
