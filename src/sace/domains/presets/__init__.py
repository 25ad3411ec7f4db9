"""The ``presets`` domain: the concepts shipped for text-to-image models that name no domain of their own
(Infinity-2B/8B/125M, the tiny fixture, the class-conditional VAR models): ``nudity``, ``vangogh`` and the ten
Imagenette objects (:mod:`.files`).

A preset's ``detector`` field decides its judge: ``nudenet`` -> NudeNet, ``imagenet`` -> the ImageNet
classifier on the preset's ``imagenet_index``, ``null`` -> none (commands that need a judge say so). The
core reaches this package only through the registry :mod:`sace.domains`.
"""

from __future__ import annotations

from ...concepts.grammar import word_pattern
from ...concepts.items import EvalItem
from ...concepts.judge import Judge, NoDetector, imagenet_judge, nudenet_judge
from ...concepts.spec import ConceptSpec
from ...errors import SaceError
from .files import describe_presets, load_preset, preset_meta, preset_names

__all__ = ["DOMAIN", "PresetsDomain"]


class PresetsDomain:
    """The :class:`sace.domains.Domain` of the shipped concept presets."""

    name = "presets"
    own_detector = False      # a preset's judge is a named detector (its ``detector`` field), not the domain's

    def concepts(self) -> list[str]:
        """The preset names (sorted)."""
        return preset_names()

    def concept(self, name: str, anchor: str | None = None) -> ConceptSpec:
        """The preset ``name`` (``anchor`` replaces its anchor phrase).

        Raises:
            SaceError: no preset of that name (the message lists them and the other ways to give prompts).
        """
        key = name.strip().lower()
        if key not in preset_names():
            raise SaceError(f"no target prompts for concept {name!r} (the model has no built-in concepts); use a "
                            f"preset ({', '.join(preset_names())}), or give --target PROMPT (repeatable) and "
                            "--anchor PHRASE, or --concept-file")
        return load_preset(key, anchor)

    def named_concept(self, prompt: str) -> str:
        """The preset whose concept words ``prompt`` names (``"a nude woman"`` -> ``nudity``).

        Raises:
            SaceError: the prompt names no preset, or several.
        """
        named = [n for n in preset_names() if _names(n, prompt)]
        if len(named) != 1:
            raise SaceError(f"cannot tell which concept {prompt!r} names; pass --concept "
                            f"({', '.join(preset_names())}) or --detector")
        return named[0]

    def judge(self, concept: str | None, *, threshold: float = 0.6, device="cpu") -> Judge:
        """The judge the preset's ``detector`` field names; a merged concept (``church+parachute``) needs one
        detector for all its parts.

        Raises:
            NoDetector: no concept, a concept that is no preset, a preset without detector, or parts judged by
                different detectors.
        """
        if not concept:
            raise NoDetector("name the concept (--concept) or a detector (--detector nudenet, imagenet, ...)")
        parts = concept.split("+")
        unknown = [p for p in parts if p.strip().lower() not in preset_names()]
        if unknown:
            raise NoDetector(f"'{unknown[0]}' is no shipped preset")
        metas = [preset_meta(p) for p in parts]
        kinds = {m.get("detector") for m in metas}
        if None in kinds:
            none = next(p for p, m in zip(parts, metas) if not m.get("detector"))
            raise NoDetector(f"the preset '{none}' names no detector")
        if len(kinds) > 1:
            raise NoDetector(f"the parts of '{concept}' are judged by different detectors ({', '.join(sorted(kinds))})")
        if kinds.pop() == "nudenet":
            return nudenet_judge(concept, threshold=threshold)
        return imagenet_judge(concept, device=device, index=[int(m["imagenet_index"]) for m in metas])

    def eval_items(self, concept: ConceptSpec, n_per_class: int = 0, n_heldout: int = 0,
                   seed0: int = 0) -> list[EvalItem]:
        """The concept's targets (group ``target``; labelled with the preset's ImageNet class when it has one)
        and retain prompts (group ``prompts``), seeds ``seed0 + i`` in each group. ``n_per_class`` and
        ``n_heldout`` are unused: a preset's prompt lists are its evaluation set."""
        meta = preset_meta(concept.name) if concept.name in preset_names() else {}
        label = meta.get("imagenet_index") if meta.get("detector") == "imagenet" else None
        items = [EvalItem(p, seed0 + i, label, "target") for i, p in enumerate(concept.targets)]
        return items + [EvalItem(p, seed0 + i, None, "prompts") for i, p in enumerate(concept.retain)]

    def describe(self) -> list[dict]:
        """One row per preset (name, prompt counts, detector, benchmark, description) for ``sace concepts``."""
        return describe_presets()


def _names(preset: str, prompt: str) -> bool:
    meta = preset_meta(preset)
    pat = word_pattern(meta.get("words") or [meta["name"]])
    return bool(pat and pat.search(prompt))


DOMAIN = PresetsDomain()
