"""The options several commands share: typed aliases for typer, and the sampling options as one group.

A command lists the shared options by these aliases (``model: ModelOpt = "fashion"``); the sampling options
(``--guidance``, ``--temperature`` and, where offered, ``--top-k`` / ``--top-p``) stand in its signature as one
parameter whose default is :data:`SAMPLING` or :data:`SAMPLING_NO_TOP`, expanded by :func:`sampling_options`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from ..generate import SamplingSettings

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Named model (fashion, infinity-2b, infinity-8b, "
                                                             "infinity-tiny-fixture, var-d16/20/24/30, "
                                                             "var-tiny-fixture; `sace models`), a model folder "
                                                             "(also one written by `sace export`) or a Hugging "
                                                             "Face repo id user/repo[@REVISION].")]
AdapterOpt = Annotated[list[Path] | None, typer.Option("--adapter", help="Adapter folder (adapter.safetensors + "
                                                                          "adapter.json) or a Hugging Face repo id "
                                                                          "user/repo[@REVISION]; repeat to compose "
                                                                          "several.")]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda or cuda:N (default: cuda when available).")]
GuidanceOpt = Annotated[float | None, typer.Option(help="Guidance weight w (1 = none; VAR models ramp it from 1 "
                                                             "at scale 0 to w at the last); default: the model's.")]
TempOpt = Annotated[float | None, typer.Option(help="Sampling temperature tau; default: the model's.")]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="Top-k filter (0 = off); default: the model's.")]
TopPOpt = Annotated[float | None, typer.Option("--top-p", help="Top-p filter (0 = off); default: the model's.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an output folder that holds results of other "
                                                       "settings (default: refuse).")]
OtherBaseOpt = Annotated[bool, typer.Option("--allow-other-base", help="Use an adapter trained on other weights "
                                                                       "of the same-named model (a warning instead "
                                                                       "of an error).")]

#: the sampling options in the order ``--help`` lists them: (parameter name, typer annotation)
_SAMPLING_PARAMS = (("guidance", GuidanceOpt), ("temperature", TempOpt), ("top_k", TopKOpt), ("top_p", TopPOpt))


@dataclass(frozen=True)
class SamplingGroup:
    """Marker default of the one command parameter that stands for the sampling options.

    Attributes:
        top: whether ``--top-k`` and ``--top-p`` are offered (else only ``--guidance`` and ``--temperature``,
            and the settings keep the model's top-k / top-p).
    """

    top: bool = True


SAMPLING = SamplingGroup(top=True)            #: --guidance --temperature --top-k --top-p
SAMPLING_NO_TOP = SamplingGroup(top=False)    #: --guidance --temperature


@dataclass(frozen=True)
class Sampling:
    """The sampling options of one invocation as given (``None``: the model's default), not yet checked."""

    guidance: float | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None

    def settings(self):
        """The :class:`~sace.generate.SamplingSettings` of these options.

        Raises:
            SaceError: a NaN weight, a temperature <= 0 or a top-p outside [0, 1] (checked on construction).
        """
        return SamplingSettings(self.guidance, self.temperature, self.top_k, self.top_p)


def sampling_options(command):
    """Expand the parameter of ``command`` whose default is a :class:`SamplingGroup` into the sampling options.

    typer reads the returned function's signature: the marker parameter is replaced, at its place, by
    ``guidance`` and ``temperature`` (and ``top_k``, ``top_p`` when the group offers them), each defaulting to
    ``None``; on a call their values reach ``command`` as one :class:`Sampling` under the marker's name.

    Raises:
        ValueError: ``command`` has no or several marker parameters (a programming error, at import).
    """
    sig = inspect.signature(command, eval_str=True)
    markers = [p for p in sig.parameters.values() if isinstance(p.default, SamplingGroup)]
    if len(markers) != 1:
        raise ValueError(f"{command.__name__}: expected one SamplingGroup parameter, found {len(markers)}")
    marker = markers[0]
    options = _SAMPLING_PARAMS if marker.default.top else _SAMPLING_PARAMS[:2]
    params = []
    for p in sig.parameters.values():
        if p is marker:
            params += [inspect.Parameter(name, p.kind, default=None, annotation=ann) for name, ann in options]
        else:
            params.append(p)

    @functools.wraps(command)
    def run(*args, **kwargs):
        kwargs[marker.name] = Sampling(**{name: kwargs.pop(name) for name, _ in options})
        return command(*args, **kwargs)

    run.__signature__ = sig.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run
