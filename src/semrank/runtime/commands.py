"""CLI commands of this stage (registered by ``semrank.cli``): ``semrank info``."""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

import typer

# The --backend help of every command that loads a model.
BACKEND_HELP = (
    "Inference backend: auto (default; `semrank info` shows what it picks), fast, onnx, "
    "onnx-int8, openvino, openvino-bf16, openvino-int8, torch or torch-fp16."
)
_PACKAGES = ("semrank", "onnxruntime", "openvino", "onnx", "tokenizers", "numpy", "torch")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def collect_info(device: str | None = None) -> dict[str, Any]:
    """Versions, CPU features, threads and the backend each default picks (and why)."""
    import onnxruntime

    from semrank.runtime import resolve_backend
    from semrank.runtime._select import cgroup_cpu_limit, detect_features

    features = detect_features()
    choices = {name: resolve_backend(name, device) for name in ("auto", "fast")}
    return {
        "default_model": _default_model_backend(choices),
        "versions": {name: _version(name) for name in _PACKAGES},
        "cpu": {key: value for key, value in features.items() if key not in ("openvino", "torch")},
        "threads": features["cpu_count"],
        "cpu_quota": cgroup_cpu_limit(),
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "backends": {
            name: {"backend": c.backend, "device": c.device, "reason": _reason(c)}
            for name, c in choices.items()
        },
    }


def _reason(choice: Any) -> str:
    """Why ``choice`` was made, and, for a device this machine lacks, that it cannot run here
    (a CUDA plan was printed on a machine without CUDA, and the first model load failed)."""
    from semrank.errors import BackendUnavailableError
    from semrank.runtime import require_device

    try:
        require_device(choice)
    except BackendUnavailableError as exc:
        return f"{choice.reason}; not available here: {exc}"
    return str(choice.reason)


def _default_model_backend(choices: dict[str, Any]) -> dict[str, str]:
    """What ``Reranker()`` runs on: "auto" means "fast" for a bf16-measured catalog model."""
    from semrank.models.catalog import default_spec

    spec = default_spec()
    if spec.bf16_measured:
        fast = choices["fast"]
        # bf16 is the CPU's half precision; on a GPU "fast" means that device's own choice.
        why = "auto runs it as backend='fast'"
        if fast.device == "cpu":
            why = f"its bf16 loss is measured within bounds, so {why}"
        return {"name": spec.name, "backend": fast.backend, "reason": f"{why} ({_reason(fast)})"}
    return {"name": spec.name, "backend": choices["auto"].backend, "reason": "auto"}


def _print_info(info: dict[str, Any]) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    typer.echo(f"versions: {versions}")
    cpu = info["cpu"]
    flags = [k for k, v in cpu.items() if v is True]
    quota = f" (CPU quota {info['cpu_quota']:g})" if info["cpu_quota"] is not None else ""
    typer.echo(f"cpu: {cpu['processor']} ({cpu['machine']}), {info['threads']} threads{quota}")
    typer.echo(f"cpu features: {', '.join(flags) or 'none of interest'}")
    typer.echo(f"onnxruntime providers: {', '.join(info['onnxruntime_providers'])}")
    for name, choice in info["backends"].items():
        label = "default (auto)" if name == "auto" else "backend='fast'"
        typer.echo(f"{label}: {choice['backend']} on {choice['device']} - {choice['reason']}")
    model = info["default_model"]
    typer.echo(f"default model {model['name']}: {model['backend']} - {model['reason']}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to ``app``."""

    @app.command("info")
    def info(
        device: str = typer.Option(None, "--device", help="Device to plan for: cpu or cuda."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Versions, CPU features, threads, and which inference backend is picked and why."""
        data = collect_info(device)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
        else:
            _print_info(data)
