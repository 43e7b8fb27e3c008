"""Fetch a model from the Hugging Face hub, and read huggingface_hub's cache to say why not.

loading.py resolves names and inspects folders; this module is its way to the hub. It imports
huggingface_hub inside its functions: a local model loads without that import's cost.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from pathlib import Path

from semrank.errors import InvalidInputError, ModelLoadError, ModelNotFoundError, SemrankError

# The logger these warnings have always gone to: hosts' log settings for it keep working.
_log = logging.getLogger("semrank.models.loading")

# What a checkpoint needs (weights, configs, tokenizer files); not the ONNX exports some repos
# carry (semrank exports its own, and onnx/model.onnx alone can be a GB).
# "*name" also matches the file in a module folder (0_Transformer/vocab.txt).
HUB_PATTERNS = ["*.json", "*.safetensors", "*vocab.txt", "*merges.txt", "*.model", "1_Pooling/*"]
# Older repos hold only PyTorch weights: fetched only when no safetensors came.
HUB_LEGACY_WEIGHTS = ["*pytorch_model.bin"]

# huggingface_hub's errors for a repository or revision the hub does not have (or hides).
_HUB_NOT_FOUND = frozenset(
    {
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "GatedRepoError",
        "EntryNotFoundError",
        "HFValidationError",  # a name the hub could never hold ("a b/c")
    }
)


def hub_revision(text: str) -> tuple[str, str | None]:
    """``ORG/NAME@REV`` as (hub id, revision: a branch, tag or commit), as huggingface_hub's
    file system spells a revision (``hf://ORG/NAME@REV``); hub ids never hold an ``@``."""
    repo_id, at, revision = text.partition("@")
    if at and not revision.strip() and looks_like_hub_id(repo_id):
        raise InvalidInputError(
            f"model {text!r} ends in '@' with no revision; give a branch, tag or commit after "
            f"it ({repo_id}@main), or drop the '@' for the default branch"
        )
    return repo_id, (revision if at else None)


def looks_like_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "/", "~"))


def download_from_hub(
    repo_id: str, revision: str | None = None, *, has_weights: Callable[[Path], bool]
) -> Path:
    """The Hugging Face cache's snapshot of ``repo_id`` at ``revision`` (None: the default
    branch), fetched where missing: HUB_PATTERNS' files, then HUB_LEGACY_WEIGHTS where
    ``has_weights`` finds no weights among them."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
        raise ModelNotFoundError(f"cannot fetch {repo_id!r}: huggingface_hub is missing") from exc
    stalled = _hub_stalls(repo_id, revision)

    def fetch(patterns: list[str]) -> Path:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=patterns, local_files_only=stalled
            )
        )

    try:
        folder = fetch(HUB_PATTERNS)
        return folder if has_weights(folder) else fetch(HUB_LEGACY_WEIGHTS)
    except Exception as exc:  # offline, unknown repo, auth: the same advice for the user
        raise _hub_error(repo_id, revision, exc, stalled=stalled) from exc


def _hub_error(
    repo_id: str, revision: str | None, exc: Exception, *, stalled: bool
) -> SemrankError:
    """The error for a hub id snapshot_download could not give files for."""
    name = f"{repo_id}@{revision}" if revision else repo_id
    download = _hf_download(repo_id, revision)
    failure = type(exc).__name__
    if failure == "IncompleteSnapshotError":  # it names the files the cache lacks
        return ModelLoadError(
            f"the Hugging Face cache's copy of {name!r} is incomplete, an interrupted "
            f"download: run `{download}` where the hub can be reached "
            f"(HF_HUB_OFFLINE unset). huggingface_hub says: {exc}"
        )
    missing = Path(name).expanduser().resolve()
    # The hub said no such model: the name is wrong (exit 2). Anything else (offline, not
    # cached, a proxy, a timeout) is this machine's reach (exit 3, "try again later").
    error = ModelNotFoundError if failure in _HUB_NOT_FOUND else ModelLoadError
    why = f"it did not answer in {_hub_timeout()} s, " if stalled else ""
    # Not in the cache, and the hub not asked (offline, stalled) or not reached.
    cache = _not_cached(repo_id, revision) if failure == "LocalEntryNotFoundError" else ""
    return error(
        f"cannot fetch model {name!r} from the Hugging Face hub ({why}"
        f"{failure}), and there is no folder {missing}.{cache} If it is a hub model, on "
        f"a machine with internet run `{download} --local-dir DIR` (older "
        "huggingface_hub: `huggingface-cli download`), copy DIR here and pass the directory "
        "as the model."
    )


def _hf_download(repo_id: str, revision: str | None) -> str:
    """The command that fetches ``repo_id`` at ``revision`` into the Hugging Face cache."""
    return f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")


def _not_cached(repo_id: str, revision: str | None) -> str:
    """Which Hugging Face cache was searched, why only it (offline mode), and the cached models
    (or the revisions) nearest the name: offline, a misspelt id was told as nothing more than
    huggingface_hub's LocalEntryNotFoundError."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    offline = " Offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): only"
    searched = f"{offline} the" if constants.HF_HUB_OFFLINE else " The"
    searched += f" Hugging Face cache {cache} was searched"
    cached = {_cached_repo_id(folder): folder for folder in cache.glob("models--*")}
    by_case = {cached_id.lower(): cached_id for cached_id in cached}  # the hub's ids ignore case
    repo = cached.get(by_case.get(repo_id.lower(), ""))
    if repo is not None and revision is not None:
        refs = sorted(_cached_refs(repo))
        have = f" (it has {', '.join(refs)})" if refs else ""
        return f"{searched}: it holds {repo_id} but not its revision {revision!r}{have}."
    close = difflib.get_close_matches(repo_id.lower(), list(by_case), n=3, cutoff=0.75)
    nearest = f"; cached models with a close name: {', '.join(by_case[c] for c in close)}"
    return f"{searched} and holds no copy{nearest if close else ''}."


def _hub_stalls(repo_id: str, revision: str | None) -> bool:
    """Whether the hub left a metadata request unanswered for HF_HUB_ETAG_TIMEOUT seconds; the
    cached copy is then used. snapshot_download asks with no time limit: behind a proxy or
    firewall that holds connections open, loading a model already in the cache hung for good
    (a dropping firewall: minutes, until the system gave up connecting)."""
    from huggingface_hub import HfApi

    try:
        HfApi().repo_info(repo_id, revision=revision, timeout=_hub_timeout())
    except Exception as exc:  # the rest (offline, not found, auth) is snapshot_download's
        if any("Timeout" in cls.__name__ for cls in type(exc).__mro__):
            _log.warning(
                "the Hugging Face hub did not answer in %s s (HF_HUB_ETAG_TIMEOUT): loading "
                "%r from the local cache; set HF_HUB_OFFLINE=1 to skip asking",
                _hub_timeout(), repo_id,
            )  # fmt: skip
            return True
    return False


def _hub_timeout() -> float:
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def unfinished_download_fix(path: Path) -> str | None:
    """How to complete the download cut short when ``path`` lies in a Hugging Face cache
    snapshot (files saved into huggingface_hub's cache were no fix), else None."""
    cached = _hub_cache_repo(path)
    if cached is None:
        return None
    repo_id, revision = cached
    return (
        f"; it is the Hugging Face cache's copy of {repo_id}: complete an interrupted download "
        f"with `{_hf_download(repo_id, revision)}` where the hub can be reached "
        "(HF_HUB_OFFLINE unset)"
    )


def _hub_cache_repo(path: Path) -> tuple[str, str | None] | None:
    """The hub id and revision whose Hugging Face cache snapshot holds ``path``
    (``models--ORG--NAME/snapshots/<commit>/...``), else None. The revision is None for the
    default branch's snapshot, else the branch or tag naming it, else its commit: `hf download`
    of the bare id fetched the default branch, not the revision cut short."""
    for snapshot in (path, *path.parents):
        repo = snapshot.parent.parent
        if snapshot.parent.name == "snapshots" and repo.name.startswith("models--"):
            refs = _cached_refs(repo)
            naming = [name for name, ref in refs.items() if _reads(ref) == snapshot.name]
            revision = None if "main" in naming else next(iter(naming), snapshot.name)
            return _cached_repo_id(repo), revision
    return None


def _cached_repo_id(repo: Path) -> str:
    """``models--ORG--NAME`` (a cached repository's folder, as huggingface_hub names it; hub
    ids hold no "--") -> ``ORG/NAME``."""
    return repo.name.removeprefix("models--").replace("--", "/")


def _cached_refs(repo: Path) -> dict[str, Path]:
    """A cached repository's refs (``main``, ``v2``, ``pr/1``...), each with the file under
    ``refs/`` that holds its commit, in path order."""
    refs = repo / "refs"
    return {ref.relative_to(refs).as_posix(): ref
            for ref in sorted(refs.rglob("*")) if ref.is_file()}  # fmt: skip


def _reads(path: Path) -> str:
    try:
        return path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""
