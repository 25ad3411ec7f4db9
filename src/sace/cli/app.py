"""``sace app``: the local Gradio page (original vs erased, verdicts, one attack). gradio is imported only here,
when the command runs, so that ``sace --help`` and every other command stay fast."""

from __future__ import annotations

import os
import time
from typing import Annotated

import typer

from ..errors import SaceError
from ..shipping.hub import at_revision
from .common import console, load
from .options import AdapterOpt, DeviceOpt, ModelOpt, OtherBaseOpt


def app(
    ctx: typer.Context,
    model: ModelOpt = "fashion",
    adapter: AdapterOpt = None,
    concept: Annotated[str | None, typer.Option(help="Concept the verdicts judge (default: the adapter's).")] = None,
    detector: Annotated[str, typer.Option(help="Judge of the verdicts (auto: the same policy as every "
                                               "command).")] = "auto",
    prompt: Annotated[str, typer.Option(help="Prompt filled in when the page opens.")] = "",
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    revision: Annotated[str | None, typer.Option(help="Hub revision for --model/--adapter repo ids given "
                                                      "without @REV.")] = None,
    device: DeviceOpt = "",
    allow_other_base: OtherBaseOpt = False,
) -> None:
    """Open a local page: type a prompt, pick seeds, and see the original model and the erased one side by side
    with the judge's verdict per image; a second tab runs one attack against the adapter. Ctrl-C stops it."""
    t = time.perf_counter()
    if not 1 <= port <= 65535:
        raise SaceError(f"--port must be in 1..65535, got {port}")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # a local page: no calls home
    from .. import app as web  # reason: gradio takes seconds to import; only this command needs it

    if revision:
        model, adapter = at_revision(model, revision), [at_revision(str(a), revision) for a in adapter or []]
    m = load(ctx, model, device, adapter, allow_other_base)
    session = web.Session(m, concept=concept, detector=detector)
    ui = web.build_ui(session, default_prompt=prompt or (f"a photo of a {session.concept}" if session.concept else ""))
    c = console()
    c.print(session.judge_text, highlight=False, markup=False, soft_wrap=True)
    try:
        ui.queue().launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                          show_error=True)
    except OSError as e:     # the port is taken, or the address is not this machine's
        raise SaceError(f"cannot listen on {host}:{port} ({e}); choose another --port or --host") from None
    c.print(f"sace app ready at http://{host}:{port} ({time.perf_counter() - t:.1f} s); Ctrl-C stops it",
            highlight=False, soft_wrap=True)
    try:
        ui.block_thread()
    finally:
        ui.close()

