"""`pull`: download a published checkpoint from the Hugging Face hub into the local hub cache,
only when the user asks (`python -m engine pull NAME`, `infill --download`, the Language
Server's `allowDownload`). Everything else in astdiffuse reads that cache offline.

Only what the engine reads is fetched: config files, tokenizer files and safetensors weights
(never pickles, never the repository's Python code). huggingface_hub shows a progress bar,
skips files already complete, retries a broken transfer from where it stopped (an HTTP Range
request), and checks each file's size; `pull` then checks every weight file's SHA-256 against
the one the hub gave as its ETag. Short names come from the family table
(`engine.model.families`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from .errors import AstdiffuseError

log = logging.getLogger(__name__)

# What the engine reads from a checkpoint; nothing else is downloaded.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "merges.txt", "*.jinja"]
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


class PullError(AstdiffuseError):
    """A checkpoint could not be downloaded; the message says why and what to do."""


def resolve_name(name: str) -> str:
    """The hub id of `name`: a short name of the family table, else `name` itself (org/name)."""
    from .model.families import checkpoint_by_name

    known = checkpoint_by_name(name)
    if known is not None and "/" not in name:
        return known[1].repo
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        from .model.families import SPECS

        shorts = ", ".join(c.short for s in SPECS for c in s.checkpoints)
        raise PullError(f"{name!r} is neither a hub id (org/name) nor a known short name "
                        f"({shorts})")
    return name


def pull(name: str, *, revision: str | None = None, token: str | bool | None = None,
         cache_dir: str | Path | None = None, progress: bool = True,
         verify: bool = True) -> Path:
    """Download `name` (a short name or a hub id) into the hub cache and return its snapshot
    directory. Raises `PullError` offline, for a missing model or revision, for a refused or
    missing token, and for a file whose checksum does not match."""
    import huggingface_hub
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    repo = resolve_name(name)
    endpoint = constants.ENDPOINT
    if constants.HF_HUB_OFFLINE:
        raise PullError(f"cannot download {repo}: HF_HUB_OFFLINE is set (offline mode); unset it "
                        "on a machine with network access, or copy the model directory here "
                        "and pass its path")
    if not progress:
        huggingface_hub.utils.disable_progress_bars()
    try:
        path = snapshot_download(repo, revision=revision, token=token, cache_dir=cache_dir,
                                 allow_patterns=ALLOW_PATTERNS)
    except GatedRepoError as err:
        raise PullError(f"{repo} is gated on {endpoint}: accept its licence on the hub page, "
                        "then give a token (HF_TOKEN, `hf auth login`, or --token)") from err
    except RevisionNotFoundError as err:
        raise PullError(f"{repo} has no revision {revision!r} on {endpoint}") from err
    except RepositoryNotFoundError as err:
        raise PullError(f"no model {repo} on {endpoint} (or it is private and the token does "
                        "not give access): check the name") from err
    except OfflineModeIsEnabled as err:
        raise PullError(f"cannot download {repo}: offline mode is on (HF_HUB_OFFLINE)") from err
    except LocalEntryNotFoundError as err:
        raise PullError(f"cannot reach {endpoint} to download {repo} (offline, or the hub is "
                        "down); nothing was changed. Try again with network access") from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        if status in (401, 403):
            raise PullError(f"{endpoint} refused the token for {repo} (HTTP {status}): check "
                            "HF_TOKEN / --token, or that it may read this model") from err
        raise PullError(f"downloading {repo} from {endpoint} failed: {err}") from err
    except OSError as err:
        raise PullError(f"downloading {repo} failed: {err} (disk full? HF_HOME is "
                        f"{constants.HF_HOME})") from err
    except Exception as err:  # the HTTP library's own transport errors (httpx and kin)
        if not type(err).__module__.split(".")[0].startswith(("httpx", "httpcore", "h11")):
            raise
        raise PullError(f"the connection to {endpoint} broke while downloading {repo} "
                        f"({type(err).__name__}: {err}); run pull again: the files that "
                        "finished are kept and not fetched again") from err
    path = Path(path)
    if not (path / "config.json").is_file():
        raise PullError(f"{repo} has no config.json: it is not a model astdiffuse can run")
    if verify:
        verify_snapshot(path)
    return path


def verify_snapshot(path: Path) -> None:
    """Check every weight file against the SHA-256 the hub gave as its ETag (the blob's name in
    the cache); a corrupted blob is deleted so that the next `pull` fetches it again."""
    for file in sorted(path.glob("*.safetensors")):
        blob = Path(os.path.realpath(file))
        if not _SHA256.match(blob.name):
            continue  # a plain file (no LFS checksum from the hub)
        digest = hashlib.sha256()
        with open(blob, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
        if digest.hexdigest() != blob.name:
            blob.unlink()
            raise PullError(f"{file.name} does not match the hub's SHA-256 (got "
                            f"{digest.hexdigest()[:12]}..., expected {blob.name[:12]}...); it "
                            "was deleted: run pull again")


def local_snapshot(name: str, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot of `name` (short name or hub id) if it was pulled, else None;
    never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        repo = resolve_name(name)
    except PullError:
        return None
    try:
        path = Path(snapshot_download(repo, cache_dir=cache_dir, local_files_only=True,
                                      allow_patterns=ALLOW_PATTERNS))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if (path / "config.json").is_file() else None


def locate(name: str, *, download: bool = False, progress: bool = True) -> str:
    """Where the model `name` is: an existing path as it is; a short name or hub id already
    pulled: its cached snapshot; otherwise pulled now if `download`, else `ModelNotFoundError`
    saying how to get it."""
    from .model.adapter import ModelNotFoundError

    if Path(name).expanduser().exists():
        return name
    snapshot = local_snapshot(name)
    if snapshot is not None:
        return str(snapshot)
    try:
        repo = resolve_name(name)
    except PullError:
        raise ModelNotFoundError(name) from None
    if download:
        log.info("downloading %s from the hub (asked for: it is not on this machine)", repo)
        return str(pull(repo, progress=progress))
    raise ModelNotFoundError(name, (
        f"{name!r} is not downloaded (nothing downloads unasked): run `python -m engine pull "
        f"{name}`, or pass --download (the Language Server: astdiffuse.allowDownload)"))
