"""Recipe: train the Fashion-MNIST concept classifier of the ``fashion`` domain
(:class:`sace.domains.fashion.classifier.FashionClassifier`) and measure its accuracy.

Training uses random black borders (0-3 px, then resized back to 28) and +-1 px shifts so that both input
forms (raw 28x28 and the generator's padded 32x32) are classified well (no flips: the generator learns the
dataset's fixed orientation). The result is written where
:func:`sace.domains.fashion.classifier.load_classifier` reads it.
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
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor
from tqdm import tqdm

from ..domains.fashion.classes import CLASS_NAMES
from ..domains.fashion.classifier import ASSET_DIR, FORMAT, MEAN, SIZE, STD, FashionClassifier
from ..domains.fashion.data import load_split, model_to_unit, split_files, to_model_images, unit_images
from ..errors import CheckpointError, SaceError

__all__ = ["train_classifier", "evaluate_accuracy"]


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
            out[sel] = F.interpolate(padded, size=(SIZE, SIZE), mode="bilinear", antialias=True,
                                     align_corners=False)
    shifted = F.pad(out, (1, 1, 1, 1), value=0.0)
    oy = torch.randint(0, 3, (b,), generator=gen)
    ox = torch.randint(0, 3, (b,), generator=gen)
    ar = torch.arange(SIZE)
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
        data_root: Fashion-MNIST directory (see :func:`sace.domains.fashion.data.load_split`).
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
            "format": FORMAT,
            "finished": True,
            "config": model.config,
            "classes": list(CLASS_NAMES),
            "input": "float (B, 3, H, W) in [0, 1]; grayscale = channel mean; resized to 28x28 (bilinear, "
                     f"antialias); normalised with mean {MEAN}, std {STD}",
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
        save_file(state, str(tmp), metadata={"format": FORMAT, "config": json.dumps(model.config)})
        os.chmod(tmp, 0o644)
        os.replace(tmp, out / "classifier.safetensors")
        _atomic_write_bytes(out / "classifier.json", (json.dumps(metrics, indent=2) + "\n").encode())
        ckpt_path.unlink(missing_ok=True)
        return metrics
    finally:
        torch.set_num_threads(old_threads)
