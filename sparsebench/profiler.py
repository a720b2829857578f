"""Profile loaded models: every figure of the assignment tables for one model, as a ProfileRow."""

from __future__ import annotations

import functools
import math
import tempfile
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .adapt import AdaptedGraph
from .artifact import load
from .data import load_dataset
from .device import check_threads
from .environment import collect_environment
from .errors import SparsebenchError, first_line
from .inputs import call
from .load import LoadedModel, LoadOptions
from .measure.accuracy import measure_accuracy
from .measure.energy import measure_energy
from .measure.interleaved import TimingConfig, time_interleaved
from .measure.latency import LatencyConfig, measure_latency, spread_warning
from .measure.memory import measure_memory
from .measure.sanity import empty_layer_warning, sanity_warnings
from .measure.size import file_size_mb, state_dict_size_mb
from .measure.threads import fixed_threads
from .progress import step
from .results import MB, LatencyStats, MemoryResult, ProfileRow, Report
from .runtimes import RuntimeModule, get_runtime, runtime_for_file, static_figures

RUNTIMES = ("torch", "onnxruntime")
INTERLEAVED_ROUNDS = 5  # profile of several files: rows rotate through this many rounds


@dataclass(frozen=True)
class ProfileConfig:
    """What to measure and for how long; `threads` None keeps torch's current thread count.

    `runtime="onnxruntime"` exports each PyTorch checkpoint to ONNX on the fly and runs it in
    ONNX Runtime; `.onnx` files run in ONNX Runtime whatever the runtime.
    """

    device: str = "cpu"
    threads: int | None = None
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    memory: bool = True
    memory_seconds: float = 1.0
    energy: bool = True
    energy_seconds: float = 1.0
    data: str | None = None
    data_split: str = "test"
    image: Any = None  # data.ImageOptions for an image folder (--resize, --normalize, ...)
    per_layer: bool = False
    runtime: str = "torch"

    def __post_init__(self):
        """Refuse bad options before anything loads; cap `threads` to the CPUs available."""
        from .device import check_device
        from .options import check_seconds

        if self.runtime not in RUNTIMES:
            raise SparsebenchError(f"unknown runtime '{self.runtime}': use {' or '.join(RUNTIMES)}")
        check_device(self.device)
        object.__setattr__(self, "threads", check_threads(self.threads))
        if not isinstance(self.latency, LatencyConfig):
            raise SparsebenchError("ProfileConfig.latency must be a LatencyConfig")
        rule = "--memory-seconds and --energy-seconds must be > 0 and finite"
        check_seconds("--memory-seconds", self.memory_seconds, rule=rule)
        check_seconds("--energy-seconds", self.energy_seconds, rule=rule)


def _build_from_file(path: str, options: LoadOptions, threads: int | None):
    """Child-process entry for memory measurement: re-load the checkpoint in isolation."""
    if threads:
        torch.set_num_threads(threads)
    loaded = load(path, options)
    return loaded.model, loaded.synthetic().to(options.device)


def _build_in_memory(model, specs, device):
    return model, specs.synthetic().to(device)


def _memory(loaded: LoadedModel, config: ProfileConfig) -> MemoryResult:
    if not config.memory:
        return MemoryResult(None, None, unavailable_reason="disabled (--no-memory)")
    if loaded.source:
        options = replace(loaded.options, device=config.device)
        build = functools.partial(_build_from_file, loaded.source, options, config.threads)
    else:
        build = functools.partial(_build_in_memory, loaded.model, loaded.specs, config.device)
    return measure_memory(
        build, device=config.device, min_seconds=config.memory_seconds, threads=config.threads
    )


def _sync(device: str):
    if device.startswith("cuda"):
        return torch.cuda.synchronize
    return lambda: None


def profile_loaded(
    loaded: LoadedModel, config: ProfileConfig | None = None, latency: LatencyStats | None = None
) -> ProfileRow:
    """Measure one loaded model on `config.device`; `latency` if it was timed already
    (interleaved with other rows by `profile`)."""
    config = config or ProfileConfig()
    with fixed_threads(config.threads):
        return _profile_row(loaded, config, latency)


def _profile_row(loaded: LoadedModel, config: ProfileConfig, latency) -> ProfileRow:
    model = loaded.model.to(config.device)
    if not isinstance(model, torch.fx.GraphModule | AdaptedGraph):
        model = model.eval()  # a torch.export program is captured in its mode (no eval())
    inputs = loaded.synthetic().to(config.device)
    sparsity, macs = static_figures(model, inputs[:1])
    with torch.inference_mode():
        if latency is None:
            with step(f"timing {loaded.name}"):
                latency = measure_latency(
                    lambda: call(model, inputs), config.device, config.latency
                )
        energy_step = step(f"measuring energy of {loaded.name}") if config.energy else nullcontext()
        with energy_step:
            energy = (
                measure_energy(
                    lambda: call(model, inputs),
                    _sync(config.device),
                    device=config.device,
                    batch_size=loaded.batch_size,
                    min_seconds=config.energy_seconds,
                    latency_s=latency.median / 1e3,
                )
                if config.energy
                else None
            )
    with step(f"measuring memory of {loaded.name}") if config.memory else nullcontext():
        memory = _memory(loaded, config)
    accuracy = None
    if config.data:
        with step(f"measuring accuracy of {loaded.name} on {config.data}"):
            dataset = load_dataset(config.data, config.data_split, image=config.image)
            accuracy = measure_accuracy(model, dataset, loaded.input_shape, config.device)
    warnings = [w for w in (spread_warning(latency),) if w]
    warnings += energy.warnings if energy is not None else []
    sanity, flags = _sanity(loaded, model, sparsity, config.device)
    warnings += sanity
    artifact = _artifact_info(loaded, model, inputs, config.device)
    warnings += artifact.pop("warnings")
    if loaded.source:
        size_mb, size_source = file_size_mb(loaded.source), "file"
    else:
        size_mb, size_source = state_dict_size_mb(model), "state_dict (in memory)"
    threads, runtime_options = torch.get_num_threads(), getattr(model, "settings", None)
    if runtime_options and "intra_op_num_threads" in runtime_options:
        threads = runtime_options["intra_op_num_threads"]  # what the session really uses
    return ProfileRow(
        model=loaded.name,
        format=_format_of(loaded, model),
        runtime=model.runtime if isinstance(model, RuntimeModule) else "torch",
        device=config.device,
        batch_size=loaded.batch_size,
        input_shape=list(loaded.input_shape),
        inputs=loaded.specs.to_json(),
        params=sparsity.params,
        nonzero_params=sparsity.nonzero_params,
        sparsity_pct=sparsity.sparsity_pct,
        prunable_params=sparsity.prunable_params,
        size_mb=size_mb,
        size_source=size_source,
        macs_m=macs.dense_m,
        effective_macs_m=macs.effective_m,
        peak_mem_mb=memory.peak_mb,
        avg_mem_mb=memory.avg_mb,
        latency_ms=latency,
        throughput=1e3 * loaded.batch_size / latency.median,
        energy_mj=energy.mj_per_inference if energy else None,
        energy_method=energy.method if energy else "disabled",
        top1=accuracy.top1 if accuracy else None,
        top5=accuracy.top5 if accuracy else None,
        source=loaded.source,
        source_kind=loaded.kind,
        threads=threads,
        runtime_options=runtime_options,
        memory=memory,
        energy=energy,
        accuracy=asdict(accuracy) if accuracy else None,
        per_layer=_per_layer(sparsity, macs) if config.per_layer else None,
        warnings=warnings,
        flags=flags,
        **artifact,
    )


SANITY_SAMPLES = 8  # distinct inputs: constant outputs show only across samples


def _sanity(loaded: LoadedModel, model, sparsity, device: str) -> tuple[list[str], dict]:
    """Warnings and JSON flags for all-zero layers and outputs that ignore the input (the
    layers of a model another runtime holds are read off its weights, `sparsity`)."""
    with torch.inference_mode():
        outputs = call(model, loaded.synthetic(seed=1, batch=SANITY_SAMPLES).to(device))
    if not isinstance(model, RuntimeModule):
        return sanity_warnings(model, outputs)
    warnings, flags = sanity_warnings(torch.nn.Module(), outputs)
    empty = [layer.name for layer in sparsity.layers if layer.params and not layer.nonzero]
    flags["empty_layers"] = empty
    return [empty_layer_warning(name) for name in empty] + warnings, flags


def _format_of(loaded: LoadedModel, model) -> str:
    if isinstance(model, RuntimeModule):
        return model.format
    return loaded.meta.format if loaded.meta else "dense"


def _artifact_info(loaded: LoadedModel, model, inputs, device: str) -> dict:
    """Verification, stored size and kernel evidence of an exported artifact (else empty).

    Every figure is measured here or at load, never copied from the artifact's metadata:
    the verification is the check the artifact passed when it was loaded, the stored size
    is read off the restored weights.
    """
    meta = loaded.meta
    if meta is None or not meta.export:
        return {"warnings": []}
    verification = loaded.verification.to_dict() if loaded.verification is not None else None
    if isinstance(model, RuntimeModule):  # the runtime holds the weights; its file is the size
        return {"warnings": [], "verification": verification}
    from .formats import get_exporter
    from .measure.kernels import kernel_evidence

    exporter = get_exporter(meta.format)
    kernels = None
    warnings = []
    if exporter.kernel_evidence:
        converted = exporter.converted_layers(model)
        kernels = kernel_evidence(model, inputs, converted, exporter.kernel_evidence, device)
        if kernels["fell_back_to_dense"]:
            fell = kernels["fell_back_to_dense"]
            more = f" and {len(fell) - 3} more" if len(fell) > 3 else ""
            warnings.append(
                f"{kernels['sparse_layers']} of {kernels['converted_layers']} converted layers "
                f"ran a sparse kernel; {len(fell)} fell back to dense: {', '.join(fell[:3])}{more}"
            )
    return {
        "warnings": warnings,
        "verification": verification,
        "stored_mb": exporter.stored_bytes(model) / MB,
        "kernels": kernels,
    }


def _per_layer(sparsity, macs) -> list[dict]:
    return [
        {
            "name": layer.name,
            "kind": layer.kind,
            "shape": layer.shape,
            "params": layer.params,
            "nonzero": layer.nonzero,
            "sparsity_pct": layer.sparsity_pct,
            "macs_m": macs.per_layer.get(layer.name, 0) / 1e6,
        }
        for layer in sparsity.layers
    ]


def _open(path, options: LoadOptions, runtime: str, folder: Path) -> LoadedModel:
    """Load `path` for `runtime`: a PyTorch file for a runtime that opens its own files (a
    checkpoint for onnxruntime) is exported to that format first, reporting the file the
    user gave; eager torch runs whatever a file restores, and other files load as they are."""
    wanted = get_runtime(runtime)
    if runtime_for_file(Path(path)) is not None or not wanted.suffixes:
        return load(path, options)
    from .export import export
    from .formats import ExportConfig

    folder.mkdir(parents=True)
    target = folder / f"{Path(path).stem}{wanted.suffixes[0]}"
    export(path, target, ExportConfig.of(format=wanted.accepts[0]), replace(options, device="cpu"))
    converted = load(target, options)
    converted.name = Path(path).stem
    converted.converted_from = str(path)  # reported as the source, not the temporary file
    return converted


def _time_rows(opened: list[LoadedModel], config: ProfileConfig) -> list[LatencyStats | None]:
    """One latency per row; several rows are timed interleaved, in rotating rounds, so
    machine drift hits them alike (each still gets `min_iters` calls and `min_seconds`)."""
    if len(opened) < 2:
        return [None] * len(opened)  # profile_loaded times a single row itself
    calls = {}
    for index, loaded in enumerate(opened):
        inputs = loaded.synthetic().to(config.device)
        calls[str(index)] = lambda m=loaded.model, x=inputs: call(m, x)
    latency, rounds = config.latency, INTERLEAVED_ROUNDS
    timing = TimingConfig(rounds, block_seconds=latency.min_seconds / rounds,
                          block_iters=math.ceil(latency.min_iters / rounds),
                          warmup=latency.warmup)  # fmt: skip
    with torch.inference_mode(), step(f"timing {len(opened)} models interleaved ({rounds} rounds)"):
        comparison = time_interleaved(calls, timing, config.device)
    return [LatencyStats.from_samples(comparison.samples(str(i))) for i in range(len(opened))]


def _failure(path, exc: Exception) -> dict[str, str]:
    message = str(exc) if isinstance(exc, SparsebenchError) else first_line(exc, with_type=True)
    return {"source": str(path), "error": message}


def profile(
    paths: list[str | Path] | str | Path,
    config: ProfileConfig | None = None,
    options: LoadOptions | None = None,
) -> Report:
    """Load and profile each checkpoint; one row per path that could be profiled, in order.

    Rows are timed interleaved (like `compare`); a file that cannot be loaded or measured is
    kept in `Report.failures` with its error and the other rows are still measured. When no
    file can be profiled, the first error is raised.
    """
    config = config or ProfileConfig()
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    options = replace(options or LoadOptions(), device=config.device)
    # threads first: ONNX Runtime sessions take torch's thread count when they open
    with fixed_threads(config.threads), ExitStack() as stack:
        # exported ONNX files stay until the rows are measured: the memory child re-loads them
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sparsebench-")))
        opened, failures, errors = [], [], []
        for index, path in enumerate(paths):
            try:
                opened.append(stack.enter_context(_open(path, options, config.runtime,
                                                        folder / str(index))))  # fmt: skip
            except Exception as exc:  # kept with its error; the other rows go on
                failures.append(_failure(path, exc))
                errors.append(exc)
        rows = _measure_rows(opened, config, failures, errors)
    if not rows:
        raise (
            errors[0]
            if isinstance(errors[0], SparsebenchError)
            else SparsebenchError(failures[0]["error"])
        )
    settings = asdict(config)
    settings["load"] = {k: v for k, v in asdict(options).items() if v not in (None, False)}
    settings["timing"] = "interleaved rounds" if len(rows) > 1 else "one row"
    environment = collect_environment(config.device)
    return Report(environment=environment, config=settings, results=rows, failures=failures)


def _measure_rows(opened, config, failures, errors) -> list[ProfileRow]:
    rows = []
    for loaded, latency in zip(opened, _time_rows(opened, config), strict=True):
        try:
            row = _profile_row(loaded, config, latency)
        except Exception as exc:  # a row whose memory/energy/accuracy fails is kept aside
            failures.append(_failure(loaded.source, exc))
            errors.append(exc)
            continue
        if loaded.converted_from is not None:
            row.source = loaded.converted_from
            row.size_source = f"file ({loaded.format.upper()} exported on the fly)"
        rows.append(row)
    return rows
