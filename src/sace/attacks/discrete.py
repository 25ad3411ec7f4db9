"""Discrete prompt attack (black box, real strings): beam search over word substitutions and insertions.

The candidate words are the text encoder's own vocabulary entries nearest to the concept words in its
input-embedding space (cosine similarity; the idea of the hard-prompt attacks P4D / UnlearnDiffAtk and of
Ring-A-Bell's discretisation, restricted to whole words so that a user can retype the result). The concept's
own words and synonyms (every word of ``concept.words``) are never proposed: the attack must find *other*
strings. Each query generates the candidate prompt at the search seeds and asks the detector for its mean
concept score; the search keeps the ``beam`` best prompts seen and stops at the query budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import SaceError
from .base import AttackResult, AttackSetup, AttackTarget, CurvePoint, Stopwatch, encode, finish, judge_attempts


@dataclass
class DiscreteConfig:
    """Discrete attack settings (the budget is ``queries`` detector queries per start prompt)."""

    queries: int = 24           # detector queries per start prompt (the start prompt's own score is one)
    neighbours: int = 24        # vocabulary words nearest to the concept words
    proposals: int = 8          # new candidate prompts per round
    beam: int = 2               # prompts kept and expanded per round
    checkpoints: int = 4        # points of the ASR-vs-queries curve
    seed: int = 0

    def validate(self) -> None:
        if self.queries < 1 or self.neighbours < 1 or self.proposals < 1 or self.beam < 1:
            raise SaceError("the discrete attack needs queries, neighbours, proposals and beam >= 1")


def _hf_encoder(model):
    enc = getattr(model, "text_encoder", None)
    enc = getattr(enc, "inner", enc)
    if enc is None or not hasattr(enc, "tokenizer") or not hasattr(getattr(enc, "model", None),
                                                                   "get_input_embeddings"):
        raise SaceError(f"the discrete attack needs a Hugging Face text encoder with a vocabulary; model "
                        f"{getattr(model, 'name', '?')!r} has none")
    return enc


def vocabulary_neighbours(model, words: Sequence[str], k: int, exclude: Sequence[str] = ()) -> list[str]:
    """The ``k`` whole-word vocabulary entries of the model's text encoder nearest (max cosine similarity of
    input embeddings; a multi-piece word is the mean of its pieces) to any of ``words``, best first.

    Whole words: alphabetic, >= 3 letters, not a WordPiece continuation (``##``); with a SentencePiece
    vocabulary only word-initial pieces (``▁``). Words in ``exclude`` (case-insensitive) are skipped.

    Raises:
        SaceError: no words, or no text encoder with a vocabulary.
    """
    words = [w for w in words if w.strip()]
    if not words:
        raise SaceError("the discrete attack needs the concept's words (ConceptSpec.words) to find neighbours")
    enc = _hf_encoder(model)
    emb = enc.model.get_input_embeddings().weight.detach().float()        # (V, C)
    vocab = enc.tokenizer.get_vocab()
    inv = [""] * emb.shape[0]
    for tok, i in vocab.items():
        if i < len(inv):
            inv[i] = tok
    sentencepiece = any(t.startswith("▁") for t in inv[:2000])
    banned = {w.lower() for w in exclude}

    def whole(tok: str) -> str | None:
        if sentencepiece:
            if not tok.startswith("▁"):
                return None
            tok = tok[1:]
        elif tok.startswith("##"):
            return None
        return tok.lower() if tok.isalpha() and len(tok) >= 3 and tok.lower() not in banned else None

    names = [whole(t) for t in inv]
    ok = torch.tensor([n is not None for n in names])
    queries = []
    for w in words:
        ids = enc.tokenizer(w, add_special_tokens=False)["input_ids"]
        if ids:
            queries.append(emb[ids].mean(0))
    sim = F.normalize(emb, dim=-1) @ F.normalize(torch.stack(queries), dim=-1).T      # (V, n_words)
    best = sim.max(1).values.masked_fill(~ok, -2.0)
    out: list[str] = []
    for i in best.argsort(descending=True).tolist():
        if not ok[i] or len(out) >= k:
            break
        if names[i] not in out:
            out.append(names[i])
    return out


def _moves(words: list[str], vocab: list[str]) -> list[list[str]]:
    """Every substitution of one word and every insertion of one word from ``vocab``."""
    out = []
    for j in range(len(words)):
        out += [words[:j] + [v] + words[j + 1:] for v in vocab if v != words[j]]
    for j in range(len(words) + 1):
        out += [words[:j] + [v] + words[j:] for v in vocab]
    return out


def search_prompt(score_fn, start: str, vocab: list[str], cfg: DiscreteConfig) -> tuple[str, list[tuple[str, float]]]:
    """Beam search from ``start`` within ``cfg.queries`` calls' worth of prompts.

    Args:
        score_fn: ``list[str] -> list[float]`` (one detector query per string; called with batches).
    Returns:
        (the best prompt, the query log ``[(prompt, score)]`` in query order, ``len <= cfg.queries``).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    seen: dict[str, float] = {}
    log: list[tuple[str, float]] = []

    def query(prompts: list[str]) -> None:
        prompts = [p for p in dict.fromkeys(prompts) if p not in seen][: cfg.queries - len(log)]
        if prompts:
            for p, s in zip(prompts, score_fn(prompts)):
                seen[p] = float(s)
                log.append((p, float(s)))

    query([start])
    while len(log) < cfg.queries:
        beam = sorted(seen, key=lambda p: -seen[p])[: cfg.beam]
        cands = [" ".join(m) for b in beam for m in _moves(b.split(), vocab)]
        cands = [c for c in dict.fromkeys(cands) if c not in seen]
        if not cands:
            break
        pick = torch.randperm(len(cands), generator=gen)[: cfg.proposals].tolist()
        query([cands[i] for i in pick])
    best = max(seen, key=lambda p: seen[p])
    return best, log


def discrete_attack(model, target: AttackTarget, setup: AttackSetup, words: Sequence[str],
                    cfg: DiscreteConfig | None = None, exclude: Sequence[str] | None = None) -> AttackResult:
    """Search real prompt strings from every ``setup.prompts`` against ``target``.

    Args:
        words: the concept's words (neighbour queries). exclude: words never proposed (default: every word
            of ``words``).
    Steps: 1. vocabulary neighbours; 2. per start prompt a beam search within ``cfg.queries`` queries scored
    on the search seeds; 3. the best prompt among the first b queries is judged on the evaluation seeds (the
    ASR-vs-queries curve; b = the budget gives the result). The found prompts are in ``found``.
    """
    cfg = cfg or DiscreteConfig()
    cfg.validate()
    exclude = [x for w in words for x in w.lower().replace("-", " ").split()] + list(words) \
        if exclude is None else list(exclude)
    seeds = list(setup.search_seeds)

    def score_fn(prompts: list[str]) -> list[float]:
        att = judge_attempts(model, target, setup, lambda ks: encode(model, ks), prompts, seeds=seeds)
        return att.scores.view(len(prompts), len(seeds)).mean(1).tolist()

    clock = Stopwatch()
    logs = []
    with clock:
        vocab = vocabulary_neighbours(model, words, cfg.neighbours, exclude)
        for start in setup.prompts:
            logs.append(search_prompt(score_fn, start, vocab, cfg)[1])
    marks = sorted({max(1, round(cfg.queries * (i + 1) / max(1, cfg.checkpoints))) for i in range(cfg.checkpoints)})

    def best_within(log: list[tuple[str, float]], b: int) -> str:
        head = log[:b]
        return max(head, key=lambda x: x[1])[0]

    curve, final = [], None
    for b in marks:
        found = [best_within(log, b) for log in logs]
        final = judge_attempts(model, target, setup, lambda ks: encode(model, ks), found)
        curve.append(CurvePoint(b, final.asr))
    found = [best_within(log, cfg.queries) for log in logs]
    unattacked = judge_attempts(model, target, setup, lambda ks: encode(model, ks), setup.prompts)
    n_q = sum(len(log) for log in logs)
    res = finish("discrete", target, {"unit": "queries", "per_prompt": cfg.queries}, final, unattacked,
                 {"queries": n_q, "gradient_steps": 0, "seconds": round(clock.seconds, 2)}, curve,
                 [{"start": s, "prompt": f, "queries": len(log), "search_score": max(x[1] for x in log)}
                  for s, f, log in zip(setup.prompts, found, logs)],
                 vocabulary=vocab, config=asdict(cfg))
    res.attacked = lambda idx: encode(model, [found[i] for i in idx])
    return res
