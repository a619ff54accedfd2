"""`inspector export fp16 | triton`: a package as an fp16 package or a Triton model repository
(the work lives in inspector.export)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inspector.cli.errors import fail
from inspector.core.errors import InspectorError

export_app = typer.Typer(help="Export a model package: fp16 package, Triton model repository.",
                         no_args_is_help=True)

ModelDir = Annotated[Path, typer.Argument(help="Model package folder (models/NAME/VERSION).")]


def fp16_cmd(
    model_dir: ModelDir,
    out: Annotated[Path, typer.Option("--out", help="New package folder to write "
                                      "(models/NAME/NEW_VERSION; must not exist).")],
    version: Annotated[str | None, typer.Option(
        help="Version in the new card (default: the source's version + '-fp16').")] = None,
    images: Annotated[list[Path] | None, typer.Option(
        "--images", help="Image files or folders for the parity check (default: 16 "
                         "synthetic frames at the model's size).")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Allowed difference, as a share of the fp32 graph's largest score (and largest "
             "map value).", min=0.0, max=1.0)] = 0.02,
    max_flips: Annotated[int, typer.Option(
        help="Verdicts at the card's threshold that may differ from fp32.", min=0)] = 0,
) -> None:
    """Convert a package's graph to fp16 (uint8 input and float32 outputs kept), check it
    against the fp32 graph on ONNX Runtime's CPU, and write it as a new package only when
    scores and maps agree within --tolerance and no verdict flips. The card records
    `export.precision: fp16` and the parity figures. Needs the [export] extra.

    An fp16 package is for GPUs: on a CPU it runs slower than fp32.

    Example: inspector export fp16 models/mtd/1 --out models/mtd/1-fp16 --images data/mtd/test
    """
    from inspector.core.datasets import walk_images
    from inspector.export.fp16 import export_fp16

    blobs: list[bytes] = []
    if images:
        files = [f for f in walk_images(images) if f.is_file()]
        if not files:
            raise fail(f"no image files under {', '.join(map(str, images))}")
        blobs = [f.read_bytes() for f in files[:200]]
    try:
        result = export_fp16(model_dir, out, version=version, images=blobs,
                             tolerance=tolerance, max_flips=max_flips)
    except InspectorError as exc:
        raise fail(exc) from exc
    p = result.parity
    print(f"wrote {result.card.ref} (fp16) to {result.root}")
    print(f"parity on {p.n_images} images: score max |diff| {p.max_abs_diff_score:.3g} "
          f"(scale {p.score_scale:.3g}), map max |diff| {p.max_abs_diff_map:.3g} "
          f"(scale {p.map_scale:.3g}), verdict flips {p.verdict_flips}; "
          f"tolerance {p.tolerance:g}")


def triton_cmd(
    model_dir: ModelDir,
    out: Annotated[Path, typer.Option("--out", help="Triton model repository folder.")],
    max_batch: Annotated[int, typer.Option(help="max_batch_size in config.pbtxt.")] = 32,
    cpu: Annotated[bool, typer.Option(
        "--cpu", help="instance_group KIND_CPU instead of KIND_GPU.")] = False,
    instances: Annotated[int, typer.Option(help="Model instances.", min=1, max=64)] = 1,
    tensorrt_fp16: Annotated[bool, typer.Option(
        "--tensorrt-fp16", help="Let Triton's ONNX Runtime backend run the graph through "
                                "TensorRT in fp16 (GPU instances).")] = False,
    queue_delay_us: Annotated[int, typer.Option(
        help="max_queue_delay_microseconds of dynamic batching.", min=0)] = 2000,
    name: Annotated[str | None, typer.Option(help="Model name (default: the card's).")] = None,
    version: Annotated[int | None, typer.Option(
        help="Triton version number (default: the card's version when it is a number, "
             "else 1).")] = None,
) -> None:
    """Write a Triton Inference Server model repository: OUT/NAME/config.pbtxt (ONNX Runtime
    backend, dynamic batching, instance group), OUT/NAME/VERSION/model.onnx and the card
    beside the config. Clients preprocess as the edge server does and judge with the card's
    threshold.

    Example: inspector export triton models/mtd/1 --out triton-repo --max-batch 32 --tensorrt-fp16
    """
    from inspector.export.triton import TritonConfig, export_triton

    cfg = TritonConfig(max_batch=max_batch, max_queue_delay_us=queue_delay_us,
                       instance="cpu" if cpu else "gpu", instances=instances,
                       tensorrt_fp16=tensorrt_fp16)
    try:
        folder = export_triton(model_dir, out, cfg, name=name, version=version)
    except InspectorError as exc:
        raise fail(exc) from exc
    print(f"wrote {folder / 'config.pbtxt'}")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(out)}")
