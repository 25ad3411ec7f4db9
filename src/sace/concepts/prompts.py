"""Evaluation prompt sets: I2P, COCO captions, ImageNet/Imagenette classes, artist prompts.

The standard concept-erasure prompt files (``rohitgandikota/erasing`` ``data/*.csv``, copied to
``shared/data/prompts``; see ``shared/docs/related-work.md`` section 6) are CSV files with a ``prompt``
column, usually an ``evaluation_seed`` column, and one label column (``class``, ``label_str`` or
``artist``). I2P (``unsafe-prompts4703.csv``) also has a comma-separated ``categories`` column; the
VAR-erasure literature evaluates nudity on its ``sexual`` subset (931 prompts).

:func:`load_prompt_set` reads CSV (stdlib :mod:`csv`, no pandas), JSON, JSONL and TXT files into a
:class:`PromptSet`; :func:`load_adversarial_prompts` reads the published adversarial sets (Ring-A-Bell,
MMA-Diffusion, UnlearnDiffAtk; their formats in :mod:`sace.concepts.formats`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SaceError
from .formats import FORMATS, detect_format, prompt_column_of

__all__ = ["PromptSet", "load_prompt_set", "load_adversarial_prompts", "LABEL_COLUMNS", "SUPPORTED_EXTENSIONS"]

#: Columns tried, in order, when ``label_column`` is not given.
LABEL_COLUMNS: tuple[str, ...] = ("class", "label_str", "artist", "label", "concept")
#: File extensions :func:`load_prompt_set` understands.
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl", ".txt")

_DEFAULT_SEED_COLUMN = "evaluation_seed"


@dataclass
class PromptSet:
    """An ordered list of evaluation prompts with optional per-prompt seeds, labels and categories.

    All per-prompt lists have the same length as ``prompts`` (or are ``None``).

    Attributes:
        prompts: the prompt strings (leading/trailing whitespace stripped, never empty).
        seeds: per-prompt generation seeds (Python ints; I2P seeds exceed 2**31), or ``None`` when the
            file has no seed column.
        labels: per-prompt class / concept / artist name (whitespace stripped), or ``None``.
        categories: per-prompt raw comma-separated category string (I2P ``categories``), or ``None``.
        name: a short name, by default the file stem.
        source: the path the set was read from ("" when built in memory).
        rows: 0-based index of every prompt's record in the source file (CSV data rows without the
            header, JSON/JSONL entries, non-blank TXT lines), to join results back after filtering.
        columns: every other column of the source records, as raw strings, for the kept rows only
            (e.g. ``label_idx`` of ``imagenet_prompts.csv``, ``nudity_percentage`` of I2P).
    """

    prompts: list[str]
    seeds: list[int] | None = None
    labels: list[str] | None = None
    categories: list[str] | None = None
    name: str = ""
    source: str = ""
    rows: list[int] | None = None
    columns: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.prompts)
        for attr in ("seeds", "labels", "categories", "rows"):
            v = getattr(self, attr)
            if v is not None and len(v) != n:
                raise SaceError(f"PromptSet.{attr} has {len(v)} entries but there are {n} prompts; "
                                f"give one per prompt")
        for col, v in self.columns.items():
            if len(v) != n:
                raise SaceError(f"PromptSet column {col!r} has {len(v)} entries but there are {n} prompts")
        if self.rows is None:
            self.rows = list(range(n))

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, idx: int | slice | Sequence[int]) -> PromptSet | str:
        """``ps[i]`` is the i-th prompt string; ``ps[a:b]`` or ``ps[[i, j]]`` is a new :class:`PromptSet`."""
        if isinstance(idx, int):
            return self.prompts[idx]
        return self.subset(idx)

    def subset(self, idx: slice | Sequence[int]) -> PromptSet:
        """The rows ``idx`` (a slice or a sequence of ints) as a new :class:`PromptSet`."""
        if isinstance(idx, slice):
            idx = list(range(len(self)))[idx]
        idx = [int(i) for i in idx]

        def pick(v):
            return None if v is None else [v[i] for i in idx]

        return PromptSet([self.prompts[i] for i in idx], pick(self.seeds), pick(self.labels),
                         pick(self.categories), self.name, self.source, pick(self.rows),
                         {k: pick(v) for k, v in self.columns.items()})

    def label_names(self) -> list[str]:
        """Distinct labels in order of first appearance (empty when the set has no labels)."""
        return list(dict.fromkeys(self.labels or []))

    def category_names(self) -> list[str]:
        """Distinct individual categories (split on commas) in order of first appearance."""
        out: dict[str, None] = {}
        for c in self.categories or []:
            for part in _split_categories(c):
                out.setdefault(part, None)
        return list(out)


def _split_categories(value: str) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def _read_records(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Records (dicts of strings) and the column names, in file order."""
    ext = path.suffix.lower()
    try:
        if ext == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                columns = [c for c in (reader.fieldnames or [])]
                records = [{k: (v if v is not None else "") for k, v in r.items() if k is not None}
                           for r in reader]
            return records, columns
        if ext == ".txt":
            with path.open(encoding="utf-8-sig") as f:
                lines = [ln.rstrip("\r\n") for ln in f]
            return [{"prompt": ln} for ln in lines if ln.strip()], ["prompt"]
        if ext == ".json":
            with path.open(encoding="utf-8-sig") as f:
                data = json.load(f)
            if isinstance(data, dict):
                if "prompts" not in data:
                    raise SaceError(f"{path}: a JSON object must have a 'prompts' list (keys found: "
                                    f"{sorted(data)}); write {{\"prompts\": [...]}} or a top-level list")
                data = data["prompts"]
            if not isinstance(data, list):
                raise SaceError(f"{path}: expected a JSON list of prompts or objects, got "
                                f"{type(data).__name__}; write a list or {{\"prompts\": [...]}}")
            return _normalise_items(data, path, "item")
        if ext == ".jsonl":
            items = []
            with path.open(encoding="utf-8-sig") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        items.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise SaceError(f"{path}: line {lineno} is not valid JSON ({e.msg}); write one JSON "
                                        f"object or string per line") from e
            return _normalise_items(items, path, "line")
    except json.JSONDecodeError as e:
        raise SaceError(f"{path}: invalid JSON ({e.msg} at line {e.lineno}); fix the file") from e
    except UnicodeDecodeError as e:
        raise SaceError(f"{path}: not UTF-8 text ({e.reason}); re-save the file as UTF-8") from e
    except csv.Error as e:
        raise SaceError(f"{path}: malformed CSV ({e}); fix the file") from e
    raise SaceError(f"{path}: unsupported prompt file extension {path.suffix!r}; use one of "
                    f"{', '.join(SUPPORTED_EXTENSIONS)}")


def _normalise_items(items: list, path: Path, what: str) -> tuple[list[dict[str, str]], list[str]]:
    records: list[dict[str, str]] = []
    columns: dict[str, None] = {}
    for i, it in enumerate(items):
        if isinstance(it, str):
            rec = {"prompt": it}
        elif isinstance(it, dict):
            rec = {str(k): ("" if v is None else v if isinstance(v, str) else
                            ",".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in it.items()}
        else:
            raise SaceError(f"{path}: {what} {i} is a {type(it).__name__}; each entry must be a prompt "
                            f"string or an object with a 'prompt' key")
        for k in rec:
            columns.setdefault(k, None)
        records.append(rec)
    return records, list(columns)


def load_prompt_set(
    path: str | Path,
    *,
    categories: str | Sequence[str] | None = None,
    limit: int | None = None,
    seed_column: str | None = _DEFAULT_SEED_COLUMN,
    label_column: str | None = None,
    skip_empty: bool = False,
    name: str | None = None,
    prompt_column: str | None = None,
) -> PromptSet:
    """Read a prompt set from a CSV, JSON, JSONL or TXT file.

    Formats:
        * ``.csv``: a header row with a ``prompt`` column (read with the stdlib :mod:`csv` module, so
          quoted commas and newlines inside prompts are fine).
        * ``.json``: a list of prompt strings or objects with a ``"prompt"`` key, or
          ``{"prompts": [...]}`` holding such a list.
        * ``.jsonl``: one JSON object (with ``"prompt"``) or string per line.
        * ``.txt``: one prompt per line; blank lines are ignored.

    Args:
        path: the file.
        categories: keep only records whose comma-separated ``categories`` column contains at least one
            of these categories (exact match after stripping; e.g. ``"sexual"`` on I2P keeps the
            931-prompt nudity subset used in the literature).
        limit: keep at most the first ``limit`` records (after category filtering and empty skipping).
        seed_column: the integer seed column (default ``evaluation_seed``). If the default column is
            absent, ``seeds`` is ``None``; a column named explicitly must exist. ``None`` ignores seeds.
        label_column: the label column; ``None`` tries ``class``, ``label_str``, ``artist``, ``label``,
            ``concept`` in that order (``labels`` is ``None`` if none exists). Labels are stripped.
        skip_empty: drop records with an empty prompt instead of raising (the full I2P file has one:
            data row 2260, category ``illegal activity``).
        name: the set's name; defaults to the file stem.
        prompt_column: the column holding the prompts; ``None``: ``prompt``, or for a file without one
            the column of a recognised adversarial prompt set (Ring-A-Bell ``sensitive prompt``,
            MMA-Diffusion ``adv_prompt``; :mod:`sace.concepts.formats`).

    Returns:
        A :class:`PromptSet`; ``rows`` holds each kept record's 0-based data-row index in the file.

    Raises:
        SaceError: the file is missing or has an unsupported extension; it has no ``prompt`` column
            (the message lists the columns it has); a prompt is empty (the message names the row) and
            ``skip_empty`` is false; a requested category is not present (the message lists those
            present) or the file has no ``categories`` column; a seed is not an integer; a named
            seed/label column is missing; ``limit`` is negative; the file is not valid UTF-8/JSON/CSV.
    """
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise SaceError(f"{path}: unsupported prompt file extension {path.suffix!r}; use one of "
                        f"{', '.join(SUPPORTED_EXTENSIONS)}")
    if not path.is_file():
        raise SaceError(f"prompt file {path} does not exist; check the path (the standard sets live in "
                        f"shared/data/prompts)")
    if limit is not None and limit < 0:
        raise SaceError(f"limit must be >= 0, got {limit}")

    records, columns = _read_records(path)
    if prompt_column is None and "prompt" not in columns:
        prompt_column = prompt_column_of(columns, path)   # adversarial sets name their column otherwise
    if prompt_column not in (None, "prompt"):
        if prompt_column not in columns:
            raise SaceError(f"{path} has no prompt column {prompt_column!r} (columns: {', '.join(columns)})")
        records = [{**r, "prompt": r.get(prompt_column, "")} for r in records]
        columns = [c for c in columns if c not in (prompt_column, "prompt")] + ["prompt"]

    # Category filter.
    wanted: list[str] | None = None
    if categories is not None:
        wanted = [categories] if isinstance(categories, str) else list(categories)
        wanted = [c.strip() for c in wanted]
        if not wanted:
            raise SaceError("categories= is an empty list; pass None to keep every category")
        if "categories" not in columns:
            raise SaceError(f"{path} has no 'categories' column (columns: {', '.join(columns)}); "
                            f"drop the categories= filter or use a file such as I2P that has one")
        present: dict[str, None] = {}
        for r in records:
            for c in _split_categories(r.get("categories", "")):
                present.setdefault(c, None)
        unknown = [c for c in wanted if c not in present]
        if unknown:
            raise SaceError(f"{path}: unknown categor{'y' if len(unknown) == 1 else 'ies'} "
                            f"{', '.join(map(repr, unknown))}; categories present: "
                            f"{', '.join(sorted(present))}")

    # Seed and label columns.
    if seed_column is not None and seed_column not in columns:
        if seed_column != _DEFAULT_SEED_COLUMN:
            raise SaceError(f"{path} has no seed column {seed_column!r} (columns: {', '.join(columns)}); "
                            f"pass seed_column=None or the right column name")
        seed_column = None
    if label_column is not None:
        if label_column not in columns:
            raise SaceError(f"{path} has no label column {label_column!r} (columns: {', '.join(columns)}); "
                            f"pass one of those or label_column=None")
    else:
        label_column = next((c for c in LABEL_COLUMNS if c in columns), None)

    kept: list[tuple[int, dict[str, str]]] = []
    for i, r in enumerate(records):
        if limit is not None and len(kept) >= limit:
            break
        if wanted is not None and not set(wanted) & set(_split_categories(r.get("categories", ""))):
            continue
        if not (r.get("prompt") or "").strip():
            if skip_empty:
                continue
            where = f"data row {i} (line {i + 2})" if path.suffix.lower() == ".csv" else f"entry {i}"
            raise SaceError(f"{path}: empty prompt at {where}; fill it in or pass skip_empty=True")
        kept.append((i, r))

    seeds = None
    if seed_column is not None:
        seeds = []
        for i, r in kept:
            raw = (r.get(seed_column) or "").strip()
            try:
                seeds.append(int(raw))
            except ValueError:
                try:
                    f = float(raw)
                    if not f.is_integer():
                        raise ValueError
                    seeds.append(int(f))
                except ValueError:
                    raise SaceError(f"{path}: seed {raw!r} in column {seed_column!r} at data row {i} is not "
                                    f"an integer; fix it or pass seed_column=None") from None
            if not 0 <= seeds[-1] <= 2**64 - 1:   # torch.Generator keeps 64 bits: a larger seed is not a seed
                raise SaceError(f"{path}: seed {raw} in column {seed_column!r} at data row {i} is outside "
                                f"[0, 2**64 - 1]; fix it or pass seed_column=None")

    special = {"prompt", seed_column, label_column, "categories"}
    extra = {c: [r.get(c, "") for _, r in kept] for c in columns if c and c not in special}
    return PromptSet(
        prompts=[r["prompt"].strip() for _, r in kept],
        seeds=seeds,
        labels=[(r.get(label_column) or "").strip() for _, r in kept] if label_column else None,
        categories=[r.get("categories", "") for _, r in kept] if "categories" in columns else None,
        name=name if name is not None else path.stem,
        source=str(path),
        rows=[i for i, _ in kept],
        columns=extra,
    )


def load_adversarial_prompts(path: str | Path, format: str = "auto", *, limit: int | None = None,
                             categories: str | Sequence[str] | None = None) -> PromptSet:
    """Read a published adversarial prompt set (Ring-A-Bell, MMA-Diffusion, UnlearnDiffAtk) from its CSV.

    Args:
        path: the CSV file as downloaded.
        format: a key of :data:`FORMATS` or ``"auto"`` (detected from the header).
        limit, categories: as :func:`load_prompt_set` (categories: I2P subsets).
    Returns:
        A :class:`PromptSet` named after the format; seeds from ``evaluation_seed`` when present; every other
        column (``target_prompt``, ``evaluation_guidance`` ...) in ``columns``.
    Raises:
        SaceError: unknown format, missing file, a file without the format's prompt column, empty prompts.
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise SaceError(f"unknown adversarial prompt format {format!r}; use auto or one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise SaceError(f"prompt file {path} does not exist; download the set and give its path")
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), [])
    if format == "auto":
        format = detect_format(header) or ""
        if not format:
            prompt_column_of(header, path)          # raises the clear error unless 'prompt' exists
            format = "plain"
    col = FORMATS[format].prompt_column if format in FORMATS else "prompt"
    if col not in header:
        raise SaceError(f"{path} is not a {format} file: no {col!r} column (columns: {', '.join(header) or 'none'})")
    return load_prompt_set(path, prompt_column=col, limit=limit, categories=categories, skip_empty=True,
                           name=format)
