"""`training.cli.train_command`: the plain-Python function behind `inspector train`.

Knobs are set by name (`inspector train --set image_size=320 --set layers=[8,11,15]`, or
`train_command(data=..., out=..., image_size=320)`); each is declared once, with its default,
check and help text, in `training.config`. Every expected failure is an `InspectorError`
(DatasetError, TrainingError, ExportError, ModelPackageError) with a message fit to print and
a hint.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from training.config import TrainConfig, knob_help
from training.train import TrainResult, run_training

__all__ = ["knob_help", "train_command"]


def train_command(*, data: Path | str, out: Path | str, **knobs: Any) -> TrainResult:
    """Train a model package into `out` (models/<name>/<version>) from the data set at `data`,
    then evaluate it on the test split through inspector.core (metrics in the card, plots in
    report/). `knobs`: any of `knob_help()`'s names, as values or as `--set` text; None means
    the default."""
    # Folders (labelled=) may come as paths; knobs hold text.
    given = {k: str(v) if isinstance(v, PurePath) else v for k, v in knobs.items() if v is not None}
    return run_training(data, out, TrainConfig.from_knobs(given))
