"""A small CNN concept classifier for the 10 Fashion-MNIST classes (the ``fashion`` default model).

Input convention (every public method): ``images`` float ``(B, 3, H, W)`` (``(B, 1, H, W)`` is accepted too)
in ``[0, 1]``, 0 = black background, at any size. The classifier converts to grayscale (mean of the
channels), resizes to 28x28 (bilinear with antialias; skipped when already 28x28; non-square inputs are
stretched), normalises with the Fashion-MNIST train mean/std and runs the CNN.

Two input forms of the same item must agree, and the packaged weights are checked on both:

* "raw 28": a real test image ``uint8 (28, 28)`` divided by 255
  (:func:`sace.recipes.fashion_data.unit_images`);
* "padded 32": the generator's form, the item with 2 px of black on every side at 32x32
  (:func:`~sace.recipes.fashion_data.to_model_images` then :func:`~sace.recipes.fashion_data.model_to_unit`),
  which the classifier shrinks back to 28x28 (the item then covers the centre 24.5 px).

Training uses random black borders (0-3 px, then resized back to 28) and +-1 px shifts so that both forms
are classified well (no flips: the generator learns the dataset's fixed orientation). Packaged weights:
``sace/assets/fashion/classifier.safetensors`` with a ``classifier.json`` report next to it; rebuild them
with :func:`train_classifier`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import CheckpointError, SaceError

__all__ = ["FashionClassifier", "train_classifier", "load_classifier", "evaluate_accuracy",
           "DEFAULT_CLASSIFIER_PATH", "ASSET_DIR", "RETRAIN_HINT"]

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "fashion"
DEFAULT_CLASSIFIER_PATH = ASSET_DIR / "classifier.safetensors"
RETRAIN_HINT = ("`python -c \"from sace.evaluation.fashion_classifier import train_classifier; "
                "train_classifier()\"`")
_FORMAT = "sace.fashion_classifier.v1"
_MEAN, _STD = 0.2860, 0.3530  # Fashion-MNIST train-set pixel mean / std in [0, 1]
_SIZE = 28


class FashionClassifier(nn.Module):
    """Small CNN: 3 conv blocks (5x5 then 3x3 convs, BatchNorm, ReLU, 2x2 max-pool) -> 128-d embedding ->
    dropout -> 10 logits. About 189k parameters (0.76 MB in float32).

    Args:
        widths: channels of the three conv blocks.
        hidden: size of the penultimate embedding returned by :meth:`features`.
        dropout: dropout before the last linear layer (training only).
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 64), hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        c1, c2, c3 = (int(w) for w in widths)
        self.config = {"widths": [c1, c2, c3], "hidden": int(hidden), "dropout": float(dropout)}

        def block(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(1, c1, 5), nn.MaxPool2d(2),                  # 28 -> 14
            *block(c1, c2, 3), nn.MaxPool2d(2),                 # 14 -> 7
            *block(c2, c3, 3), nn.MaxPool2d(2, ceil_mode=True),  # 7 -> 4
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(c3 * 16, hidden), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 10)

    @property
    def feature_dim(self) -> int:
        """F, the size of :meth:`features` (128 by default)."""
        return int(self.config["hidden"])

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """``(B, C, H, W)`` float in ``[0, 1]`` (C = 1 or 3, any H, W) -> normalised ``(B, 1, 28, 28)``
        float32.

        Raises:
            SaceError: wrong rank, channel count or a non-floating dtype (uint8 must be divided by 255 first).
        """
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise SaceError(f"the Fashion classifier expects images (B, 3, H, W) or (B, 1, H, W), "
                            f"got {shape}")
        if not images.is_floating_point():
            raise SaceError(f"the Fashion classifier expects float images in [0, 1], got dtype "
                            f"{images.dtype} (divide uint8 pixels by 255)")
        x = images.float().mean(1, keepdim=True)
        if x.shape[-2:] != (_SIZE, _SIZE):
            x = F.interpolate(x, size=(_SIZE, _SIZE), mode="bilinear", antialias=True, align_corners=False)
        return (x - _MEAN) / _STD

    def _embed(self, images: Tensor) -> Tensor:
        p = next(self.parameters())
        return self.embed(self.body(self.preprocess(images.to(p.device))))

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, 10)`` float32 (differentiable) for images ``(B, 3, H, W)`` in ``[0, 1]``."""
        return self.head(self.drop(self._embed(images)))

    @torch.no_grad()
    def _batched(self, images: Tensor, fn, batch_size: int) -> Tensor:
        if images.shape[0] == 0:
            self.preprocess(images)  # validates the shape
        outs = [fn(images[i:i + batch_size]) for i in range(0, images.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.empty(0)

    def predict_proba(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Class probabilities ``(B, 10)`` float32 (rows sum to 1), without gradients, in chunks of
        ``batch_size``. Uses the module's current mode: call ``.eval()`` first (``load_classifier`` does)."""
        return self._batched(images, lambda x: self(x).softmax(-1), batch_size)

    def predict(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Predicted class indices ``(B,)`` int64 in ``0..9`` (order of ``fashion_data.CLASS_NAMES``)."""
        return self._batched(images, lambda x: self(x).argmax(-1), batch_size).long()

    def features(self, images: Tensor, batch_size: int = 1000) -> Tensor:
        """Penultimate embedding ``(B, F)`` float32 (``F = 128``, post-ReLU so >= 0), without gradients; used
        for classifier-feature KID/FID."""
        return self._batched(images, self._embed, batch_size)


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------

def _config_from_metadata(meta: dict | None, path: Path) -> dict:
    if not meta or "config" not in meta:
        return {}
    try:
        cfg = json.loads(meta["config"])
        return {"widths": tuple(int(w) for w in cfg["widths"]), "hidden": int(cfg["hidden"]),
                "dropout": float(cfg["dropout"])}
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"classifier file {path} has an unreadable 'config' metadata entry "
                              f"({e})") from e


def load_classifier(path: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu") -> FashionClassifier:
    """Load a :class:`FashionClassifier` in eval mode.

    Args:
        path: a ``.safetensors`` file or a directory holding ``classifier.safetensors``; default: the
            packaged asset :data:`DEFAULT_CLASSIFIER_PATH`. Only ``safetensors`` is used (no pickle).
        device: where to put the weights.
    Raises:
        SaceError: the file does not exist (the message says how to build it).
        CheckpointError: not a valid safetensors file, missing or unexpected keys (listed), wrong shapes.
    """
    from safetensors import safe_open

    p = Path(path) if path is not None else DEFAULT_CLASSIFIER_PATH
    if p.is_dir():
        p = p / "classifier.safetensors"
    if not p.is_file():
        raise SaceError(f"Fashion classifier weights not found: {p}; build them with {RETRAIN_HINT} "
                        "(about 5 minutes on a CPU)")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for corrupt headers/payloads
        raise CheckpointError(f"cannot read classifier file {p}: not a valid safetensors file ({e})") from e
    model = FashionClassifier(**_config_from_metadata(meta, p))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"classifier file {p} does not match FashionClassifier: missing keys "
                              f"{missing}, unexpected keys {unexpected}")
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
           for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(f"classifier file {p} has wrong shapes: {'; '.join(bad)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


# --------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------

def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random black border (0-3 px, resized back to 28) and +-1 px shift.

    ``(B, 1, 28, 28)`` float in [0, 1] -> same shape and range; all randomness drawn from ``gen``."""
    b = x.shape[0]
    border = torch.tensor([0, 0, 1, 2, 2, 3])[torch.randint(0, 6, (b,), generator=gen)]
    out = x.clone()
    for p in (1, 2, 3):
        sel = (border == p).nonzero().flatten()
        if sel.numel():
            padded = F.pad(x[sel], (p, p, p, p), value=0.0)
            out[sel] = F.interpolate(padded, size=(_SIZE, _SIZE), mode="bilinear", antialias=True,
                                     align_corners=False)
    shifted = F.pad(out, (1, 1, 1, 1), value=0.0)
    oy = torch.randint(0, 3, (b,), generator=gen)
    ox = torch.randint(0, 3, (b,), generator=gen)
    ar = torch.arange(_SIZE)
    rows = (oy[:, None] + ar)[:, :, None]  # (B, 28, 1)
    cols = (ox[:, None] + ar)[:, None, :]  # (B, 1, 28)
    return shifted[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)


def evaluate_accuracy(model: FashionClassifier, images: Tensor, labels: Tensor) -> dict:
    """Accuracy of ``model`` (put in eval mode) on raw images ``uint8 (N, 28, 28)`` with labels
    ``int64 (N,)``, in both input forms.

    Returns:
        ``{"raw28": acc, "padded32": acc, "per_class_raw28": [10 floats], "per_class_padded32": [...]}``,
        accuracies in ``[0, 1]``.
    """
    from ..recipes.fashion_data import model_to_unit, to_model_images, unit_images

    model.eval()
    out: dict = {}
    for name, form in (("raw28", unit_images(images)), ("padded32", model_to_unit(to_model_images(images)))):
        pred = model.predict(form)
        correct = (pred.cpu() == labels.cpu()).float()
        out[name] = float(correct.mean())
        out[f"per_class_{name}"] = [float(correct[labels == c].mean()) if bool((labels == c).any())
                                    else float("nan") for c in range(10)]
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def train_classifier(out_dir: str | os.PathLike | None = None, epochs: int = 5, seed: int = 0,
                     batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 5e-4,
                     progress: bool = True, resume: bool = True,
                     data_root: str | os.PathLike | None = None, num_threads: int = 2,
                     stop_after: int | None = None) -> dict:
    """Train the Fashion-MNIST classifier on the 60k train split and evaluate it on the 10k test split.

    Deterministic for a given seed and thread count (every epoch reseeds its shuffling, augmentation and
    dropout from ``seed`` and the epoch number, so a resumed run equals an uninterrupted one). AdamW with a
    one-cycle learning-rate schedule; the test split is used only for the final report.

    Files in ``out_dir``:
        ``classifier.ckpt`` -- resumable state, written atomically after every epoch (tmp + ``os.replace``)
        and deleted once the final files are written; ``classifier.safetensors`` -- final weights (config in
        the safetensors metadata); ``classifier.json`` -- config, test accuracies on both input forms,
        per-class accuracies, training time, seed, data source (paths and sha256), history.

    Args:
        out_dir: output directory (created); default: the packaged asset folder :data:`ASSET_DIR`
            (``src/sace/assets/fashion`` in a source checkout), which :func:`load_classifier` reads.
        epochs, batch_size, lr, weight_decay: optimisation settings.
        seed: RNG seed. progress: show a tqdm bar. resume: continue from ``classifier.ckpt`` if present.
        data_root: Fashion-MNIST directory (see :func:`sace.recipes.fashion_data.load_split`).
        num_threads: ``torch.set_num_threads`` value during training (restored afterwards). On a shared
            2-core machine 1 thread can be several times faster than 2 (oversubscription).
        stop_after: if set, return once this many epochs (in total) are done, keeping ``classifier.ckpt``
            for a later call with ``resume=True`` (time-boxed training).
    Returns:
        The metrics dict written to ``classifier.json``; with ``stop_after`` reached early only
        ``{"finished": False, "completed_epochs": k, "epochs": epochs, "checkpoint": path}``.
    Raises:
        SaceError: missing/corrupt data, bad arguments, or a checkpoint from different settings.
    """
    from safetensors.torch import save_file
    from tqdm import tqdm

    from ..recipes.fashion_data import CLASS_NAMES, load_split, split_files

    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise SaceError(f"train_classifier needs epochs >= 1, batch_size >= 1 and lr > 0 "
                        f"(got {epochs}, {batch_size}, {lr})")
    out = Path(out_dir) if out_dir is not None else ASSET_DIR
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "classifier.ckpt"
    settings = {"epochs": int(epochs), "seed": int(seed), "batch_size": int(batch_size), "lr": float(lr),
                "weight_decay": float(weight_decay), "num_threads": int(num_threads)}

    old_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        train_x, train_y = load_split("train", data_root)
        test_x, test_y = load_split("test", data_root)
        n = train_x.shape[0]
        steps_per_epoch = math.ceil(n / batch_size)

        torch.manual_seed(seed)
        model = FashionClassifier()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.2)
        start_epoch, elapsed, history = 0, 0.0, []
        if resume and ckpt_path.is_file():
            try:
                ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            except Exception as e:
                raise CheckpointError(f"cannot read training checkpoint {ckpt_path} ({e}); delete it or pass "
                                      "resume=False") from e
            if ck.get("settings") != settings:
                raise SaceError(f"training checkpoint {ckpt_path} was made with {ck.get('settings')}, not "
                                f"{settings}; delete it or pass resume=False")
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            sched.load_state_dict(ck["sched"])
            start_epoch, elapsed, history = int(ck["epoch"]), float(ck["elapsed"]), list(ck["history"])

        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            torch.manual_seed(seed * 1000 + epoch)  # dropout
            gen = torch.Generator().manual_seed(seed * 1000 + epoch + 1)
            perm = torch.randperm(n, generator=gen)
            model.train()
            tot_loss, tot_ok, seen = 0.0, 0, 0
            bar = tqdm(range(steps_per_epoch), desc=f"classifier epoch {epoch + 1}/{epochs}",
                       disable=not progress, leave=False)
            for i in bar:
                idx = perm[i * batch_size:(i + 1) * batch_size]
                x = _augment(train_x[idx].float().div_(255.0).unsqueeze(1), gen)
                y = train_y[idx]
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot_loss += float(loss.detach()) * len(idx)
                tot_ok += int((logits.argmax(-1) == y).sum())
                seen += len(idx)
                if i % 20 == 0:
                    bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{tot_ok / seen:.3f}")
            bar.close()
            elapsed += time.perf_counter() - t0
            history.append({"epoch": epoch + 1, "train_loss": tot_loss / seen,
                            "train_acc_augmented": tot_ok / seen})
            tmp = ckpt_path.with_name(ckpt_path.name + ".tmp")
            torch.save({"settings": settings, "model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "epoch": epoch + 1, "elapsed": elapsed,
                        "history": history}, tmp)
            os.replace(tmp, ckpt_path)
            if progress:
                tqdm.write(f"classifier epoch {epoch + 1}/{epochs}: loss {tot_loss / seen:.4f}, "
                           f"train acc (augmented) {tot_ok / seen:.4f}, {elapsed:.0f} s so far")
            if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
                return {"finished": False, "completed_epochs": epoch + 1, "epochs": int(epochs),
                        "checkpoint": str(ckpt_path)}

        model.eval()
        acc = evaluate_accuracy(model, test_x, test_y)
        files = [*split_files("train", data_root), *split_files("test", data_root)]
        metrics = {
            "format": _FORMAT,
            "finished": True,
            "config": model.config,
            "classes": list(CLASS_NAMES),
            "input": "float (B, 3, H, W) in [0, 1]; grayscale = channel mean; resized to 28x28 (bilinear, "
                     f"antialias); normalised with mean {_MEAN}, std {_STD}",
            "test_accuracy_raw28": acc["raw28"],
            "test_accuracy_padded32": acc["padded32"],
            "test_per_class_raw28": acc["per_class_raw28"],
            "test_per_class_padded32": acc["per_class_padded32"],
            "test_images": int(test_x.shape[0]),
            "train_images": int(n),
            "training_time_s": round(elapsed, 1),
            "settings": settings,
            "seed": int(seed),
            "augmentation": "random black border 0-3 px resized back to 28x28, +-1 px shift",
            "history": history,
            "data_source": {"dataset": "Fashion-MNIST (Debian package dataset-fashion-mnist)",
                            "files": {f.name: {"path": str(f), "sha256": _sha256(f)} for f in files}},
            "torch": torch.__version__,
            "machine": platform.machine(),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        tmp = out / "classifier.safetensors.tmp"
        save_file(state, str(tmp), metadata={"format": _FORMAT, "config": json.dumps(model.config)})
        os.chmod(tmp, 0o644)
        os.replace(tmp, out / "classifier.safetensors")
        _atomic_write_bytes(out / "classifier.json", (json.dumps(metrics, indent=2) + "\n").encode())
        ckpt_path.unlink(missing_ok=True)
        return metrics
    finally:
        torch.set_num_threads(old_threads)
