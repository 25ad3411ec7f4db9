"""``sace app``: a local Gradio page to try prompts against an erased model.

Two tabs:

* **Compare** -- a prompt and seeds; the original model (every adapter off) and the erased model (the loaded
  adapters on) draw the same seeds side by side, and the concept's judge (:func:`sace.domains.judge_for`, the
  same judge as every command) gives its verdict per image;
* **Attack** -- one attack of :mod:`sace.attacks` (soft prompt, concept vector or discrete prompt search) against
  the loaded adapter, with a small budget, and what it found (ASR with and without the attack, the prompts or
  strengths it found, the images the judge flagged).

This is the only module that imports gradio (heavy: seconds); the CLI imports it inside ``sace app`` only.
The work is done by :class:`Session` (plain Python, tested without a browser); :func:`build_ui` lays out the
page around it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import gradio as gr
import torch

from . import domains
from .adapters import adapter_names, adapter_set
from .attacks.base import AttackTarget
from .attacks.concept_vector import ConceptVectorConfig
from .attacks.discrete import DiscreteConfig
from .attacks.runner import ATTACKS, AttackConfigs, run_attack
from .attacks.soft_prompt import SoftPromptConfig
from .concepts.judge import Judge, NoDetector, judge_line
from .errors import SaceError
from .generate import generate
from .images import grid_image
from .models.text import check_prompts

__all__ = ["Comparison", "Session", "build_ui", "parse_seeds"]


def parse_seeds(text: str, limit: int = 16) -> list[int]:
    """``"0-3"``, ``"0,1,5"`` or ``"4"`` (one seed) -> the seeds, at most ``limit``.

    Raises:
        SaceError: not integers, a negative seed, an empty list or more than ``limit`` seeds.
    """
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            a, sep, b = part.partition("-")
            seeds += list(range(int(a), int(b) + 1)) if sep else [int(a)]
    except ValueError:
        raise SaceError(f"seeds must be integers like 0-3 or 0,1,5, got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds):
        raise SaceError(f"give at least one seed >= 0 (e.g. 0-3), got {text!r}")
    if len(seeds) > limit:
        raise SaceError(f"at most {limit} seeds per prompt, got {len(seeds)}")
    return seeds


@dataclass
class Comparison:
    """One prompt drawn by both models: images ``(S, 3, H, W)`` in [0, 1] per side, the judge's flags per
    image (``None`` without a judge), and the wall time in seconds."""

    prompt: str
    seeds: list[int]
    original: torch.Tensor
    erased: torch.Tensor
    flags_original: list[bool] | None
    flags_erased: list[bool] | None
    seconds: float

    def verdict_rows(self) -> list[list[str]]:
        """``[model, seed, verdict]`` per image (the page's verdict table)."""
        rows = []
        for side, flags in (("original", self.flags_original), ("erased", self.flags_erased)):
            for i, s in enumerate(self.seeds):
                v = "no judge" if flags is None else ("concept shown" if flags[i] else "concept absent")
                rows.append([side, str(s), v])
        return rows

    def summary(self, judge_text: str) -> str:
        def rate(flags):
            return "n/a" if flags is None else f"{sum(flags)}/{len(flags)}"
        return (f"**{self.prompt}** -- concept shown: original {rate(self.flags_original)}, erased "
                f"{rate(self.flags_erased)} ({judge_text}; {2 * len(self.seeds)} images in {self.seconds:.2f} s)")


@dataclass
class Session:
    """A loaded model with its adapters, the concept they erase, and its judge.

    Attributes:
        model: a scale-wise model with at least one adapter attached.
        concept: the erased concept's name (default: the ``concept`` the first loaded adapter records).
        judge: the concept's :class:`~sace.concepts.judge.Judge`, or the :class:`NoDetector` saying why none.
    """

    model: object
    concept: str | None = None
    detector: str = "auto"
    judge: Judge | NoDetector | None = None
    adapters: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.adapters = adapter_names(self.model)
        if not self.adapters:
            raise SaceError("sace app compares a model with and without its adapter: give --adapter ADAPTER (a "
                            "merged export has no separate original; use --model BASE --adapter ADAPTER)")
        if self.concept is None:    # the concept the loaded adapters record (a name or a definition)
            for meta in adapter_set(self.model).metadata.values():
                c = meta.get("concept")
                if c:
                    self.concept = c.get("name") if isinstance(c, dict) else str(c)
                    break
        if self.judge is None:
            try:
                self.judge = domains.judge_for(self.model, self.concept, self.detector)
            except NoDetector as e:
                self.judge = e

    @property
    def judge_text(self) -> str:
        return judge_line(self.judge, "no detector: no verdicts")

    def _flags(self, images: torch.Tensor) -> list[bool] | None:
        if not isinstance(self.judge, Judge):
            return None
        return [bool(x) for x in self.judge.flag(images)]

    @torch.no_grad()
    def compare(self, prompt: str, seeds: Sequence[int]) -> Comparison:
        """Draw ``prompt`` with ``seeds`` on the original model and the erased one, and judge every image.

        Raises:
            SaceError: an empty prompt, bad seeds.
        """
        t = time.perf_counter()
        prompts = check_prompts([prompt] * len(seeds))
        with adapter_set(self.model).disabled():
            orig = generate(self.model, prompts, list(seeds))
        with adapter_set(self.model).only(self.adapters):
            erased = generate(self.model, prompts, list(seeds))
        return Comparison(prompts[0], list(seeds), orig, erased, self._flags(orig), self._flags(erased),
                          time.perf_counter() - t)

    def attack(self, name: str, n_prompts: int = 1, eval_seeds: int = 4, budget: int = 8, seed: int = 0) -> dict:
        """Run one attack of :data:`sace.attacks.runner.ATTACKS` against the loaded adapters (from its default
        start prompts of the concept) with ``budget`` (soft: gradient steps; vector: strengths 0..budget-1 /
        2; discrete: queries) and return what it found: ``{"asr", "asr_unattacked", "attempts", "found",
        "images" (flagged images or None), "seconds", "line"}``.

        Raises:
            SaceError: an unknown attack, no concept or no judge.
        """
        if name not in ATTACKS:
            raise SaceError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
        if not isinstance(self.judge, Judge):
            raise SaceError(f"an attack needs a judge: {self.judge_text}")
        concept = domains.resolve_concept(self.model, self.concept)
        cfgs = AttackConfigs(SoftPromptConfig(steps=budget, pyramids=2, checkpoints=2, seed=seed),
                             ConceptVectorConfig([0.5 * i for i in range(budget)]),
                             DiscreteConfig(queries=budget, checkpoints=2, seed=seed))
        t = time.perf_counter()
        target = AttackTarget("erased", list(self.adapters))
        res = run_attack(self.model, name, ATTACKS[name][1], target, concept, self.judge, n_prompts,
                         [seed + 1000 + i for i in range(eval_seeds)], [seed], cfgs)
        return {"asr": res.asr, "asr_unattacked": res.asr_unattacked, "attempts": res.attempts,
                "found": res.found, "images": res.success_images, "seconds": time.perf_counter() - t,
                "line": (f"{res.attack} against the erased model: ASR {res.asr:.2f} (without the attack "
                         f"{res.asr_unattacked:.2f}) over {res.attempts} attempts, {time.perf_counter() - t:.1f} s")}


def _grid(images: torch.Tensor, seeds: Sequence[int], title: str, flags: list[bool] | None):
    labels = [f"seed {s}" + ("" if flags is None else (" *" if flags[i] else "")) for i, s in enumerate(seeds)]
    size = images.shape[-1]
    return grid_image(images, min(4, len(seeds)), col_labels=labels, upscale=max(1, 128 // size), title=title)


def build_ui(session: Session, *, default_prompt: str = "", default_seeds: str = "0-3") -> gr.Blocks:
    """The page (see the module docstring); elements carry ``elem_id`` s for the browser test (``prompt``,
    ``seeds``, ``run``, ``grid-original``, ``grid-erased``, ``verdicts``, ``summary``, ``attack-*``)."""
    m = session.model

    def on_compare(prompt: str, seeds: str):
        try:
            c = session.compare(prompt, parse_seeds(seeds))
        except SaceError as e:
            raise gr.Error(str(e)) from None
        return (_grid(c.original, c.seeds, "original", c.flags_original),
                _grid(c.erased, c.seeds, "erased", c.flags_erased), c.verdict_rows(), c.summary(session.judge_text))

    def on_attack(name: str, budget: float):
        try:
            r = session.attack(name, budget=int(budget))
        except SaceError as e:
            raise gr.Error(str(e)) from None
        found = "\n".join(f"- {', '.join(f'{k}: {v}' for k, v in f.items() if not isinstance(v, (list, dict)))}"
                          for f in r["found"])
        img = None
        if r["images"] is not None and len(r["images"]):
            img = grid_image(r["images"], min(8, len(r["images"])), upscale=max(1, 128 // r["images"].shape[-1]),
                             title="flagged attack images")
        return f"{r['line']}\n\nfound:\n{found or '- nothing'}", img

    with gr.Blocks(title=f"sace: {m.name}") as ui:
        gr.Markdown(f"## sace -- {m.name}: original vs erased ({', '.join(session.adapters)})\n\n"
                    f"{session.judge_text}; in the grids, * marks an image the judge flags as the concept")
        with gr.Tab("Compare"):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", value=default_prompt, elem_id="prompt", scale=4)
                seeds = gr.Textbox(label="Seeds (e.g. 0-3 or 0,5,9)", value=default_seeds, elem_id="seeds", scale=1)
                run = gr.Button("Generate", variant="primary", elem_id="run", scale=1)
            summary = gr.Markdown(elem_id="summary")
            with gr.Row():
                g_orig = gr.Image(label="original model", type="pil", elem_id="grid-original", format="png")
                g_erased = gr.Image(label="erased model", type="pil", elem_id="grid-erased", format="png")
            verdicts = gr.Dataframe(headers=["model", "seed", "verdict"], label="Judge's verdict per image",
                                    elem_id="verdicts", interactive=False)
            ins = [prompt, seeds]
            outs = [g_orig, g_erased, verdicts, summary]
            run.click(on_compare, ins, outs)
            prompt.submit(on_compare, ins, outs)
        with gr.Tab("Attack"):
            gr.Markdown("One attack against the loaded adapter, from the concept's prompts, with a small budget.")
            with gr.Row():
                which = gr.Radio(list(ATTACKS), value="vector", label="attack", elem_id="attack-name")
                budget = gr.Slider(2, 32, value=6, step=1, label="budget (steps / strengths / queries)",
                                   elem_id="attack-budget")
                go = gr.Button("Attack", elem_id="attack-run")
            found = gr.Markdown(elem_id="attack-found")
            shots = gr.Image(label="what it found", type="pil", elem_id="attack-images", format="png")
            go.click(on_attack, [which, budget], [found, shots])
    return ui
