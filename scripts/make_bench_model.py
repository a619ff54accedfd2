"""Build a PatchCore-style benchmark package (EfficientNet-Lite0 features + nearest-neighbour
distance to a memory bank of normal patches), about the cost of the models `inspector train`
makes, for `inspector bench`. Needs the [train] extra (torch); the server never imports this.

    python scripts/make_bench_model.py --data ../shared/data/mtd --out /tmp/bench-models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inspector.core.card import HeatmapSpec, InputSpec, ModelCard, ThresholdSpec, write_card
from inspector.core.images import decode
from inspector.core.package import sha256_file
from inspector.core.preprocess import prepare
from training.backbones.effnet_lite import efficientnet_lite

SIZE = 224
SPEC = InputSpec(width=SIZE, height=SIZE, resize="stretch", color="gray")


class PatchDistance(torch.nn.Module):
    def __init__(self, bank: torch.Tensor | None = None) -> None:
        super().__init__()
        self.net = efficientnet_lite(0)
        self.register_buffer("bank", bank if bank is not None else torch.zeros(1, 120))

    def features(self, image: torch.Tensor) -> torch.Tensor:
        x = (image.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
        outs = self.net.forward_blocks(x, 7)
        a, b = outs[4], outs[7]
        a = F.avg_pool2d(a, 3, 1, 1, count_include_pad=False)
        b = F.avg_pool2d(b, 3, 1, 1, count_include_pad=False)
        b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([a, b], 1)  # [N, 120, 28, 28]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(image)
        n, c, h, w = f.shape
        q = f.permute(0, 2, 3, 1).reshape(n, h * w, c)
        bank = self.bank
        d = (q * q).sum(-1, keepdim=True) - 2 * q @ bank.T + (bank * bank).sum(-1)[None, None]
        amap = d.min(-1).values.clamp_min(0).sqrt().reshape(n, h, w)
        return amap.flatten(1).max(1).values, amap


def load(paths: list[Path]) -> torch.Tensor:
    return torch.from_numpy(np.stack([prepare(decode(p.read_bytes()).rgb, SPEC)[0]
                                      for p in paths]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bank", type=int, default=6000)
    args = ap.parse_args()
    train = sorted((args.data / "train" / "good").glob("*.jpg"))[:60]
    held = sorted((args.data / "test" / "good").glob("*.jpg"))[:30]
    model = PatchDistance().eval()
    with torch.no_grad():
        feats = model.features(load(train)).permute(0, 2, 3, 1).reshape(-1, 120)
        gen = torch.Generator().manual_seed(0)
        bank = feats[torch.randperm(len(feats), generator=gen)[: args.bank]].contiguous()
        model = PatchDistance(bank).eval()
        scores, _ = model(load(held))
    threshold = float(scores.max())
    pkg = args.out / "bench-patchcore" / "1"
    pkg.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, SIZE, SIZE, 3, dtype=torch.uint8)
    torch.onnx.export(model, (dummy,), str(pkg / "model.onnx"), input_names=["image"],
                      output_names=["score", "anomaly_map"], opset_version=17, dynamo=False,
                      dynamic_axes={"image": {0: "N"}, "score": {0: "N"},
                                    "anomaly_map": {0: "N"}})
    card = ModelCard(
        name="bench-patchcore", version="1", input=SPEC,
        threshold=ThresholdSpec(value=threshold, method="manual",
                                data=f"max score on {len(held)} test/good images"),
        heatmap=HeatmapSpec(vmin=0.0, vmax=threshold * 1.5),
        description="benchmark model: EfficientNet-Lite0 blocks 4+7, random 6000-patch bank",
        onnx_sha256=sha256_file(pkg / "model.onnx"),
    )
    write_card(card, pkg / "card.json")
    print(json.dumps({"package": str(pkg), "threshold": threshold}))


if __name__ == "__main__":
    main()
