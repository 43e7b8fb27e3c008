"""Backend selection (features in, choice out), the fast CPU backends, cascades, `semrank info`."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import BackendUnavailableError, InvalidInputError
from semrank.models.spec import ResolvedModel
from semrank.runtime import (
    BACKENDS,
    BatchingConfig,
    apply_activation,
    load_embedder,
    load_scorer,
    resolve_backend,
)
from semrank.runtime._batching import padded_width
from semrank.runtime._select import cgroup_cpu_limit, choose_backend, cpu_flags
from tiny_models import random_pairs, tiny_spec

INTEL_AMX = {"avx2": True, "avx512f": True, "amx_bf16": True, "openvino": True}
ZEN4 = {"avx2": True, "avx512f": True, "avx512_bf16": True, "avx512_vnni": True, "openvino": True}
OLD_AVX2 = {"avx2": True, "openvino": True}
GRAVITON3 = {"bf16": True, "openvino": True}


# --- selection policy -------------------------------------------------------------------


@pytest.mark.parametrize("features", [INTEL_AMX, ZEN4, OLD_AVX2])
def test_auto_stays_fp32_on_every_cpu(features) -> None:
    choice = choose_backend(features)
    assert (choice.backend, choice.device) == ("openvino", "cpu")


@pytest.mark.parametrize(("features", "flag"), [(INTEL_AMX, "amx_bf16"), (ZEN4, "avx512_bf16")])
def test_fast_uses_bf16_where_the_cpu_has_it_and_names_the_flag(features, flag) -> None:
    choice = choose_backend(features, allow_lossy=True)
    assert choice.backend == "openvino-bf16"
    assert flag in choice.reason


def test_fast_without_native_bf16_stays_fp32() -> None:
    assert choose_backend(OLD_AVX2, allow_lossy=True).backend == "openvino"


def test_on_arm_with_bf16_fast_stays_fp32_and_info_does_not_deny_the_cpus_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Graviton3 (Arm BF16) `semrank info` said "CPU has no native bf16" and listed no
    feature: OpenVINO has no Arm bf16, so fp32 is right, but the reason was untrue."""
    from semrank.runtime import _select

    (tmp_path / "cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd sve i8mm bf16\n")
    monkeypatch.setattr(_select, "PROC_CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setattr(_select.platform, "machine", lambda: "aarch64")
    _select.detect_features.cache_clear()
    try:
        features = _select.detect_features()
    finally:
        monkeypatch.undo()
        _select.detect_features.cache_clear()
    assert features["bf16"] and not features["avx512_bf16"]  # `semrank info` lists it
    choice = choose_backend(GRAVITON3, allow_lossy=True)
    assert choice.backend == "openvino"  # OpenVINO's CPU plugin has no Arm bf16
    assert "no native bf16" not in choice.reason and "not on Arm's bf16" in choice.reason


def test_without_openvino_everything_falls_back_to_onnx() -> None:
    for allow_lossy in (False, True):
        choice = choose_backend({**ZEN4, "openvino": False}, allow_lossy=allow_lossy)
        assert choice.backend == "onnx"
        assert "pip install 'semrank[openvino]'" in choice.reason


def test_a_cuda_onnxruntime_is_preferred_when_no_device_is_given() -> None:
    choice = choose_backend({**ZEN4, "onnxruntime_cuda": True})
    assert (choice.backend, choice.device) == ("onnx", "cuda")
    # An explicit CPU request wins over the GPU.
    assert choose_backend({**ZEN4, "onnxruntime_cuda": True}, device="cpu").device == "cpu"


def test_cuda_without_onnxruntime_cuda_uses_torch_fp16_or_onnx_for_the_error() -> None:
    assert choose_backend({**ZEN4, "torch_cuda": True}, device="cuda").backend == "torch-fp16"
    assert choose_backend(ZEN4, device="cuda:1").backend == "onnx"


def test_cpu_flags_parses_linux_cpuinfo() -> None:
    text = "processor : 0\nflags\t\t: fpu avx2 avx512_bf16 amx_tile\n\nprocessor : 1\n"
    assert {"avx2", "avx512_bf16", "amx_tile"} <= cpu_flags(text)
    assert cpu_flags("nothing here") == frozenset()


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        ("avx2 avx512f avx512_vnni", True),  # Cascade Lake / Ice Lake: OpenVINO emulates bf16
        ("avx2 avx512f avx512_bf16", False),  # Cooper Lake, Zen4
        ("avx2 avx512f amx_bf16", False),  # Sapphire Rapids
        ("avx2 fma", False),  # OpenVINO runs fp32 here
    ],
)
def test_openvino_bf16_is_refused_where_openvino_would_emulate_bf16(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: str, refused: bool
) -> None:
    """OpenVINO takes a bf16 hint on any AVX-512 CPU: on one without native bf16 (ONEDNN capped
    at AVX512_CORE) 128 pairs took 54.9 s in "openvino-bf16" against 1.7 s in fp32."""
    from semrank.runtime import _select

    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n")
    monkeypatch.setattr(_select, "PROC_CPUINFO", tmp_path / "cpuinfo")
    if refused:
        with pytest.raises(BackendUnavailableError, match=r"would emulate bf16.*'openvino'"):
            resolve_backend("openvino-bf16")
    else:
        assert resolve_backend("openvino-bf16").backend == "openvino-bf16"
    assert resolve_backend("openvino").backend == "openvino"


def test_info_lists_avx_vnni_and_int8_is_not_refused_on_cpus_without_vnni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without VNNI int8 sums saturate at 16 bits: OpenVINO int8 (oneDNN capped at AVX2) moved
    0..1 scores by 0.024 on average against 0.017 with VNNI, but nDCG@10 on TREC DL 2019 held
    (0.6334, fp32 0.6330), so int8 stays available there (the README says so). `semrank info`
    listed avx512_vnni but not Alder Lake's avx_vnni, so such a laptop looked VNNI-less."""
    from semrank.runtime import _select

    monkeypatch.setattr(_select, "PROC_CPUINFO", tmp_path / "cpuinfo")
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx_vnni\n")
    _select.detect_features.cache_clear()
    try:
        features = _select.detect_features()
    finally:
        _select.detect_features.cache_clear()
    assert features["avx_vnni"] and not features["avx512_vnni"]
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f\n")
    for backend in ("onnx-int8", "openvino-int8"):
        assert resolve_backend(backend).backend == backend


def test_explicit_backends_are_used_as_requested_and_unknown_ones_rejected() -> None:
    assert resolve_backend("onnx-int8").backend == "onnx-int8"
    assert {"auto", "fast", "onnx", "onnx-int8", "openvino", "openvino-bf16"} <= set(BACKENDS)
    with pytest.raises(BackendUnavailableError, match="'tensorrt'"):
        resolve_backend("tensorrt")


def test_unknown_devices_are_named() -> None:
    for device in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(BackendUnavailableError, match=f"unknown device '{device}'"):
            resolve_backend(None, device)
    assert resolve_backend("onnx", "cuda:1").device == "cuda:1"


@pytest.mark.parametrize(
    ("backend", "device"), [("", None), (" ", None), (None, ""), ("auto", " ")]
)
def test_blank_backends_and_devices_are_refused(backend, device) -> None:
    """An unset shell variable ("$BACKEND"): "" ran fp32 where "auto" runs bf16, and a blank
    device ran as the CPU in one place and as a named device in another."""
    with pytest.raises(BackendUnavailableError, match="is blank; leave it out"):
        resolve_backend(backend, device)


def test_a_backend_and_device_that_cannot_go_together_are_refused() -> None:
    """OpenVINO ran a CUDA request on the CPU without a word; torch-fp16 on the CPU and any
    backend on 'mps' failed at load, in a server as a startup traceback."""
    refused = [
        ("openvino", "cuda", "runs on the CPU only, not on 'cuda'"),
        ("openvino-bf16", "mps", "runs on the CPU only"),
        ("torch-fp16", "cpu", "needs a CUDA device \\(device 'cuda'\\), got 'cpu'"),
        ("onnx", "mps", "runs only with backend 'torch', not 'onnx'"),
    ]
    for backend, device, named in refused:
        with pytest.raises(BackendUnavailableError, match=named):
            resolve_backend(backend, device)
    assert resolve_backend(None, "mps").backend == "torch"
    # One CPU device: "cpu:0" runs what "cpu" runs (it picked ONNX fp32 over bf16).
    for backend in (None, "fast"):
        assert resolve_backend(backend, "cpu:0") == resolve_backend(backend, "cpu")


@pytest.mark.parametrize(
    "options",
    [{"max_batch_size": "8"}, {"token_budget": None}, {"max_batch_size": 2.5},
     {"max_batch_size": True}, {"length_multiple": 2.5}, {"token_budget": 0}],
)  # fmt: skip
def test_batching_values_must_be_positive_integers(options) -> None:
    """Strings and None failed in a comparison (TypeError), floats at the first model call."""
    with pytest.raises(InvalidInputError, match=f"BatchingConfig {next(iter(options))} must be"):
        BatchingConfig(**options)


def test_the_torch_backend_takes_the_thread_cap(tiny_model) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        load_scorer(tiny_spec(tiny_model("bert")), backend="torch", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_torch_scorer_used_before_a_fork_scores_in_the_child(tiny_model) -> None:
    """A child forked after the parent scored on the torch backend (a multiprocessing fork
    pool, gunicorn --preload) waited for good in its first model call: torch's OpenMP pool is
    the parent's. The child now scores on one thread, the parent's scores, with a warning."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a pool: one thread needs none
    try:
        scorer = load_scorer(tiny_spec(tiny_model("bert")), backend="torch")
        pairs = random_pairs(64, max_query_words=60)
        parents = scorer.score_pairs(pairs)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            try:  # the child never returns into pytest, whatever happens
                with warnings.catch_warnings(record=True) as said:
                    warnings.simplefilter("always")
                    scores = scorer.score_pairs(pairs)
                warned = any("forked" in str(w.message) for w in said)
                os.write(write, f"{warned} {np.abs(scores - parents).max():.9f}".encode())
            finally:
                os._exit(0)
        os.close(write)
        status = _wait_for(child, timeout_s=30)
        assert status is not None, "the forked child hung in its first torch model call"
        warned, difference = os.read(read, 100).decode().split()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert warned == "True" and float(difference) < 1e-5
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_child_forked_after_the_model_loaded_can_let_go_of_it(tiny_model, backend: str) -> None:
    """A child forked after the parent loaded a model (gunicorn --preload, os.fork) hung when
    the model was destroyed there, at its exit or when it dropped the Reranker: ONNX Runtime's
    and OpenVINO's thread pools waited for the parent's threads. gunicorn waited 30 s for
    each worker to exit, then killed it. The child now keeps the parent's model."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    from semrank import Reranker

    # threads=2: a thread pool, on any machine (a tiny model: the bundled one takes seconds)
    reranker = Reranker(tiny_model("bert"), backend=backend, threads=2)
    documents = ["Fleas are small insects.", "Paris is in France."]
    _until_other_threads_sleep()  # a --preload master forks long after its pools went idle
    read, write = os.pipe()  # forked before the parent scores: the gunicorn --preload case
    child = os.fork()
    if child == 0:
        try:  # the child never returns into pytest, whatever happens
            scores = reranker.score("what is a flea", documents)
            del reranker  # the child's only reference: what its exit does to the model
            gc.collect()
            os.write(write, " ".join(f"{score:.9f}" for score in scores).encode())
        finally:
            os._exit(0)
    os.close(write)
    status = _wait_for(child, timeout_s=30)
    childs = [float(score) for score in os.read(read, 100).decode().split()]
    os.close(read)
    assert status is not None, f"the forked child hung letting go of the {backend} model"
    assert os.waitstatus_to_exitcode(status) == 0
    assert np.allclose(childs, reranker.score("what is a flea", documents), atol=1e-6)


# Run as its own process: semrank.pipeline imported before any model loads, as in a long-lived
# process (a test run, a server), so its at-fork hook runs before the runtime's.
FORK_WHILE_HELD = """
import os, sys, time
from pathlib import Path
import semrank.pipeline as pipeline
from semrank.store import create_index
home = Path(sys.argv[1])
create_index("held", home=home).upsert([{"id": "a", "text": "fleas"}, {"id": "b", "text": "cats"}])
pipeline.search("held", "fleas", retriever="dense", home=home)  # held open, its embedder loaded
time.sleep(0.5)  # the embedder's thread pool idle, as in a process forking later on
pid = os.fork()
if pid == 0:
    os._exit(0)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("ended", os.waitstatus_to_exitcode(status))
        sys.exit(0)
    time.sleep(0.05)
os.kill(pid, 9)
print("hung")
"""


def test_a_child_forked_while_an_index_is_held_open_starts(tmp_path: Path) -> None:
    """A subprocess with a preexec_fn (or a fork pool) started while semrank held an index
    open hung before it began: the at-fork hook dropped the parent's index handles in the
    child, destroying their embedding model's thread pool, which waited for the parent's
    threads for good (a whole-suite run hung so)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_HELD, str(tmp_path / "home")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["ended", "0"], (done.stdout, done.stderr[-2000:])


def _until_other_threads_sleep(timeout_s: float = 5.0) -> None:
    """Wait until no other thread of this process runs. A new pool's workers spin for some ms
    before they block; a child forked while they spin let go of its model even without the
    fix, so the test passed whatever the fix did (Linux's /proc; elsewhere a wait)."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        time.sleep(0.5)
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                states.append((task / "stat").read_text().rpartition(")")[2].split()[0])
        if states.count("R") <= 1:  # this thread, reading them
            return
        time.sleep(0.005)


def _wait_for(child: int, *, timeout_s: float) -> int | None:
    """The child's wait status, or None (and the child killed) if it ran past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return status
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    return None


def _cgroup(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_cgroup_cpu_quota_is_read_in_v2_v1_and_hybrid_layouts(tmp_path: Path) -> None:
    """A container's CPU limit was ignored: the runtimes sized their pools by the host's cores."""
    v2 = tmp_path / "v2"
    _cgroup(v2, {"cpu.max": "150000 100000\n"})
    assert cgroup_cpu_limit(v2, "0::/\n") == 1.5
    _cgroup(v2, {"kubepods/pod1/cpu.max": "50000 100000\n"})
    assert cgroup_cpu_limit(v2, "0::/kubepods/pod1\n") == 0.5  # its own cgroup first
    assert cgroup_cpu_limit(v2, "0::/not/mounted/here\n") == 1.5  # else the mount's root
    _cgroup(v2, {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_limit(v2, "0::/\n") is None
    v1 = tmp_path / "v1"
    _cgroup(
        v1, {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}
    )
    hybrid = "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n0::/\n"
    assert cgroup_cpu_limit(v1, hybrid) == 2.0
    _cgroup(v1, {"cpu,cpuacct/cpu.cfs_quota_us": "-1"})
    assert cgroup_cpu_limit(v1, hybrid) is None
    assert cgroup_cpu_limit(tmp_path / "absent", hybrid) is None
    _cgroup(v1, {"cpu,cpuacct/cpu.cfs_quota_us": "garbage"})
    assert cgroup_cpu_limit(v1, hybrid) is None


def test_a_parents_cpu_quota_caps_its_children(tmp_path: Path) -> None:
    """Each level's quota is an upper bound: a limit on a parent (a systemd slice, Docker's
    cgroup above a container's, DinD's /init) was missed when the process's own said max."""
    v2 = tmp_path / "v2"
    _cgroup(v2, {"cpu.max": "max 100000\n", "slice/cpu.max": "200000 100000\n",
                 "slice/svc/cpu.max": "max 100000\n"})  # fmt: skip
    assert cgroup_cpu_limit(v2, "0::/slice/svc\n") == 2.0
    _cgroup(v2, {"slice/svc/cpu.max": "400000 100000\n", "slice/cpu.max": "100000 100000\n"})
    assert cgroup_cpu_limit(v2, "0::/slice/svc\n") == 1.0  # the tighter parent
    v1 = tmp_path / "v1"
    _cgroup(v1, {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000",
                 "cpu/docker/cpu.cfs_quota_us": "100000", "cpu/docker/cpu.cfs_period_us": "100000",
                 "cpu/docker/abc/cpu.cfs_quota_us": "-1",
                 "cpu/docker/abc/cpu.cfs_period_us": "100000"})  # fmt: skip
    assert cgroup_cpu_limit(v1, "3:cpu:/docker/abc\n") == 1.0


def test_models_loaded_without_threads_keep_to_the_container_quota(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    from semrank.runtime import _select

    _cgroup(tmp_path, {"cpu.max": "50000 100000\n", "self": "0::/\n"})
    monkeypatch.setattr(_select, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(_select, "PROC_SELF_CGROUP", tmp_path / "self")
    assert _select.usable_cpus() == 1
    (tmp_path / "cpu.max").write_text("100000000 100000\n")  # 1000 CPUs: no cap at all
    assert _select.default_threads() is None
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_scorer(tiny_spec(tiny_model("bert")), backend="torch")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# --- batching ---------------------------------------------------------------------------


def test_padded_width_rounds_up_but_never_past_the_limit() -> None:
    assert padded_width(17, 16) == 32
    assert padded_width(16, 16) == 16
    assert padded_width(500, 16, max_width=512) == 512
    assert padded_width(505, 16, max_width=510) == 510
    with pytest.raises(ValueError):
        BatchingConfig(length_multiple=0)


# --- the backends on tiny models ------------------------------------------------------------


def cross_encoder(model_dir: Path) -> ResolvedModel:
    return tiny_spec(model_dir)


def _reference(model_dir: Path, pairs) -> np.ndarray:
    return load_scorer(cross_encoder(model_dir), backend="onnx").score_pairs(pairs)


def _spread_ok(reference: np.ndarray) -> None:
    # The bounds below are relative to the spread, so a flat random model cannot pass them.
    assert reference.max() - reference.min() > 0.05


@pytest.mark.parametrize("family", ["bert", "gated"])
def test_openvino_fp32_matches_onnx(tiny_model, family) -> None:
    pytest.importorskip("openvino")
    model_dir = tiny_model(family)
    pairs = random_pairs(40, seed=3)
    ref = _reference(model_dir, pairs)
    got = load_scorer(cross_encoder(model_dir), backend="openvino").score_pairs(pairs)
    np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("family", ["bert", "gated"])
@pytest.mark.parametrize("backend", ["onnx-int8", "openvino-bf16"])
def test_lossy_backends_stay_close_to_fp32_and_keep_the_ranking(
    tiny_model, backend, family
) -> None:
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
    model_dir = tiny_model(family)
    pairs = random_pairs(60, seed=5)
    ref = _reference(model_dir, pairs)
    _spread_ok(ref)
    got = load_scorer(cross_encoder(model_dir), backend=backend).score_pairs(pairs)
    spread = float(ref.max() - ref.min())
    assert np.max(np.abs(got - ref)) <= 0.1 * spread
    # Ranking: Spearman correlation of the two orders.
    rank_ref, rank_got = np.argsort(np.argsort(ref)), np.argsort(np.argsort(got))
    assert np.corrcoef(rank_ref, rank_got)[0, 1] > 0.95
    sig_ref = apply_activation(ref, "sigmoid")
    assert np.max(np.abs(apply_activation(got, "sigmoid") - sig_ref)) < 0.05


def test_int8_export_is_cached_per_model(tiny_model, _isolated_onnx_cache: Path) -> None:
    model_dir = tiny_model("bert")
    load_scorer(cross_encoder(model_dir), backend="onnx-int8")
    cached = sorted((_isolated_onnx_cache / "onnx").glob("*.int8.onnx"))
    load_scorer(cross_encoder(model_dir), backend="onnx-int8")
    assert cached and sorted((_isolated_onnx_cache / "onnx").glob("*.int8.onnx")) == cached
    load_scorer(cross_encoder(tiny_model("bert", num_labels=2)), backend="onnx-int8")
    assert len(list((_isolated_onnx_cache / "onnx").glob("*.int8.onnx"))) == len(cached) + 1


# Loads the tiny model of argv[1] with backend onnx-int8, whose quantization (seconds to minutes
# for a real model) stalls once it has written part of its file, saying so on stderr.
STALLED_QUANTIZATION = """
import sys, time
import onnxruntime.quantization
from semrank.runtime import load_scorer
from tiny_models import tiny_spec
def stalled(source, target, **options):
    with open(target, "wb") as written:
        written.write(b"part of a graph")
    print("quantizing", file=sys.stderr, flush=True)
    time.sleep(120)
onnxruntime.quantization.quantize_dynamic = stalled
load_scorer(tiny_spec(sys.argv[1]), backend="onnx-int8")
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM and SIGHUP are POSIX signals")
def test_a_model_cache_file_being_written_is_removed_on_sigterm_and_sighup(
    tiny_model, tmp_path: Path
) -> None:
    """A SIGTERM (a rollout, `timeout`) or SIGHUP (a closed terminal) while the int8 graph (or
    an ONNX export, an OpenVINO quantization) was written ended the process without its cleanup,
    and its temporary file stayed in the model cache for good, one per interrupted start."""
    import subprocess
    import sys

    tests = str(Path(__file__).parent)  # for tiny_models
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-c", STALLED_QUANTIZATION, str(tiny_model("bert"))]
    caches = {stop: tmp_path / stop.name for stop in (signal.SIGTERM, signal.SIGHUP)}
    loadings = {  # both at once, a cache each: each takes a second to start
        stop: subprocess.Popen(
            command,
            env={**os.environ, "SEMRANK_CACHE": str(cache), "PYTHONPATH": path},
            stderr=subprocess.PIPE,
            text=True,
        )
        for stop, cache in caches.items()
    }
    try:
        for stop, loading in loadings.items():
            assert loading.stderr is not None
            assert loading.stderr.readline() == "quantizing\n"
            assert [p.name for p in (caches[stop] / "onnx").glob("*.tmp.onnx")]  # being written
            loading.send_signal(stop)
        for stop, loading in loadings.items():
            assert loading.wait(timeout=60) == -stop
    finally:
        for loading in loadings.values():
            loading.kill()
    for cache in caches.values():
        assert not list((cache / "onnx").glob("*.tmp*"))
        assert len(list((cache / "onnx").glob("*.onnx"))) == 1  # the fp32 export, whole


@pytest.mark.parametrize("backend", ["openvino", "openvino-bf16", "onnx-int8"])
def test_embedders_of_every_cpu_backend_agree_with_fp32(tiny_model, backend) -> None:
    if backend.startswith("openvino"):
        pytest.importorskip("openvino")
    model = ResolvedModel(
        name="tiny-bi",
        path=tiny_model("bert", "encoder"),
        kind="bi-encoder",
        architecture="BertModel",
        max_length=64,
        activation="cosine",
    )
    texts = [doc for _, doc in random_pairs(20, seed=7)]
    ref = load_embedder(model, backend="onnx").embed(texts)
    got = load_embedder(model, backend=backend).embed(texts)
    cosine = np.einsum("ij,ij->i", ref, got)
    assert cosine.min() > (0.9999 if backend == "openvino" else 0.98)


def test_loaded_scorers_say_which_backend_they_run(tiny_model) -> None:
    scorer = load_scorer(cross_encoder(tiny_model("bert")))
    assert scorer.backend == resolve_backend(None).backend  # type: ignore[attr-defined]


# --- semrank info -----------------------------------------------------------------------


def test_info_command_prints_versions_features_and_the_choice() -> None:
    from typer.testing import CliRunner

    from semrank.cli import app

    result = CliRunner().invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["versions"]["onnxruntime"]
    assert "avx2" in info["cpu"]
    assert info["backends"]["auto"]["backend"] == resolve_backend(None).backend
    assert info["backends"]["fast"]["reason"]


def test_info_says_when_a_requested_device_is_not_here(no_cuda: None) -> None:
    """`semrank info --device cuda` printed a CUDA plan on a machine without CUDA."""
    from semrank.runtime.commands import collect_info

    info = collect_info("cuda")
    assert "not available here" in info["backends"]["auto"]["reason"]
    assert "not available here" in info["default_model"]["reason"]
    assert "bf16" not in info["default_model"]["reason"]  # a CPU precision beside a CUDA plan
    assert "bf16" in collect_info()["default_model"]["reason"]
    assert "not available here" not in collect_info()["backends"]["auto"]["reason"]


def test_an_onnxruntime_that_only_lists_cuda_is_not_taken_for_a_gpu(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu lists CUDA wherever it is installed: "auto" picked CUDA on a machine
    without a GPU, and every session fell back to fp32 on the CPU with only a warning."""
    import onnxruntime as ort

    from semrank.runtime import _select
    from semrank.runtime.onnx_backend import create_session
    from semrank.runtime.onnx_export import onnx_model_path

    if _select._cuda_driver_loads():
        pytest.skip("a CUDA driver is installed here")
    listed = ["CUDAExecutionProvider", *ort.get_available_providers()]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)  # as onnxruntime-gpu
    assert not _select._ort_has_cuda()
    # A driver but no usable CUDA (missing cuDNN, CUDA_VISIBLE_DEVICES=""): the probe session
    # falls back to the CPU, so "auto" stays on the CPU instead of refusing to load.
    monkeypatch.setattr(_select, "_cuda_driver_loads", lambda: True)
    assert not _select._ort_has_cuda()
    path = onnx_model_path(tiny_model("bert"), "sequence-classification", cache_dir=tmp_path)
    with pytest.warns(UserWarning), pytest.raises(BackendUnavailableError, match="could not start"):
        create_session(path, device="cuda")
    assert create_session(path, device="cpu").get_providers() == ["CPUExecutionProvider"]


def test_openvino_loads_without_its_usage_telemetry() -> None:
    """Importing OpenVINO sent a usage event to Google Analytics (and forked from a thread on
    Python 3.12+); semrank's processes keep its telemetry package out."""
    import subprocess
    import sys

    pytest.importorskip("openvino")
    probe = (
        "from semrank.runtime.openvino_backend import _import_openvino; _import_openvino(); "
        "import sys, openvino.tools.ovc as ovc; "
        "print(type(ovc.telemetry).__module__, sys.modules['openvino_telemetry'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "None"]


def test_one_loaded_embedder_per_model_and_settings_while_it_is_used(tmp_path: Path) -> None:
    """Every open index loaded its own copy of its embedding model (115-160 MB each, for the
    process's life), beside the served blend's bi-encoder: one copy is shared while held."""
    import gc
    import weakref

    from semrank.models import resolve_embedding_model
    from semrank.runtime import load_embedder
    from semrank.store import create_index

    first = create_index("a", home=tmp_path)
    second = create_index("b", home=tmp_path, embedding_max_length=64)
    third = create_index("c", home=tmp_path)
    for index in (first, second, third):
        index.upsert([{"id": "1", "text": "fleas bite"}])
    assert first.embedder is third.embedder  # same model, same settings
    assert second.embedder is not first.embedder  # another max_length: another graph
    model = resolve_embedding_model(None)
    alone = weakref.ref(load_embedder(model, backend="onnx"))
    gc.collect()
    assert alone() is None  # nothing holds it: not kept for the process's life


def test_onnx_runtime_records_and_sends_no_telemetry(tmp_path: Path) -> None:
    """onnxruntime 1.2x wrote a device id and a usage event under ~/.cache/Microsoft and tried
    to upload them (28 DNS lookups from a server in 2.5 minutes) unless told not to before it
    was imported."""
    import os
    import subprocess
    import sys

    script = (
        "import semrank.runtime, onnxruntime, os\n"
        "from semrank import Reranker\n"
        "Reranker('all-minilm-l6-v2', backend='onnx').score('q', ['a document'])\n"
        "print(os.environ['ORT_DISABLE_TELEMETRY'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env |= {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env["SEMRANK_CACHE"] = str(tmp_path / "semrank-cache")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert not any((tmp_path / "cache").rglob("*Microsoft*"))
    assert not (tmp_path / ".cache" / "Microsoft").exists()


def test_an_openvino_that_fails_to_import_is_not_chosen_and_is_named(tmp_path: Path) -> None:
    """A broken install (a missing libtbb) was picked by "auto" (find_spec found it), and every
    command then said to install the OpenVINO that was installed."""
    import os
    import subprocess
    import sys

    shadow = tmp_path / "shadow" / "openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("libtbb.so.12: cannot open it")\n')
    docs = tmp_path / "docs.txt"
    docs.write_text("fleas are insects\nParis is in France\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}

    def rerank(*options: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "semrank.cli", "rerank", "what is a flea"]
        command += ["--docs", str(docs), "--json", *options]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    chosen = rerank()
    assert chosen.returncode == 0, chosen.stderr  # auto took ONNX Runtime
    assert json.loads(chosen.stdout)["results"][0]["index"] == 0
    forced = rerank("--backend", "openvino")
    assert forced.returncode == 3
    assert "OpenVINO is installed but fails to import (libtbb.so.12" in forced.stderr


def test_the_torch_backend_loads_without_printing_a_progress_bar(
    tiny_model, capfd: pytest.CaptureFixture[str]
) -> None:
    """transformers 5 drew a "Loading weights" bar on stderr at every load: inside semrank
    serve's JSON log lines, a notebook's cells, every CLI run on this backend. A caller's own
    setting is left as it was."""
    pytest.importorskip("torch")
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    model_dir = tiny_model("bert")
    capfd.readouterr()
    shown, hub_hidden = hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    hf_logging.enable_progress_bar()
    hub.disable_progress_bars()  # a host's own choice for huggingface_hub's bars
    try:
        load_scorer(tiny_spec(model_dir), backend="torch")
        assert hf_logging.is_progress_bar_enabled() and hub.are_progress_bars_disabled()
    finally:
        (hf_logging.enable_progress_bar if shown else hf_logging.disable_progress_bar)()
        (hub.disable_progress_bars if hub_hidden else hub.enable_progress_bars)()
    assert "Loading weights" not in capfd.readouterr().err
