"""Supervised defect classifier: a fine-tuned backbone with a linear head, as a plain module.

uint8 image [N, H, W, 3] -> (score [N] = P(defect) = 1 - P(good), anomaly_map [N, H, W],
probabilities [N, C]). Class 0 is "good". The map is a class activation map: the head's
weights of the defect classes (weighted by their probabilities) minus those of "good", applied
at every position of the last feature map, rectified, scaled to [0, 1] per image and multiplied
by the score, so it is bright only where the model sees a defect and only when it does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.backbones import Backbone
from training.backbones.base import Normalise


class DefectClassifier(nn.Module):
    """Backbone + global average pooling + dropout + linear head over `num_classes`."""

    def __init__(
        self, backbone: Backbone, num_classes: int, input_hw: tuple[int, int], dropout: float = 0.2
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError("a classifier needs good and at least one defect class")
        self.normalise = Normalise(backbone.weights.mean, backbone.weights.std)
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.last_channels, num_classes)
        self.input_hw = input_hw

    def logits_and_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.backbone.forward_last(self.normalise(image))
        pooled = fmap.mean(dim=(2, 3))
        return self.head(self.dropout(pooled)), fmap

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, fmap = self.logits_and_features(image)
        probs = logits.softmax(dim=1)
        score = 1.0 - probs[:, 0]
        # Probability-weighted defect direction minus the "good" direction, per image.
        defect_w = probs[:, 1:] / probs[:, 1:].sum(dim=1, keepdim=True).clamp_min(1e-12)
        direction = defect_w @ self.head.weight[1:] - self.head.weight[0]  # [N, C_feat]
        cam = torch.einsum("nc,nchw->nhw", direction, fmap).relu()
        cam = cam / cam.flatten(1).max(dim=1).values.clamp_min(1e-6).view(-1, 1, 1)
        cam = F.interpolate(
            cam.unsqueeze(1), size=self.input_hw, mode="bilinear", align_corners=False
        )
        amap = cam.squeeze(1) * score.view(-1, 1, 1)
        return score, amap, probs
