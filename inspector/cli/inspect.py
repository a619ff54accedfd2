"""`inspector inspect` and `inspector models validate`: a package judged offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from inspector.cli.errors import error_line, fail
from inspector.cli.signing import Trusted, checked_signature, describe
from inspector.core.datasets import walk_images
from inspector.core.errors import InspectorError

if TYPE_CHECKING:
    from inspector.core.pipeline import Detector

models_app = typer.Typer(help="Work with model packages.", no_args_is_help=True)

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")


def load_detector(model_dir: Path, providers: str = "auto") -> Detector:
    """Load and verify a package (card, checksum, I/O contract, one run), or exit with its
    one-line error."""
    from inspector.core.pipeline import Detector
    from inspector.core.runtime import RuntimeOptions

    if providers not in PROVIDERS:
        raise fail(f"unknown provider {providers!r}: use {', '.join(PROVIDERS)}")
    try:
        return Detector.load(model_dir, RuntimeOptions(providers=providers))  # type: ignore[arg-type]
    except InspectorError as exc:
        raise fail(exc) from exc


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded (recursively, through symlinked folders) to their
    image files, sorted."""
    return walk_images(paths)


def inspect(
    model_dir: Annotated[Path, typer.Argument(help="Model package folder (models/NAME/VERSION).")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    heatmaps: Annotated[
        Path | None, typer.Option("--heatmaps", help="Write heatmap overlays (PNG) here.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Images per inference batch.")] = 8,
    providers: Annotated[str, typer.Option(help="auto, cpu, cuda or tensorrt.")] = "auto",
) -> None:
    """Judge images offline with a model package: verdict, score and time per file.

    Examples:

        inspector inspect models/tiles/1 part_001.png part_002.jpg

        inspector inspect models/tiles/1 frames/ --json --heatmaps /tmp/heat
    """
    from rich.console import Console
    from rich.table import Table

    from inspector.core.images import encode

    detector = load_detector(model_dir, providers)
    files = expand_images(paths)
    if not files:
        raise fail("no images found in the given paths")
    if heatmaps:
        heatmaps.mkdir(parents=True, exist_ok=True)
    table = Table("file", "verdict", "score", "ms", title=f"{detector.card.ref}")
    errors = 0
    out = Console(width=None if sys.stdout.isatty() else 240)
    for start in range(0, len(files), max(1, batch)):
        chunk = files[start : start + max(1, batch)]
        prepared = []
        for f in chunk:
            try:
                prepared.append((f, detector.prepare_bytes(f.read_bytes())))
            except (InspectorError, OSError) as exc:
                errors += 1
                error_line(f"{f}: {exc}")
        results = detector.infer([p for _, p in prepared])
        for (f, frame), res in zip(prepared, results, strict=True):
            ms = frame.decode_ms + res.infer_ms
            row = {
                "file": str(f),
                "verdict": res.verdict,
                "score": res.score,
                "threshold": res.threshold,
                "ms": round(ms, 2),
            }
            if res.label is not None:
                row["label"] = res.label
            if heatmaps:
                target = heatmaps / f"{files.index(f):04d}_{f.stem}_heatmap.png"
                target.write_bytes(encode(detector.overlay(frame, res), "png"))
                row["heatmap"] = str(target)
            if as_json:
                print(json.dumps(row), flush=True)
            else:
                colour = "red" if res.verdict == "fail" else "green"
                table.add_row(
                    str(f), f"[{colour}]{res.verdict}[/{colour}]", f"{res.score:.4f}", f"{ms:.1f}"
                )
    if not as_json:
        out.print(table)
        out.print(f"threshold {detector.threshold:.4f}, provider {detector.model.provider}")
    if errors:
        raise fail(f"{errors} of {len(files)} file(s) could not be judged", code=1)


def models_validate(
    model_dir: Annotated[Path, typer.Argument(help="Model package folder.")],
    trusted: Trusted = None,
) -> None:
    """Check a package: card, checksum, I/O contract, one dummy batch, and its signature.

    A package changed since it was signed fails, as every server refuses it.

    Example: inspector models validate models/tiles/1 --trusted keys/alice.pub
    """
    signature = checked_signature(model_dir, trusted)
    card = load_detector(model_dir, "cpu").card
    tiles = card.tiling
    tiled = f", tiles of {tiles.tile_width}x{tiles.tile_height} px" if tiles else ""
    print(
        f"ok: {card.ref} ({card.kind}) input {card.input.width}x{card.input.height} "
        f"{card.input.resize}{tiled}, threshold {card.threshold.value:.4f} "
        f"({card.threshold.method})"
    )
    print(describe(signature, checked=bool(trusted)))
