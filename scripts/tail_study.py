"""Tail study for the anomaly model: which feature and scoring settings separate the hard
defects (thin cracks, fine textures) from goods, measured on a validation protocol.

    python scripts/tail_study.py --data ../shared/data/mtd                 # validation table
    python scripts/tail_study.py --data ../shared/data/mtd --variant NAME --test   # one, on test

Protocol (nothing is chosen on the test goods): 15% of train/good (seeded) are held out as
validation goods, the memory bank comes from the other 85%; defects of `--tune` types (default
crack, fray: the tail) are the only ones looked at while choosing, the other types
(`--confirm`) must not get worse. `--test` scores the given variant on the whole test split
(bank from all train goods), as a check of a choice made on validation.

Backbone tap maps are extracted once per input size and cached under `--cache` (float16
.npy); coreset order is cached per feature variant (greedy k-center picks are nested, so
every smaller bank is a prefix of the largest). Scoring variants then run on cached numbers.
Figures for a package must still come from `inspector train` + `inspector evaluate`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inspector.core.metrics import auroc
from inspector.core.operating import at_frr
from training.backbones import build_backbone
from training.config import TrainConfig
from training.datasets import load_splits
from training.images import load_images
from training.patchcore.coreset import greedy_coreset
from training.patchcore.model import _gaussian_kernel, bank_spacing
from training.train import _input_spec

#: Every tap any feature variant uses (EfficientNet-Lite0 stage indices).
ALL_TAPS = {
    "effnet_lite0": (5, 8, 11, 13, 15, 16),
    "effnet_lite1": (11, 15, 20),
    "effnet_lite2": (11, 15, 20),
}
FRRS = (0.01, 0.02, 0.05)


@dataclass(frozen=True)
class Features:
    """How tap maps become patch features on the stride-16 grid."""

    taps: tuple[int, ...] = (8, 11, 15)
    pool: int = 3
    #: How finer-than-grid taps reach the grid: "avg" or "max" pooling; "grid" keeps their
    #: own grid (the finest tap's grid becomes the patch grid, as the current model does).
    fine: str = "avg"
    #: Scale each tap to the same mean patch norm before concatenating.
    balance: bool = False
    #: Project patch features onto their first `pca` principal components (fitted on the
    #: bank goods) before the bank and kNN: 0 keeps every channel. The kNN cost is linear in
    #: the channels, so a projection pays for a larger input.
    pca: int = 0
    #: Whitening exponent on the kept axes: each axis is divided by eigenvalue**(whiten / 2)
    #: (0 = plain projection, 1 = Mahalanobis distance in the kept subspace). Free in the
    #: graph: it folds into the projection matrix.
    whiten: float = 0.0
    #: Memory bank: this share of the training patches, at most `bank_max` (the defaults are
    #: the product's `coreset` and `coreset_max`).
    bank_fraction: float = 0.1
    bank_max: int = 16000
    #: When > 0, a patch's distance is min over the bank of |x - m| / s_m, with s_m the mean
    #: distance of entry m to its `density` nearest other bank entries (sparse, textured regions
    #: of the good manifold count less; in the graph the 1/s_m fold into the one MatMul).
    density: int = 0

    def key(self) -> str:
        return hashlib.sha1(repr(self).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Scoring:
    sigma: float = 4.0
    top: float = 0.1
    #: When set, the score is the mean of these top-fraction means (local + global).
    tops: tuple[float, ...] = ()
    knn: int = 1
    bank: float = 1.0  # share of the default bank size (a prefix of the greedy order)
    #: When > 0, the score is the power mean (mean of map**power)**(1/power) of the whole map
    #: (1 = the whole-map mean; larger leans towards the map's peaks).
    power: float = 0.0


@dataclass(frozen=True)
class Variant:
    name: str
    features: Features = field(default_factory=Features)
    scoring: Scoring = field(default_factory=Scoring)
    image_size: int = 224
    backbone: str = "effnet_lite0"
    #: Reflect-pad the input by this many pixels a side before the backbone and crop the patch
    #: grid back (a multiple of 16): edge patches then see the part's texture continued
    #: instead of the convolutions' zero padding.
    pad: int = 0


def variants() -> list[Variant]:
    """The grid measured (first = today's default)."""
    out = [Variant("default")]
    for top in (0.2, 0.05, 0.02, 0.01, 0.0):
        out.append(Variant(f"top{top}", scoring=Scoring(top=top)))
    for sigma in (2.0, 8.0):
        out.append(Variant(f"sigma{sigma}", scoring=Scoring(sigma=sigma)))
    for k in (3, 9):
        out.append(Variant(f"knn{k}", scoring=Scoring(knn=k)))
    for b in (0.5, 0.25):
        out.append(Variant(f"bank{b}", scoring=Scoring(bank=b)))
    out.append(Variant("s5max", Features(taps=(5, 8, 11, 15), fine="max")))
    out.append(Variant("balance", Features(balance=True)))
    out.append(Variant("s5avg", Features(taps=(5, 8, 11, 15))))
    out.append(Variant("s5max_bal", Features(taps=(5, 8, 11, 15), fine="max", balance=True)))
    out.append(Variant("pool5", Features(pool=5)))
    out.append(Variant("pool1", Features(pool=1)))
    return out


def extra_variants(spec: str) -> list[Variant]:
    """`--extra` JSON: [{"name":..., "features":{...}, "scoring":{...}, "image_size":...}]."""
    out = []
    for item in json.loads(spec):
        feats = item.get("features", {})
        if "taps" in feats:
            feats["taps"] = tuple(feats["taps"])
        scoring = item.get("scoring", {})
        if "tops" in scoring:
            scoring["tops"] = tuple(scoring["tops"])
        out.append(
            Variant(
                item["name"],
                Features(**feats),
                Scoring(**scoring),
                item.get("image_size", 224),
                item.get("backbone", "effnet_lite0"),
                item.get("pad", 0),
            )
        )
    return out


class Study:
    def __init__(self, data: Path, cache: Path, image_size: int, seed: int = 0,
                 backbone: str = "effnet_lite0", pad: int = 0) -> None:
        if pad % 16:
            raise SystemExit(f"pad must be a multiple of 16 (the patch grid's stride), got {pad}")
        self.backbone = backbone
        self.pad = pad
        self.taps = ALL_TAPS[backbone]
        suffix = "" if backbone == "effnet_lite0" else f"_{backbone}"
        suffix += f"_pad{pad}" if pad else ""
        self.cache = cache / f"{data.name}_{image_size}_s{seed}{suffix}"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.splits = load_splits(data, seed=seed, val_fraction=0.15)
        self.full = load_splits(data, seed=seed, val_fraction=0.0)
        self.spec = _input_spec(self.splits, TrainConfig(image_size=image_size))
        self.seed = seed
        samples = {
            "train": list(self.splits.train),
            "val": list(self.splits.val),
            "test": list(self.splits.test),
        }
        # Train goods of the full split = bank goods + validation goods, same files.
        self.labels = {k: [s.label for s in v] for k, v in samples.items()}
        self.maps = {k: self._tap_maps(k, v) for k, v in samples.items()}

    def _tap_maps(self, part: str, samples: list) -> list[np.ndarray]:
        files = [self.cache / f"{part}_tap{t}.npy" for t in self.taps]
        if all(f.exists() for f in files):
            return [np.load(f, mmap_mode="r") for f in files]
        images = load_images(samples, self.spec, f"reading {part}").pixels
        if self.pad:
            p = self.pad
            images = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
        from training.backbones.base import Normalise

        backbone = build_backbone(self.backbone)
        backbone.set_taps(self.taps)
        norm = Normalise(backbone.weights.mean, backbone.weights.std)
        outs: list[list[np.ndarray]] = [[] for _ in self.taps]
        t0 = time.time()
        with torch.no_grad():
            for i in range(0, len(images), 16):
                maps = backbone(norm(torch.from_numpy(images[i : i + 16])))
                for j, m in enumerate(maps):
                    outs[j].append(m.numpy().astype(np.float16))
        print(f"  extracted {part}: {len(images)} images in {time.time() - t0:.0f} s", flush=True)
        for f, o in zip(files, outs, strict=True):
            np.save(f, np.concatenate(o))
        return [np.load(f, mmap_mode="r") for f in files]

    def patches(self, part: str, feats: Features, scales: list[float] | None = None
                ) -> tuple[torch.Tensor, tuple[int, int], list[float]]:
        """[N, h*w, C] patch features of a part, the grid, and the tap scales used."""
        chosen = [self.taps.index(t) for t in feats.taps]
        # The patch grid: the first stride-16 tap (stages 6-11), or the finest tap ("grid").
        coarse = [t for t in feats.taps if t >= 6]
        grid_tap = feats.taps[0] if feats.fine == "grid" or not coarse else coarse[0]
        gmap = self.maps[part][self.taps.index(grid_tap)]
        size = tuple(gmap.shape[-2:])
        rows: list[torch.Tensor] = []
        for j in chosen:
            fmap = torch.from_numpy(np.asarray(self.maps[part][j], dtype=np.float32))
            if feats.pool > 1:
                fmap = F.avg_pool2d(fmap, feats.pool, 1, feats.pool // 2, count_include_pad=False)
            if fmap.shape[-1] > size[-1]:
                if feats.fine == "max":
                    fmap = F.adaptive_max_pool2d(fmap, size)
                else:
                    fmap = F.adaptive_avg_pool2d(fmap, size)
            elif fmap.shape[-2:] != size:
                fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
            rows.append(fmap)
        if feats.balance and scales is None:
            scales = [1.0 / float(r.norm(dim=1).mean()) for r in rows]
        if scales is not None:
            rows = [r * s for r, s in zip(rows, scales, strict=True)]
        x = torch.cat(rows, dim=1)
        if self.pad:
            cut = self.pad // 16
            x = x[..., cut:-cut, cut:-cut]
        n, c, h, w = x.shape
        out = x.permute(0, 2, 3, 1).reshape(n, h * w, c)
        if feats.pca:
            mean, basis = self._projection(feats, out if part == "train" else None)
            out = (out - mean) @ basis
        return out, (h, w), scales or []

    def _projection(self, feats: Features, train: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and the first `feats.pca` principal axes of the bank goods' patches."""
        f = self.cache / f"pca_{feats.key()}.pt"
        if f.exists():
            return torch.load(f)
        if train is None:
            raise RuntimeError("the projection is fitted on the train part first")
        flat = train.reshape(-1, train.shape[-1]).double()
        mean = flat.mean(0)
        cov = ((flat - mean).T @ (flat - mean)) / (len(flat) - 1)
        vals, vecs = torch.linalg.eigh(cov)
        keep = vals.argsort(descending=True)[: feats.pca]
        kept = float(vals[keep].sum() / vals.sum())
        vecs = vecs.clone()
        if feats.whiten:
            vecs[:, keep] = vecs[:, keep] / vals[keep].clamp_min(1e-12) ** (feats.whiten / 2)
        print(f"  PCA {feats.pca} of {flat.shape[1]} channels keeps {100 * kept:.1f}% of the "
              "variance", flush=True)
        out = (mean.float(), vecs[:, keep].float().contiguous())
        torch.save(out, f)
        return out

    def bank_order(self, feats: Features, bank: torch.Tensor, tag: str) -> np.ndarray:
        f = self.cache / f"coreset_{tag}_{feats.key()}.npy"
        if f.exists():
            return np.load(f)
        n = min(feats.bank_max, round(feats.bank_fraction * len(bank)))
        t0 = time.time()
        order = greedy_coreset(bank.numpy(), n, seed=self.seed, max_candidates=200_000)
        print(f"  coreset {tag} {feats}: {n} in {time.time() - t0:.0f} s", flush=True)
        np.save(f, order)
        return order

    def distances(self, feats: Features, parts: list[str], test: bool
                  ) -> tuple[dict[str, dict[tuple[float, int], torch.Tensor]], tuple[int, int]]:
        """Patch kNN distances per part, for every (bank share, k) the variants use."""
        tag = "full" if test else "val"
        f = self.cache / f"dist_{tag}_{feats.key()}.pt"
        if f.exists():
            return torch.load(f)
        train, grid, scales = self.patches("train", feats)
        if test:  # the bank from all training goods: bank goods + validation goods
            val, _, _ = self.patches("val", feats, scales or None)
            train = torch.cat([train, val])
        flat = train.reshape(-1, train.shape[-1])
        order = torch.from_numpy(self.bank_order(feats, flat, tag))
        bank = flat[order]
        scale = bank_spacing(bank, feats.density) if feats.density else None
        keys = [(1.0, 1), (1.0, 3), (1.0, 9), (0.5, 1), (0.25, 1)]
        out: dict[str, dict[tuple[float, int], torch.Tensor]] = {}
        t0 = time.time()
        for part in parts:
            q, _, _ = self.patches(part, feats, scales or None)
            res: dict[tuple[float, int], list[torch.Tensor]] = {k: [] for k in keys}
            for i in range(0, len(q), 32):
                d = torch.cdist(q[i : i + 32], bank.unsqueeze(0)).clamp_min(0)
                if scale is not None:
                    d = d / scale
                for share, k in keys:
                    m = round(share * len(bank))
                    vals = d[..., :m].topk(k, dim=-1, largest=False).values
                    res[(share, k)].append(vals.mean(-1) if k > 1 else vals[..., 0])
            out[part] = {k: torch.cat(v).reshape(-1, *grid) for k, v in res.items()}
        print(f"  kNN {tag} {feats}: {time.time() - t0:.0f} s", flush=True)
        torch.save((out, grid), f)
        return out, grid


def score(d: torch.Tensor, hw: tuple[int, int], s: Scoring) -> np.ndarray:
    up = F.interpolate(d.unsqueeze(1), size=hw, mode="bilinear", align_corners=False)
    if s.sigma > 0:
        k = _gaussian_kernel(s.sigma)
        r = (k.numel() - 1) // 2
        up = F.pad(up, [r, r, r, r], mode="replicate")
        up = F.conv2d(F.conv2d(up, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    flat = up.flatten(1)
    if s.power > 0:
        return flat.clamp_min(0).pow(s.power).mean(1).pow(1 / s.power).numpy()
    if s.tops:
        return np.mean([score(d, hw, replace(s, top=t, tops=())) for t in s.tops], axis=0)
    if s.top > 0:
        kk = max(1, round(s.top * flat.shape[1]))
        return flat.topk(kk, dim=1).values.mean(1).numpy()
    return flat.max(1).values.numpy()


def figures(good: np.ndarray, defect: np.ndarray) -> dict[str, float]:
    y = np.r_[np.zeros(len(good)), np.ones(len(defect))]
    out = {"auroc": auroc(y, np.r_[good, defect]) or 0.0}
    for frr in FRRS:
        out[f"esc@{frr:g}"] = at_frr(good, defect, frr).escape_rate or 0.0
    return out


def run(study: Study, v: Variant, tune: list[str], confirm: list[str], test: bool) -> dict:
    hw = (study.spec.height, study.spec.width)
    parts = ["test"] if test else ["val", "test"]
    dist, _ = study.distances(v.features, parts, test)
    key = (v.scoring.bank, v.scoring.knn)
    tst = score(dist["test"][key], hw, v.scoring)
    labels = np.array(study.labels["test"])
    row: dict = {"name": v.name}
    if test:
        good = tst[labels == "good"]
        row["test"] = figures(good, tst[labels != "good"])
        row["crack"] = figures(good, tst[labels == "crack"])["esc@0.05"]
        return row
    good = score(dist["val"][key], hw, v.scoring)
    row["tune"] = figures(good, tst[np.isin(labels, tune)])
    row["confirm"] = figures(good, tst[np.isin(labels, confirm)])
    row["crack"] = figures(good, tst[labels == "crack"])["esc@0.05"]
    return row


def show(row: dict) -> str:
    cells = [f"{row['name']:<14}"]
    for part in ("tune", "confirm", "test"):
        if part in row:
            f = row[part]
            cells.append(
                f"{part} AUROC {f['auroc']:.4f} esc {100 * f['esc@0.01']:5.1f}/"
                f"{100 * f['esc@0.02']:5.1f}/{100 * f['esc@0.05']:5.1f}%"
            )
    cells.append(f"crack@5% {100 * row['crack']:5.1f}%")
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tail_cache"))
    ap.add_argument("--tune", default="crack,fray")
    ap.add_argument("--confirm", default="blowhole,break,uneven")
    ap.add_argument("--variant", action="append", help="only these built-ins")
    ap.add_argument("--extra", default="[]", help="more variants as JSON (see extra_variants)")
    ap.add_argument("--test", action="store_true", help="score on the whole test split")
    ap.add_argument("--json", type=Path, help="append rows to this JSON-lines file")
    args = ap.parse_args()
    torch.set_num_threads(2)
    chosen = variants()
    if args.variant:
        chosen = [v for v in chosen if v.name in args.variant]
    chosen += extra_variants(args.extra)
    studies: dict[tuple[int, str, int], Study] = {}
    for v in chosen:
        key = (v.image_size, v.backbone, v.pad)
        if key not in studies:
            studies[key] = Study(args.data, args.cache, v.image_size, backbone=v.backbone,
                                 pad=v.pad)
        row = run(studies[key], v, args.tune.split(","), args.confirm.split(","),
                  args.test)
        print(show(row), flush=True)
        if args.json:
            with args.json.open("a") as fh:
                fh.write(json.dumps({**row, "variant": repr(v)}) + "\n")


if __name__ == "__main__":
    main()
