"""Load-time checks that a model's parts belong together: the schedule fits the transformer and VAE (and
is one the model was trained on), the weights are the ones its ``model.json`` recorded, and the text encoder
produces states of the width the transformer was built for. Each failure is one :class:`SaceError` line
instead of a shape error deep inside sampling (or silently meaningless images)."""

from __future__ import annotations

import warnings

from ..errors import SaceError
from ..fingerprint import FORMAT, recorded_hash


def check_schedule(spec) -> None:
    """The spec's schedule against its transformer and VAE, and against the schedules it was trained on.

    Raises:
        SaceError: scale 0 is not 1x1, more scales than the transformer has level embeddings, a
            ``vae_stride`` other than the VAE's encoder stride.
    Warns:
        when ``model.json`` lists ``trained_schedules`` and this schedule is not among them.
    """
    sch = spec.schedule
    where = f"model {spec.name!r}" + (f" ({spec.folder / 'model.json'})" if spec.folder else "")
    if sch.grids[0] != (1, 1):
        raise SaceError(f"{where}: scale 0 of the schedule must be a 1x1 grid, got {sch.grids[0]}")
    n_lvl = spec.transformer.num_lvl_embed
    if sch.num_scales > n_lvl:
        raise SaceError(f"{where}: the schedule has {sch.num_scales} scales but the transformer has level "
                        f"embeddings for {n_lvl}; use a schedule the model was trained on")
    if sch.vae_stride != spec.vae.patch_size:
        raise SaceError(f"{where}: schedule vae_stride {sch.vae_stride} differs from the VAE's encoder stride "
                        f"{spec.vae.patch_size}")
    trained = list(getattr(spec, "trained_schedules", None) or [])
    if trained:
        mine = sch.to_dict()
        key = lambda d: ([list(g) for g in d.get("grids", [])], d.get("vae_stride"), d.get("patch", 1))
        if all(key(t) != key(mine) for t in trained):
            warnings.warn(f"{where}: schedule {mine.get('name') or mine['grids']} is not one this model was trained "
                          f"on ({', '.join(str(t.get('name') or t.get('grids')) for t in trained)}); its images "
                          f"are extrapolation", stacklevel=3)


def check_weights(spec, transformer, vae, overridden: dict[str, bool]) -> None:
    """Compare the loaded weights with the hashes ``model.json`` recorded (when it did).

    Raises:
        SaceError: the folder's own file holds other weights than recorded (a replaced file).
    Warns:
        when the weights were explicitly overridden (``--transformer-path`` / ``--vae-path``).
    """
    recorded = getattr(spec, "hashes", None) or {}
    for part, mod, skip in (("transformer", transformer, ".branches."), ("vae", vae, None)):
        want, got, legacy = recorded_hash(recorded, part, mod, skip)
        if want is None:
            continue
        if got == want:
            if legacy:
                warnings.warn(f"{spec.folder or spec.name}: model.json records {part} hashes of an older sace "
                              f"(they cover the first 1024 elements of each tensor, not every one); re-save the "
                              f"model (sace.models.registry.save_model) to record {FORMAT} hashes", stacklevel=3)
            continue
        msg = (f"the {part} weights of model {spec.name!r} (hash {got}) are not the ones its model.json records "
               f"({want})")
        if overridden.get(part):
            warnings.warn(msg + f" (--{part}-path given: used anyway)",
                          stacklevel=3)
        else:
            raise SaceError(msg + f"; restore {part}.safetensors in {spec.folder or 'the model folder'} or "
                            f"re-save the model")


def check_text_encoder(spec, enc) -> None:
    """The text encoder's state width must be the transformer's ``text_channels``.

    Raises:
        SaceError: naming both widths and the encoder.
    """
    if enc is None:
        return
    ch = getattr(enc, "channels", None)
    want = spec.transformer.text_channels
    if ch is not None and int(ch) != int(want):
        raise SaceError(f"text encoder {getattr(enc, 'name', '?')} gives {ch}-channel states but model {spec.name!r} "
                        f"expects {want} (text_channels); use the encoder the model was trained with")
