"""Every training knob, declared once: its default, its check and its help text.

A knob is a dataclass field made with `knob(...)`; `inspector train --set key=value` (and
`training.cli.train_command(key=value)`) reach it by its name, `--set help` lists them from
here, and the resolved `TrainConfig` is saved whole in the card (`training.params`), so a
package says how to rebuild it. Fields made without `knob` are internal constants. This module
imports no torch: the command line reads it to parse and explain the knobs cheaply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any, Literal

from training.errors import TrainingError

Kind = Literal["auto", "anomaly", "classifier", "hybrid"]
#: The image score of a tiled model by default: the mean of each tile map's top 10%.
TILED_SCORE_TOP = 0.1
#: Principal axes kept by default (`pca=-1`, "auto"), per model kind: each chosen on its own
#: protocol (training/README.md): anomaly models on validation goods and held-out defect types
#: (192 of 384), hybrids on out-of-fold CV of their labelled defects (all: 0).
AUTO_PCA = {"anomaly": 192, "hybrid": 0}
#: Density-aware search by default (`density=-1`), per model kind, chosen the same way: anomaly
#: models measure a patch's distance in units of the matched bank entry's spacing to its 3
#: nearest neighbours; hybrids keep plain distances (their out-of-fold CV preferred them).
AUTO_DENSITY = {"anomaly": 3, "hybrid": 0}
Resize = Literal["stretch", "letterbox", "center_crop"]
Color = Literal["auto", "rgb", "gray"]

DEFAULT_BACKBONE = "effnet_lite0"


@dataclass(frozen=True)
class Knob:
    """How a knob is parsed, checked and explained."""

    help: str
    #: int, float, str, or "ints" / "floats" for a list of them.
    type: Any
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    optional: bool = False
    #: The `--set` name when it differs from the field name.
    name: str | None = None


def knob(help: str, type: Any = None, **spec: Any) -> dict[str, Knob]:
    """Field metadata that makes a field a knob: `field(default=3, metadata=knob("..."))`;
    its type is the default's unless given."""
    return {"knob": Knob(help, type, **spec)}


@dataclass(frozen=True)
class PatchCoreConfig:
    """The PatchCore graph (the defaults are the measured best: training/README.md)."""

    pool: int = field(
        default=3, metadata=knob("local average of patch features over pool x pool; 1 = off", low=1)
    )
    sigma: float = field(
        default=4.0, metadata=knob("Gaussian smoothing of the map in input pixels; 0 = off", low=0)
    )
    #: The whole map (1.0) measured best on a validation split with held-out defect types
    #: and on both weld sets (training/README.md, tail study): goods' local noise peaks
    #: then stop deciding the score. A line whose defects are tiny against an otherwise
    #: unchanged frame may prefer 0.1 or 0.01 (0 = the map's maximum).
    score_top_fraction: float = field(
        default=1.0,
        metadata=knob(
            "image score = mean of this top fraction of the map (1 = the whole map, "
            "0 = its maximum)",
            low=0,
            high=1,
            name="score_top",
        ),
    )
    #: Principal axes of the training goods' patch features the memory bank and the search
    #: keep: the low-variance rest is mostly noise that decided the goods' tail (tail study,
    #: training/README.md), and the nearest-neighbour search costs in proportion to it.
    pca: int = field(
        default=-1,
        metadata=knob(
            "keep this many principal components of the patch features for the memory bank "
            "and the nearest-neighbour search (0 = every channel; -1 = by kind: 192 for "
            "anomaly models, every channel for hybrids)",
            low=-1,
        ),
    )
    #: Textured regions of the good parts are covered sparsely by the bank, so their patches
    #: sit far from any entry and decided the goods' tail; dividing by the entry's own spacing
    #: puts every region of the good manifold on one scale (tail study, training/README.md).
    density: int = field(
        default=-1,
        metadata=knob(
            "measure a patch's distance to its nearest bank entry in units of that entry's "
            "mean distance to its N nearest bank neighbours (0 = plain distances; -1 = by "
            "kind: 3 for anomaly models, plain for hybrids)",
            low=-1,
        ),
    )


@dataclass(frozen=True)
class CoresetConfig:
    """Memory-bank size: `fraction` of all training patches, capped at `max_size` (the cap
    bounds inference cost, one [patches x bank] product per image)."""

    fraction: float = field(
        default=0.1,
        metadata=knob(
            "memory bank = this share of all training patches", low=0, high=1, name="coreset"
        ),
    )
    max_size: int = field(
        default=16000,
        metadata=knob("at most this many patches in the memory bank", low=1, name="coreset_max"),
    )
    min_size: int = 256
    proj_dim: int = 64
    max_candidates: int = 200_000


@dataclass(frozen=True)
class ClassifierConfig:
    """Fine-tuning the classifier. It stops on epochs and patience only, so the same seed gives
    the same model on a busy or an idle machine; a time budget is opt-in."""

    max_epochs: int = field(
        default=20, metadata=knob("classifier: at most this many epochs", low=1, name="epochs")
    )
    patience: int = field(
        default=4,
        metadata=knob(
            "classifier: stop after this many epochs without a lower validation loss", low=1
        ),
    )
    #: A fixed number keeps epochs short on a CPU whatever the data set size.
    samples_per_epoch: int = field(
        default=512,
        metadata=knob(
            "classifier: class-balanced draws per epoch; 0 = the training set size", low=0
        ),
    )
    lr: float = field(
        default=5e-4, metadata=knob("classifier: peak learning rate; AdamW, one-cycle", low=0)
    )
    max_minutes: float | None = field(
        default=None,
        metadata=knob(
            "classifier: wall-clock budget in minutes; default none, since a run that stops on "
            "time depends on the machine's load and is not reproducible",
            float,
            low=0,
            optional=True,
        ),
    )
    weight_decay: float = 1e-4
    #: Stages whose output stride is at most this stay frozen (Lite0: stages 0-5, the stem
    #: and blocks 0-4; ResNet: stem, layer1, layer2): cheaper backward passes, and early
    #: filters transfer as they are.
    frozen_stride: int = 8
    dropout: float = 0.2
    augment: bool = True


@dataclass(frozen=True)
class HybridConfig:
    """The hybrid's supervised head: a logistic regression on pooled patch features and the
    PatchCore distances, its threshold set on k-fold out-of-fold scores."""

    l2: float = field(
        default=1.0,
        metadata=knob(
            "hybrid: L2 penalty of the head (logistic regression on standardised features); "
            "more for fewer labelled defects",
            low=0,
            name="head_l2",
        ),
    )
    folds: int = field(
        default=5,
        metadata=knob(
            "hybrid: cross-validation folds for the out-of-fold calibration scores (fewer when "
            "a defect type has fewer images)",
            low=2,
            name="cv_folds",
        ),
    )
    #: Share of an image's patches, the most anomalous ones, whose features are averaged
    #: into the head's input: what the suspicious region looks like.
    top_patches: float = 0.02
    #: Defect bank (README, Hybrid): this many patches of each labelled defect, those
    #: farthest from the good bank, become prototypes of its type; 0 = no defect bank.
    defect_bank: int = field(
        default=3,
        metadata=knob(
            "hybrid: patches per labelled defect kept as prototypes of its type (the ones "
            "farthest from the good bank); 0 = no defect bank",
            low=0,
            name="defect_bank",
        ),
    )
    #: Optimiser iterations of the head (L-BFGS, full batch, deterministic).
    max_iter: int = 200
    #: Smallest number of labelled images per defect type: one image cannot be both in a
    #: training fold and out of it.
    min_per_type: int = 2


@dataclass(frozen=True)
class SplitConfig:
    #: Labeled folders are split by inspector.core.datasets.scan (as `inspector evaluate`).
    val_fraction: float | None = field(
        default=None,
        metadata=knob(
            "share of train/good held out for calibration, MVTec layout; default 0 for anomaly "
            "(it calibrates on leave-one-out scores), 0.1 for classifier",
            float,
            low=0,
            high=0.9,
            optional=True,
        ),
    )
    classifier_defect_split: tuple[float, float, float] = field(
        default=(0.5, 0.15, 0.35),
        metadata=knob(
            "classifier on the MVTec layout: per-type shares of test/<defect> for train, val, test",
            "floats",
            name="defect_split",
        ),
    )


@dataclass(frozen=True)
class TrainConfig:
    kind: Kind = field(
        default="auto",
        metadata=knob(
            "anomaly: PatchCore on good images; classifier: needs defect images; hybrid: "
            "PatchCore + a head on a few labelled defects; auto: hybrid when labelled defects "
            "are there for training (train/<defect>/, --labelled, a labeled folder), else anomaly",
            choices=("auto", "anomaly", "classifier", "hybrid"),
        ),
    )
    labelled: str | None = field(
        default=None,
        metadata=knob(
            "folder of reviewed images for training, labeled layout: <defect_type>/ (and "
            "optionally good/); files also in the data's test split leave the test split",
            str,
            optional=True,
        ),
    )
    backbone: str = field(
        default=DEFAULT_BACKBONE,
        metadata=knob(
            "effnet_lite0 (offline default), effnet_lite1, effnet_lite2 (offline), resnet18, "
            "resnet50, wide_resnet50_2, "
            "efficientnet_b0..b7; name@WEIGHTS picks a weights enum member"
        ),
    )
    layers: tuple[int, ...] | None = field(
        default=None,
        metadata=knob(
            "backbone stages to tap, e.g. [8,11,15]; stage 0 is the stem; default: "
            "the backbone's own",
            "ints",
            low=0,
            optional=True,
        ),
    )
    seed: int = field(
        default=0, metadata=knob("random seed: the same seed and data give the same package")
    )
    image_size: int = field(
        default=224,
        metadata=knob(
            "side of the square input, or of a square of the same area when "
            "aspect=auto picks an oblong one",
            low=32,
            high=2048,
        ),
    )
    aspect: Literal["auto", "square"] = field(
        default="auto",
        metadata=knob(
            "auto: an oblong input when the images' median aspect is beyond 4:3",
            choices=("auto", "square"),
        ),
    )
    resize: Resize = field(
        default="stretch",
        metadata=knob("how frames fit the input", choices=("stretch", "letterbox", "center_crop")),
    )
    color: Color = field(
        default="auto",
        metadata=knob("auto: gray when the training images are", choices=("auto", "rgb", "gray")),
    )
    tile: int = field(
        default=0,
        metadata=knob(
            "anomaly: tiled training and inference for large frames, the tile side in source "
            "pixels (each tile resized to image_size; e.g. 448 sees defects at half scale); "
            "0 = the whole frame is resized to the input",
            low=0,
            high=65_500,
        ),
    )
    tile_overlap: float = field(
        default=0.25,
        metadata=knob("tiles: least share of a tile that overlaps its neighbour", low=0, high=0.9),
    )
    patchcore: PatchCoreConfig = field(default_factory=PatchCoreConfig)
    coreset: CoresetConfig = field(default_factory=CoresetConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    target_frr: float = field(
        default=0.01,
        metadata=knob("threshold: target false-reject rate on validation goods", low=0, high=1),
    )
    target_escape: float | None = field(
        default=None,
        metadata=knob(
            "threshold: target escape rate on validation defects, instead of best F1 "
            "(hybrid: on out-of-fold scores of the labelled defects; default 0.01 there)",
            float,
            low=0,
            high=1,
            optional=True,
        ),
    )
    max_frr: float | None = field(
        default=0.02,
        metadata=knob(
            "threshold: a target escape rate may reject at most this share of the goods; "
            "past it the threshold sits at this rate (the card says the target was missed)",
            float,
            low=0,
            high=1,
            optional=True,
        ),
    )
    batch_size: int = field(
        default=16, metadata=knob("images per batch: features, fine-tuning", low=1)
    )
    #: Export fails when ONNX and PyTorch scores differ by more than this (relative).
    parity_tolerance: float = 1e-3
    opset: int = 18

    @classmethod
    def from_knobs(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A config with `values` (knob name -> value, or its text from `--set`) applied."""
        config = cls()
        table = knobs()
        given = set()
        for key, raw in values.items():
            name = key.strip().replace("-", "_")
            if name not in table:
                raise TrainingError(
                    f"unknown knob {key!r}", hint=f"known: {', '.join(sorted(table))}"
                )
            path, spec = table[name]
            config = _set(config, path, parse_value(name, spec, raw))
            given.add(name)
        if config.tile and "score_top" not in given:
            # A tile is mostly normal surface around a small defect: the whole-map mean that
            # suits whole frames would dilute it, so tiles score their top 10% by default.
            config = _set(config, ("patchcore", "score_top_fraction"), TILED_SCORE_TOP)
        _check_config(config)
        return config

    def to_params(self) -> dict[str, Any]:
        """JSON-ready dict for the card; only the parts that apply to this kind."""
        params = asdict(self)
        if self.kind != "classifier":
            params.pop("classifier")
            params["split"].pop("classifier_defect_split")
        else:
            params.pop("patchcore")
            params.pop("coreset")
        if self.kind != "hybrid":
            params.pop("hybrid")
        params["target_escape"] = self.resolved_target_escape
        params["split"]["seed"] = self.seed
        params["split"]["val_fraction"] = self.resolved_val_fraction
        return params

    @property
    def resolved_val_fraction(self) -> float:
        if self.split.val_fraction is not None:
            return self.split.val_fraction
        # Anomaly and hybrid calibrate on every training good (leave-one-out, out-of-fold).
        return 0.1 if self.kind == "classifier" else 0.0

    @property
    def resolved_target_escape(self) -> float | None:
        if self.target_escape is None and self.kind == "hybrid":
            return 0.01
        return self.target_escape

    def split_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `training.datasets.load_splits`."""
        return {
            "seed": self.seed,
            "val_fraction": self.resolved_val_fraction,
            "classifier_defect_split": (
                self.split.classifier_defect_split if self.kind == "classifier" else None
            ),
            "labelled": self.labelled,
        }


def _walk(cls: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for f in fields(cls):
        if "knob" in f.metadata:
            yield (*path, f.name), f
        elif f.default_factory is not MISSING and is_dataclass(f.default_factory):
            yield from _walk(f.default_factory, (*path, f.name))


def knobs() -> dict[str, tuple[tuple[str, ...], Knob]]:
    """`--set` name -> (field path in TrainConfig, its Knob)."""
    out = {}
    for path, f in _walk(TrainConfig):
        spec: Knob = f.metadata["knob"]
        if spec.type is None:
            spec = replace(spec, type=float if isinstance(f.default, float) else type(f.default))
        out[spec.name or f.name] = (path, spec)
    return out


def knob_help() -> list[str]:
    """One line per knob: name, default, help (what `inspector train --set help` prints)."""
    config, lines = TrainConfig(), []
    for name, (path, spec) in knobs().items():
        value: Any = config
        for part in path:
            value = getattr(value, part)
        shown = json.dumps(list(value) if isinstance(value, tuple) else value)
        choices = f" ({'|'.join(spec.choices)})" if spec.choices else ""
        lines.append(f"{name}={shown}{choices}: {spec.help}")
    return lines


def parse_value(name: str, spec: Knob, raw: Any) -> Any:
    """Parse (from text when `raw` is a string) and check one knob's value."""

    def bad(why: str) -> TrainingError:
        return TrainingError(f"--set {name}={raw}: {why}", hint=spec.help)

    value = raw
    if isinstance(raw, str) and spec.type is not str:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise bad(f"expected {_type_name(spec)}") from None
    if value is None:
        if not spec.optional:
            raise bad("a value is required")
        return None
    try:
        value = _coerce(spec.type, value)
    except (TypeError, ValueError):
        raise bad(f"expected {_type_name(spec)}") from None
    if spec.choices and value not in spec.choices:
        raise bad(f"choose one of {', '.join(spec.choices)}")
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, str):
            continue
        if spec.low is not None and item < spec.low:
            raise bad(f"must be at least {spec.low:g}")
        if spec.high is not None and item > spec.high:
            raise bad(f"must be at most {spec.high:g}")
    return value


def _coerce(kind: Any, value: Any) -> Any:
    if kind in ("ints", "floats"):
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("a list")
        return tuple(_coerce(int if kind == "ints" else float, v) for v in value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ValueError("an integer")
        return int(value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("a number")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("text")
    return value


def _type_name(spec: Knob) -> str:
    names = {int: "an integer", float: "a number", str: "text"}
    lists = {"ints": "a list of integers, e.g. [8,11,15]", "floats": "a list of numbers"}
    return lists.get(spec.type) or names.get(spec.type, "a value")


def _set(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return replace(config, **{path[0]: value})
    return replace(config, **{path[0]: _set(getattr(config, path[0]), path[1:], value)})


def _check_config(config: TrainConfig) -> None:
    """Checks across knobs."""
    if config.tile and config.kind not in ("anomaly", "auto"):
        raise TrainingError(f"tile: only anomaly models are tiled, not {config.kind}",
                            hint="drop --set tile, or train --kind anomaly")
    if config.tile and config.resize != "stretch":
        raise TrainingError(f"tile: tiles are stretched to the input, not {config.resize}",
                            hint="drop --set resize when tiling")
    split = config.split.classifier_defect_split
    if len(split) != 3 or abs(sum(split) - 1.0) > 1e-6:
        raise TrainingError(
            f"defect_split must be three fractions summing to 1, got {list(split)}",
            hint="e.g. --set defect_split=[0.5,0.15,0.35]",
        )
