"""Cache for the hybrid design study: on the eval_hybrid.py view of a data set, the patch
features, PatchCore distances (goods leave-one-image-out) and anomaly scores of the training
goods, the labelled defects and the test images, so that head designs can be compared by
out-of-fold CV on the training data without re-running the backbone.

    python scripts/hybrid_study_cache.py mtd /tmp/hyb/study
    python scripts/hybrid_study_cache.py welding /tmp/hyb/welding1 1   # labelled draw (seed) 1
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.eval_hybrid import SETS, make_view
from training.backbones import build_backbone
from training.config import TrainConfig
from training.datasets import load_splits
from training.fitting import all_samples
from training.hybrid.fit import anomaly_scale
from training.images import load_images
from training.patchcore.fit import bank_from_patches, extract_patches
from training.patchcore.model import PatchFeatures
from training.train import _input_spec, resolve_kind


@torch.no_grad()
def main() -> None:
    name, work = sys.argv[1], Path(sys.argv[2])
    view = work / name / "data"
    if not view.exists():
        make_view(SETS[name], view, 10, int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    config = resolve_kind(TrainConfig.from_knobs({"seed": 0, "kind": "hybrid"}), view)
    torch.manual_seed(0)
    splits = load_splits(view, **config.split_kwargs())
    spec = _input_spec(splits, config)
    train = load_images(all_samples(splits), spec, "train")
    test = load_images(list(splits.test), spec, "test")
    backbone = build_backbone(config.backbone)
    features = PatchFeatures(backbone, pool=config.patchcore.pool).eval()
    good = ~train.is_defect
    maps = extract_patches(features, train.pixels[good], 16, "goods")
    fitted = bank_from_patches(features, maps, train.pixels.shape[1:3], config.patchcore,
                               config.coreset, config.seed)
    pc = fitted.model
    d_good, s_good = [], []
    for i in range(0, len(maps), 8):
        ids = torch.arange(i, min(i + 8, len(maps)))
        exclude = fitted.bank_source.view(1, -1) == ids.view(-1, 1)
        d = pc.distances(maps[ids].permute(0, 3, 1, 2), exclude)
        d_good.append(d)
        s_good.append(pc.map_and_score(d)[0])

    def plain(images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fs, ds, ss = [], [], []
        for i in range(0, len(images), 8):
            f = pc.features(torch.from_numpy(images[i:i + 8]))
            d = pc.distances(f)
            fs.append(f.permute(0, 2, 3, 1))
            ds.append(d)
            ss.append(pc.map_and_score(d)[0])
        return torch.cat(fs), torch.cat(ds), torch.cat(ss)

    f_def, d_def, s_def = plain(train.pixels[~good])
    f_test, d_test, s_test = plain(test.pixels)
    centre, width = anomaly_scale(torch.cat(s_good).numpy(), config.target_frr)
    np.savez(
        work / f"{name}.npz",
        feats=torch.cat([maps, f_def, f_test]).numpy().astype(np.float32),
        d=torch.cat([torch.cat(d_good), d_def, d_test]).numpy(),
        score=torch.cat([torch.cat(s_good), s_def, s_test]).numpy(),
        label=np.array([s.label for s in train.samples if not s.is_defect]
                       + [s.label for s in train.samples if s.is_defect]
                       + [s.label for s in test.samples]),
        path=np.array([str(s.path) for s in train.samples if not s.is_defect]
                      + [str(s.path) for s in train.samples if s.is_defect]
                      + [str(s.path) for s in test.samples]),
        split=np.array(["train"] * len(train) + ["test"] * len(test)),
        centre=centre, width=width, input_hw=np.array(train.pixels.shape[1:3]),
    )
    print("saved", work / f"{name}.npz", "bank", pc.bank_size, "grid", tuple(maps.shape))


if __name__ == "__main__":
    main()
