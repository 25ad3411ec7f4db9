"""Fashion-MNIST data, class metadata and caption sets for the embedded default model ``fashion``.

Data
    :func:`load_split` reads the official IDX files as shipped by Debian's package
    ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``). The directory can be
    overridden with the ``root`` argument or the environment variable ``SACE_FASHION_MNIST_DIR``.
    The train split (60,000 images) and the test split (10,000 images) are never mixed.

Image conventions
    * Raw data: ``uint8`` ``(N, 28, 28)``, 0 = black background, 255 = white.
    * Generator space (:func:`to_model_images`): ``float32`` ``(N, 3, 32, 32)`` in ``[-1, 1]``; the 28x28
      item is centred with 2 px of black (``-1``) on every side and replicated to 3 channels.
    * Classifier space (:mod:`sace.evaluation.fashion_classifier`): ``float`` ``(N, 3, H, W)`` in
      ``[0, 1]``; :func:`model_to_unit` maps generator space there.

Captions
    Every class has a *training* caption set (templates x synonyms, which contains the canonical
    prompt :func:`canonical_prompt`, e.g. ``"a photo of a sneaker"``) and a separate hand-written
    *held-out* paraphrase set (:func:`heldout_captions`) that shares no caption with the training set and
    uses other sentence shapes and some other synonyms. :func:`concept_words` lists the words and phrases
    that name a class (singular and plural), and :func:`remove_concept_words` deletes them from a prompt.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import SaceError

__all__ = [
    "DEFAULT_DIR", "ENV_VAR", "NUM_CLASSES", "CLASS_KEYS", "CLASS_NAMES", "SPLIT_SIZES",
    "dataset_dir", "split_files", "load_split", "to_model_images", "model_to_unit", "unit_images",
    "class_index", "class_key", "class_name", "canonical_name", "canonical_prompt",
    "training_captions", "heldout_captions", "all_training_captions", "all_heldout_captions",
    "concept_words", "mentions_concept", "remove_concept_words", "TRAINING_TEMPLATES",
]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "SACE_FASHION_MNIST_DIR"
NUM_CLASSES = 10
SPLIT_SIZES = {"train": 60000, "test": 10000}
_IMAGE_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
_LABEL_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension
_PREFIX = {"train": "train", "test": "t10k"}
_FIX = f"install it with `sudo apt-get install dataset-fashion-mnist` or set {ENV_VAR} to a directory " \
       "holding the four Fashion-MNIST IDX files"
_REFIX = f"reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist` or set {ENV_VAR} to " \
         "a directory with intact files"


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------

def dataset_dir(root: str | os.PathLike | None = None) -> Path:
    """The Fashion-MNIST directory: ``root`` if given, else ``$SACE_FASHION_MNIST_DIR``, else
    :data:`DEFAULT_DIR`. The directory is not checked here (see :func:`split_files`)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else DEFAULT_DIR


def _check_split(split: str) -> str:
    if split not in _PREFIX:
        raise SaceError(f"unknown Fashion-MNIST split {split!r}; use 'train' or 'test'")
    return split


def split_files(split: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths ``(images, labels)`` of a split, e.g. ``train-images-idx3-ubyte.gz``.

    The gzip name is preferred; an uncompressed file of the same name without ``.gz`` is accepted too.

    Raises:
        SaceError: unknown split, or a file is missing (the message names the path and the fix).
    """
    _check_split(split)
    d = dataset_dir(root)
    out = []
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{_PREFIX[split]}-{kind}-ubyte"
        gz, raw = d / f"{name}.gz", d / name
        if gz.is_file():
            out.append(gz)
        elif raw.is_file():
            out.append(raw)
        else:
            raise SaceError(f"Fashion-MNIST file not found: {gz}; {_FIX}")
    return out[0], out[1]


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:  # BadGzipFile is an OSError, listed for clarity
        raise SaceError(f"cannot read Fashion-MNIST file {path} (corrupt or truncated: {e}); "
                        f"{_REFIX}") from e


def _parse_idx(path: Path, magic: int, expect_n: int) -> np.ndarray:
    """Parse an IDX file into uint8 ``(N,)`` (labels) or ``(N, 28, 28)`` (images), checking every field."""
    data = _read_bytes(path)
    ndim = 3 if magic == _IMAGE_MAGIC else 1
    header = 4 * (1 + ndim)  # 16 bytes for images, 8 for labels
    bad = f"corrupt Fashion-MNIST file {path}"
    if len(data) < header:
        raise SaceError(f"{bad}: only {len(data)} bytes, shorter than the {header}-byte IDX header; "
                        f"{_REFIX}")
    fields = np.frombuffer(data, dtype=">u4", count=1 + ndim).astype(np.int64)
    if int(fields[0]) != magic:
        raise SaceError(f"{bad}: magic number {int(fields[0])} (expected {magic}); {_REFIX}")
    dims = [int(x) for x in fields[1:]]
    if dims[0] != expect_n or (ndim == 3 and dims[1:] != [28, 28]):
        want = [expect_n, 28, 28][:ndim]
        raise SaceError(f"{bad}: header says shape {dims}, expected {want}; {_REFIX}")
    size = int(np.prod(dims))
    if len(data) != header + size:
        raise SaceError(f"{bad}: {len(data) - header} payload bytes, expected {size}; {_REFIX}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


@functools.lru_cache(maxsize=4)
def _load_cached(split: str, img_path: str, lbl_path: str, mtimes: tuple) -> tuple[np.ndarray, np.ndarray]:
    n = SPLIT_SIZES[split]
    images = _parse_idx(Path(img_path), _IMAGE_MAGIC, n)
    labels = _parse_idx(Path(lbl_path), _LABEL_MAGIC, n)
    if int(labels.max()) >= NUM_CLASSES:
        raise SaceError(f"corrupt Fashion-MNIST file {lbl_path}: label {int(labels.max())} is not in 0..9; "
                        f"{_REFIX}")
    return images, labels


def load_split(split: str, root: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """Load one Fashion-MNIST split.

    Args:
        split: ``"train"`` (60,000 images, 6,000 per class) or ``"test"`` (10,000, 1,000 per class).
        root: directory with the IDX files; default ``$SACE_FASHION_MNIST_DIR`` or :data:`DEFAULT_DIR`.
    Returns:
        ``(images, labels)``: ``uint8 (N, 28, 28)`` with 0 = black background and 255 = white, and
        ``int64 (N,)`` class indices in ``0..9`` in the official order (:data:`CLASS_NAMES`).
        The tensors are fresh copies (the parsed files are cached in memory only, nothing on disk).
    Raises:
        SaceError: unknown split, missing file (message names the path and the fix), or a corrupt file
            (bad gzip stream, wrong magic number, wrong counts or shape, truncated payload, label > 9).
    """
    img_path, lbl_path = split_files(split, root)
    mtimes = (img_path.stat().st_mtime_ns, lbl_path.stat().st_mtime_ns)
    images, labels = _load_cached(split, str(img_path.resolve()), str(lbl_path.resolve()), mtimes)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# --------------------------------------------------------------------------------------------------------
# Image conversions
# --------------------------------------------------------------------------------------------------------

def _as_nhw(images: Tensor | np.ndarray) -> Tensor:
    x = torch.as_tensor(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise SaceError(f"expected grayscale images (N, H, W) or (N, 1, H, W), got shape {tuple(x.shape)}")
    return x


def to_model_images(images: Tensor | np.ndarray, size: int = 32) -> Tensor:
    """Raw Fashion-MNIST images -> the generator's input space.

    Every pixel ``p`` (uint8) becomes ``p / 127.5 - 1`` (0 -> -1 black, 255 -> +1 white); the image is padded
    with background ``-1`` to ``size x size``, centred (for 28 -> 32: exactly 2 px on each side, so
    ``out[:, :, 2:30, 2:30]`` is the input), and the gray channel is replicated to 3 identical RGB channels.
    Nothing is resized: ``size`` must be >= the input size; an odd margin puts the extra pixel at the
    bottom/right.

    Args:
        images: ``uint8`` ``(N, H, W)``, ``(N, 1, H, W)`` or ``(H, W)`` (torch or numpy), values 0..255.
        size: output side in pixels (default 32, the generator's resolution).
    Returns:
        ``float32`` ``(N, 3, size, size)`` in ``[-1, 1]``.
    Raises:
        SaceError: wrong rank, non-uint8 input, or ``size`` smaller than the images.
    """
    x = _as_nhw(images)
    if x.dtype != torch.uint8:
        raise SaceError(f"to_model_images expects uint8 pixels 0..255, got dtype {x.dtype}")
    h, w = int(x.shape[1]), int(x.shape[2])
    if size < max(h, w):
        raise SaceError(f"cannot pad {h}x{w} images to {size}x{size}; size must be >= {max(h, w)}")
    x = x.float().div_(127.5).sub_(1.0)
    top, left = (size - h) // 2, (size - w) // 2
    x = F.pad(x, (left, size - w - left, top, size - h - top), value=-1.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def model_to_unit(images: Tensor) -> Tensor:
    """Generator space ``[-1, 1]`` -> classifier space ``[0, 1]``: ``(x + 1) / 2``, clamped.

    Shape and float dtype are kept (e.g. ``(N, 3, 32, 32)``)."""
    return images.float().add(1.0).mul_(0.5).clamp_(0.0, 1.0)


def unit_images(images: Tensor | np.ndarray) -> Tensor:
    """Raw ``uint8`` ``(N, 28, 28)`` -> ``float32`` ``(N, 3, 28, 28)`` in ``[0, 1]``.

    Pixels are divided by 255 and the gray channel is replicated to 3 channels: the "real data" input form
    of the concept classifier. Raises SaceError for a wrong rank or a non-uint8 input."""
    x = _as_nhw(images)
    if x.dtype != torch.uint8:
        raise SaceError(f"unit_images expects uint8 pixels 0..255, got dtype {x.dtype}")
    return x.float().div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


# --------------------------------------------------------------------------------------------------------
# Classes, captions and concept words
# --------------------------------------------------------------------------------------------------------

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
