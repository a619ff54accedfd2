"""`inspector bench`: throughput and latency of a package in-process and of a running server
(the measuring lives in inspector.bench)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, get_args

import typer
from rich.console import Console
from rich.table import Table

from inspector.cli.errors import fail

if TYPE_CHECKING:
    from inspector.bench import Result

console = Console(stderr=True)


def bench(
    model_dir: Annotated[Path | None, typer.Argument(help="Package to run in-process.")] = None,
    images: Annotated[list[Path] | None, typer.Option(
        "--images", help="Image files or folders (default: synthetic 640x480 JPEGs).")] = None,
    server: Annotated[str | None, typer.Option(help="URL of a running server.")] = None,
    clients: Annotated[int, typer.Option(help="Concurrent clients against the server.")] = 8,
    seconds: Annotated[float, typer.Option(help="Measuring time per run.")] = 15.0,
    warmup: Annotated[float, typer.Option(
        help="Seconds of requests before measuring against a server (not counted).")] = 2.0,
    station: Annotated[str | None, typer.Option(
        help="Station to post to (default: the first one the server maps, when the key may "
             "read /v1/models; else 'bench', which a server with one model and no station "
             "mapping answers).")] = None,
    key: Annotated[str | None, typer.Option(
        help="API key (camera).", envvar="INSPECTOR_KEY")] = None,
    providers: Annotated[str, typer.Option(
        help="auto, cpu, cuda or tensorrt (in-process).")] = "auto",
    batch: Annotated[list[int] | None, typer.Option(
        "--batch", help="In-process batch size, repeatable (default: 1 and 8; on a GPU also "
                        "32).", min=1, max=256)] = None,
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="Data folder whose tensorrt-engines/ cache TensorRT engines (the "
                           "server's, to share them).")] = Path("inspector-data"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure images/s and latency of a package in-process and/or of a running server.

    In-process: decode + resize + ONNX Runtime at batch 1 and 8, and 32 on a GPU (one loop,
    ONNX Runtime's own threading; per image: decode, inference and host<->device copy time,
    and the GPU memory held), and, on a CPU with several cores, several loops sharing one
    session with the cores split between them as the server does. The provider that ran the
    model is named, with the reason. Server: N concurrent clients posting the
    images over keep-alive HTTP/1.1, each waiting for its answer before sending the next. The
    ratio printed is the server against the best in-process figure.

    Examples:

        inspector bench models/tiles/1 --images ../shared/data/mtd/test

        inspector bench models/tiles/1 --images frames/ --server http://127.0.0.1:8000 --key K
    """
    from inspector import bench as b
    from inspector.core.providers import ProviderChoice

    if model_dir is None and server is None:
        raise fail("give a MODEL_DIR, --server URL, or both")
    if providers not in get_args(ProviderChoice):
        raise fail(f"--providers {providers!r}: use one of {', '.join(get_args(ProviderChoice))}")
    blobs = b.load_images(images) if images else b.synthetic_jpegs()
    if not blobs:
        raise fail("no images found")
    results = []
    if model_dir is not None:
        results += _in_process(b, model_dir, blobs, seconds, providers, batch, data_dir)
    if server is not None:
        station = station or b.server_station(server, key) or "bench"
        console.print(f"server {server}, station {station}, {clients} clients, "
                      f"{seconds:.0f} s ...", highlight=False, markup=False)
        try:
            run = b.bench_server(server, blobs, clients, seconds, station, key, warmup)
        except ValueError as exc:
            raise fail(exc) from exc
        total = run.images + run.errors
        if run.images == 0:
            what = f"all {total} requests failed: {run.failures()}" if total else (
                "no request was answered within the measuring time")
            hint = b.failure_hint(run)
            if not total and run.late:
                what += f" ({run.late} answered after it ended)"
                hint = f"give the server longer: --seconds {max(2 * seconds, 5):g}"
            raise fail(f"server bench at {server} (station {station}): {what}", code=1,
                       hint=hint)
        if run.errors:
            console.print(f"note: {run.errors} of {total} requests failed: {run.failures()}",
                          highlight=False, markup=False)
        results.append(run)
    best_local = max((r.images_per_s for r in results if r.name.startswith("in-")), default=None)
    remote = next((r for r in results if r.name.startswith("server")), None)
    ratio = remote.images_per_s / best_local if remote and best_local else None
    if as_json:
        print(json.dumps({"images": len(blobs), "results": [r.as_dict() for r in results],
                          "server_vs_in_process": ratio}))
        return
    _print_table(results, len(blobs))
    if ratio is not None:
        Console().print(f"server / best in-process throughput: {ratio:.2f}")


def _in_process(b: ModuleType, model_dir: Path, blobs: list[bytes], seconds: float,
                providers: str, batches: list[int] | None, data_dir: Path) -> list[Result]:
    """Batch 1, 8 (and 32 on a GPU) in one loop; then, on a CPU with several cores, the
    server's split of the cores (several single-threaded calls sharing one session)."""
    from inspector.core.runtime import ENGINE_CACHE_DIR, plan_threads, uses_gpu

    plan = plan_threads(gpu=uses_gpu(providers))  # type: ignore[arg-type]
    sizes = sorted(set(batches or ([1, 8, 32] if plan.max_batch > 8 else [1, 8])))
    largest = max(*sizes, plan.max_batch)  # one TensorRT engine for every run
    cache = data_dir / ENGINE_CACHE_DIR
    results = []
    for n in sizes:
        console.print(f"in-process, batch {n}, {seconds:.0f} s ...")
        results.append(b.bench_in_process(model_dir, blobs, n, seconds, providers,
                                          max_batch=largest, engine_cache_dir=cache))
    if plan.workers > 1 and plan.intra_op_threads:  # CPU only: a GPU plan has no split
        console.print(f"in-process, {plan.workers} threads, {seconds:.0f} s ...")
        results.append(b.bench_in_process(model_dir, blobs, 1, seconds, providers,
                                          workers=plan.workers,
                                          intra_op_threads=plan.intra_op_threads))
    provider = results[0].provider_reason
    console.print(f"provider: {provider}", highlight=False, markup=False)
    return results


def _print_table(results: list[Result], n_images: int) -> None:
    """One row per run; per-image decode / inference / copy time for in-process runs."""
    def fmt(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    table = Table("run", "provider", "images/s", "p50 ms", "p95 ms", "p99 ms", "decode ms",
                  "infer ms", "copy ms", "GPU MiB", "errors", title=f"{n_images} distinct images")
    for r in results:
        table.add_row(r.name, r.provider or "-", f"{r.images_per_s:.1f}", fmt(r.p50_ms),
                      fmt(r.p95_ms), fmt(r.p99_ms), fmt(r.decode_ms, 2), fmt(r.infer_ms, 2),
                      fmt(r.copy_ms, 2), fmt(r.gpu_memory_mib, 0),
                      f"{r.errors} {r.error_statuses or ''}")
    Console().print(table)
