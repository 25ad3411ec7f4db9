"""Adapter and model folders from the Hugging Face hub: ``--adapter user/repo`` / ``--model user/repo@REV``.

A repo id is downloaded with :func:`huggingface_hub.snapshot_download` into the Hugging Face cache
(``HF_HOME`` / ``HF_HUB_CACHE``) and then read like a local folder -- so the same checks apply (the adapter's
schema, tensor names and shapes, the base weights it was trained on; a model folder's recorded hashes). With
``HF_HUB_OFFLINE=1`` only the cache is read, and a repo that is not there is a one-line error that says how to
download it.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import SaceError

__all__ = ["at_revision", "is_repo_id", "split_revision", "resolve_folder"]

#: ``user/repo`` or ``user/repo@revision`` (the hub's own name rules: letters, digits, ``-_.``)
_REPO = re.compile(r"(?P<repo>[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*)(?:@(?P<rev>[\w.\-/]+))?")


def is_repo_id(text: str) -> bool:
    """Whether ``text`` reads as a hub repo id (``user/repo`` or ``user/repo@REV``) rather than a path; a
    path that exists locally, starts with ``/``, ``.`` or ``~``, or has more than one ``/`` (outside the
    revision) is a path."""
    s = str(text)
    if not s or s.startswith(("/", ".", "~")) or Path(s).exists():
        return False
    return _REPO.fullmatch(s) is not None


def split_revision(text: str, revision: str | None = None) -> tuple[str, str | None]:
    """``"user/repo@REV"`` -> ``("user/repo", "REV")``; ``revision`` (``--revision``) when the id names none.

    Raises:
        SaceError: the id names a revision and ``--revision`` another one.
    """
    m = _REPO.fullmatch(str(text))
    if m is None:
        raise SaceError(f"{text!r} is not a hub repo id (user/repo or user/repo@REVISION)")
    rev = m.group("rev")
    if rev and revision and rev != revision:
        raise SaceError(f"{text} names revision {rev} but --revision says {revision}; give one of them")
    return m.group("repo"), rev or revision


def at_revision(text: str, revision: str) -> str:
    """``--revision`` applied to a repo id that names none (``user/repo`` -> ``user/repo@REV``); paths, named
    models and ids with their own ``@REV`` are returned unchanged."""
    return f"{text}@{revision}" if is_repo_id(text) and "@" not in text else text


def resolve_folder(text: str, *, revision: str | None = None, what: str = "adapter") -> Path:
    """The local folder of ``text``: the path itself, or a hub repo id's snapshot in the Hugging Face cache
    (downloaded first unless ``HF_HUB_OFFLINE=1``). Nothing is verified here; the caller reads the folder
    with its usual strict loader.

    Args:
        text: a local folder, ``user/repo`` or ``user/repo@REV``.
        revision: ``--revision`` (a branch, tag or commit hash) for an id that names none.
        what: ``"adapter"`` or ``"model"``, for messages.
    Raises:
        SaceError: one line -- offline and not in the cache (with the ``hf download`` command), a repo or
            revision the hub does not have, no network.
    """
    if not is_repo_id(text):
        return Path(text)
    repo, rev = split_revision(text, revision)
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"@{rev}" if rev else ""
    get = f"hf download {repo}" + (f" --revision {rev}" if rev else "")
    try:
        return Path(snapshot_download(repo, revision=rev))
    except RevisionNotFoundError:
        raise SaceError(f"{what} repo {repo} has no revision {rev!r} on the Hugging Face hub") from None
    except GatedRepoError:
        raise SaceError(f"{what} repo {repo} is gated: accept its terms on huggingface.co and log in "
                        f"(hf auth login)") from None
    except RepositoryNotFoundError:
        raise SaceError(f"{what} repo {repo} not found on the Hugging Face hub (a typo, or a private repo: "
                        f"hf auth login)") from None
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise SaceError(f"{what} repo {repo}{at} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                            f"and HF_HUB_OFFLINE=1 (nor a local folder {text}); download it where there is network "
                            f"with `{get}` (same HF_HOME), or pass an existing local folder") from None
        raise SaceError(f"cannot reach the Hugging Face hub for {what} repo {repo}{at} and it is not in the "
                        f"cache; download it with `{get}` where there is network, or pass a local folder") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", type(e).__name__)
        raise SaceError(f"the Hugging Face hub refused {what} repo {repo}{at} (HTTP {status}); try again later or "
                        f"pass a local folder") from None
    except OSError as e:   # network failures that huggingface_hub does not wrap
        raise SaceError(f"cannot fetch {what} repo {repo}{at} from the Hugging Face hub ({type(e).__name__}); "
                        f"download it with `{get}` or pass a local folder") from None
