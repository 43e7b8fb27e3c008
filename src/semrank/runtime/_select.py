"""Which backend ``backend=None`` / ``"auto"`` means on this machine, and why.

``detect_features()`` reads the machine (CPU flags, installed runtimes, GPUs);
``choose_backend(features, ...)`` is a pure function of that dict, so the policy is unit-tested
with any feature set.

Policy (measured on TREC DL 2019 and MiniLM-L6, see benchmarks/backends.py):
- a GPU that ONNX Runtime can use -> "onnx" on cuda; a requested CUDA device that only torch
  can use -> "torch-fp16";
- "auto" (the default) on CPU: "openvino" (fp32, same results as ONNX Runtime, faster) when
  OpenVINO is installed, else "onnx";
- "fast" on CPU with native bf16 (AMX or AVX512_BF16) and OpenVINO: "openvino-bf16"
  (2-3x ORT fp32; scores within 0.02 of fp32 and nDCG@10 within 0.005 on TREC DL 2019).
  ``runtime.model_backend`` turns "auto" into "fast" for catalog models marked
  ``bf16_measured`` (the shipped default), whose loss was measured model by model.
int8 is never chosen automatically (see benchmarks/backends.py for its measured loss), and
an explicit int8 request is not refused on x86 CPUs without VNNI: there its 16-bit
intermediate sums saturate and scores drift further from fp32, but the ranking held (OpenVINO
int8 with oneDNN capped at AVX512_CORE and at AVX2 on TREC DL 2019: nDCG@10 0.6344 and 0.6334
against 0.6330 in fp32 and 0.6362 with VNNI; mean 0..1 score change 0.024 against 0.017).
"""

from __future__ import annotations

import importlib.util
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from semrank._checks import is_int
from semrank.errors import BackendUnavailableError, InvalidInputError

__all__ = ["BackendChoice", "choose_backend", "cpu_flags", "detect_features"]

# CPU flags (as /proc/cpuinfo spells them) that matter for the backend choice, or for how
# well an explicitly requested int8 backend runs (`semrank info` lists them).
# Arm's BF16 extension (Graviton3, Apple M2): torch computes bf16 on it, OpenVINO does not.
ARM_BF16_FLAG = "bf16"
# int8 sums without 16-bit saturation: avx512_vnni (Cascade Lake on, Zen4), avx_vnni (Alder
# Lake and later Intel CPUs without AVX-512), amx_int8.
RELEVANT_FLAGS = (
    *("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"),
    ARM_BF16_FLAG,
)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
PROC_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True, kw_only=True)
class BackendChoice:
    """The backend and device picked, and a sentence saying why."""

    backend: str
    device: str
    reason: str


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = PROC_CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@lru_cache(maxsize=1)
def cpu_computes_bf16() -> bool:
    """The CPU multiplies bf16 natively (x86 AMX or AVX512_BF16, Arm's BF16 extension). Without
    it torch emulates bf16: a MiniLM-L6 training step under bf16 autocast took 9x its fp32 time
    where only AVX2 was allowed, 2.6x on AVX-512 without bf16. A VM that hides the flags
    gets fp32, slower at worst than bf16, never emulated."""
    flags = cpu_flags()
    return any(flag in flags for flag in (*BF16_FLAGS, ARM_BF16_FLAG))


def refuse_emulated_bf16(backend: str, flags: frozenset[str]) -> None:
    """OpenVINO takes a bf16 hint on any AVX-512 CPU and emulates bf16 where it is not native
    (Skylake-SP to Ice Lake Xeons, the common cloud VMs): "openvino-bf16" scored 30x slower
    than fp32 there. Elsewhere without native bf16 (AVX2, Arm) OpenVINO runs fp32."""
    if backend != "openvino-bf16" or "avx512f" not in flags:
        return
    if not any(flag in flags for flag in BF16_FLAGS):
        raise BackendUnavailableError(
            "backend 'openvino-bf16' would emulate bf16 on this CPU (AVX-512 without AMX or "
            "AVX512_BF16), 30x slower than fp32; use backend 'openvino' (fp32) or 'fast' "
            "(bf16 only where the CPU has it natively)"
        )


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 mounts the cpu controller under one of these names.
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def check_threads(threads: object, name: str = "threads") -> None:
    """None (the backend's choice), or inference threads from 1 to twice the usable CPUs:
    ONNX Runtime starts as many as asked for each network, and --threads 300 ran requests
    30-100x slower (606 threads fighting over 2 cores)."""
    if threads is None:
        return
    cpus = usable_cpus()
    if not is_int(threads, at_least=1) or int(threads) > 2 * cpus:  # type: ignore[call-overload]
        raise InvalidInputError(
            f"{name} must be a positive integer, at most {2 * cpus} (twice the {cpus} CPUs "
            f"this process may use), got {threads!r}; omit it to use every core"
        )


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity (``taskset``, a container's cpuset) capped by
    a container's CPU quota (``docker --cpus``, a Kubernetes CPU limit), not the machine's."""
    cpus = _visible_cpus()
    limit = cgroup_cpu_limit()
    return cpus if limit is None else max(1, min(cpus, math.ceil(limit)))


def _visible_cpus() -> int:
    """The CPUs this process may run on (its affinity), whatever a quota allows of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int | None:
    """Inference threads when the caller gave none: None (the runtime's own choice) unless a
    CPU quota is below the CPUs the runtime sees. ONNX Runtime and OpenVINO size their pools
    by cores and ignore quotas, so a 2-CPU container on a 64-core host ran 32-64 threads that
    the kernel throttled in turn."""
    limit = cgroup_cpu_limit()
    if limit is None or math.ceil(limit) >= _visible_cpus():
        return None
    return max(1, math.ceil(limit))


def cgroup_cpu_limit(root: Path | None = None, self_cgroup: str | None = None) -> float | None:
    """The CPUs a cgroup quota allows this process (cgroup v2 ``cpu.max``, v1 CFS quota: the
    tightest of its cgroup and their parents'), or None where there is none or it cannot be
    read."""
    root = root or CGROUP_ROOT
    if self_cgroup is None:
        try:
            self_cgroup = PROC_SELF_CGROUP.read_text(encoding="utf-8")
        except OSError:
            return None
    limits: list[float] = []
    for line in self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.strip().lstrip("/")
        if hierarchy == "0" and not controllers:
            limits += _limits_up_to(root, relative, _read_cpu_max)
        elif "cpu" in controllers.split(","):
            for mount in (root / name for name in _V1_CPU_DIRS):
                limits += _limits_up_to(mount, relative, _read_cfs_quota)
    return min(limits, default=None)


def _limits_up_to(mount: Path, relative: str, read: Callable[[Path], float | None]) -> list[float]:
    """The quotas of a cgroup and each parent up to ``mount`` (each level caps the ones below
    it). A container sees its own cgroup at the mount while /proc/self/cgroup may name the
    host's path: then the mount alone is read."""
    if not mount.is_dir():
        return []
    folder = mount / relative if (mount / relative).is_dir() else mount
    limits = []
    while True:
        try:
            limit = read(folder)
        except (OSError, ValueError):
            limit = None
        if limit is not None:
            limits.append(limit)
        if folder == mount or mount not in folder.parents:
            return limits
        folder = folder.parent


def _read_cpu_max(folder: Path) -> float | None:
    quota, _, period = (folder / "cpu.max").read_text(encoding="ascii").strip().partition(" ")
    if quota == "max":
        return None
    return _ratio(int(quota), int(period or 100_000))


def _read_cfs_quota(folder: Path) -> float | None:
    quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="ascii"))
    if quota < 0:
        return None
    return _ratio(quota, int((folder / "cpu.cfs_period_us").read_text(encoding="ascii")))


def _ratio(quota: int, period: int) -> float:
    if quota <= 0 or period <= 0:
        raise ValueError(f"cgroup quota {quota} / period {period}")
    return quota / period


@lru_cache(maxsize=1)
def detect_features() -> dict[str, Any]:
    """What this machine offers: CPU flags, cores, installed runtimes, usable GPUs."""
    flags = cpu_flags()
    features: dict[str, Any] = {flag: flag in flags for flag in RELEVANT_FLAGS}
    features.update(
        machine=platform.machine(),
        processor=_cpu_model_name(),
        cpu_count=usable_cpus(),
        openvino=_openvino_imports(),
        torch=importlib.util.find_spec("torch") is not None,
        onnxruntime_cuda=_ort_has_cuda(),
    )
    return features


def _openvino_imports() -> bool:
    """OpenVINO is installed and imports: one that is installed but broken (a missing libtbb)
    was chosen by "auto", and every command then said to install it."""
    if importlib.util.find_spec("openvino") is None:
        return False
    from semrank.runtime.openvino_backend import keep_vendor_telemetry_off

    keep_vendor_telemetry_off()
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _cpu_model_name() -> str:
    try:
        for line in PROC_CPUINFO.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ort_has_cuda() -> bool:
    """ONNX Runtime can start CUDA here: onnxruntime-gpu lists CUDA wherever it is installed,
    and a session without a usable GPU, driver or CUDA libraries falls back to the CPU with a
    warning ("auto" then ran fp32 on the CPU). So a one-node session is started and asked."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers() or not _cuda_driver_loads():
        return False
    return _cuda_session_starts()


def _cuda_session_starts() -> bool:
    import warnings

    import onnxruntime as ort
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "probe", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fallback's warning: the answer is below
            session = ort.InferenceSession(model.SerializeToString(), providers=providers)
    except Exception:  # onnxruntime's own errors: no CUDA session here either way
        return False
    return "CUDAExecutionProvider" in session.get_providers()


def _cuda_driver_loads() -> bool:
    import ctypes

    name = "nvcuda.dll" if platform.system() == "Windows" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def choose_backend(
    features: dict[str, Any], *, device: str | None = None, allow_lossy: bool = False
) -> BackendChoice:
    """The backend for "auto" (``allow_lossy=False``) or "fast" given ``features``."""
    wants_cuda = device is not None and device.startswith("cuda")
    if wants_cuda or (device is None and features.get("onnxruntime_cuda")):
        return _gpu_choice(features, device or "cuda")
    if device not in (None, "cpu"):
        return BackendChoice(backend="onnx", device=device, reason=f"device {device!r} requested")
    if not features.get("openvino"):
        return BackendChoice(
            backend="onnx",
            device="cpu",
            reason="OpenVINO not installed, or it fails to import (pip install "
            "'semrank[openvino]': 1.3-3x faster on CPU)",
        )
    native_bf16 = [flag for flag in BF16_FLAGS if features.get(flag)]
    if native_bf16 and allow_lossy:
        return BackendChoice(
            backend="openvino-bf16",
            device="cpu",
            reason=f"CPU has native bf16 ({', '.join(native_bf16)}); bf16 scores measured "
            "within 0.02 of fp32 and nDCG@10 within 0.005",
        )
    hint = "; CPU has no native bf16"
    if native_bf16:
        hint = f"; backend='fast' would use bf16 ({', '.join(native_bf16)})"
    elif features.get(ARM_BF16_FLAG):  # "no native bf16" was untrue on Graviton3
        hint = "; OpenVINO runs bf16 on x86 only (AMX, AVX512_BF16), not on Arm's bf16"
    return BackendChoice(
        backend="openvino",
        device="cpu",
        reason="OpenVINO fp32: same results as ONNX Runtime, faster" + hint,
    )


def _gpu_choice(features: dict[str, Any], device: str) -> BackendChoice:
    if features.get("onnxruntime_cuda"):
        return BackendChoice(backend="onnx", device=device, reason="ONNX Runtime has CUDA")
    if features.get("torch_cuda"):
        return BackendChoice(
            backend="torch-fp16",
            device=device,
            reason="ONNX Runtime has no CUDA provider here; torch has CUDA (fp16)",
        )
    # onnx raises the clear "install onnxruntime-gpu" error.
    return BackendChoice(backend="onnx", device=device, reason="CUDA requested")
