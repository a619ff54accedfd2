"""The hybrid model as one graph: PatchCore flags what it has never seen, a light supervised
head learns the defect types that were labelled, and one score says how defective a part is.

uint8 image [N, H, W, 3] -> PatchCore's patch features -> nearest-neighbour distances ->
anomaly map and anomaly score `a` (exactly PatchCore's) ->
descriptor: [mean and max of the patch features over the image, mean of the features of the
most anomalous patches (what the suspicious region looks like), log a, log of the largest and
of the mean patch distance, the defect bank's per-type evidence] -> standardised linear head
-> softmax = `probabilities` [N, C] (good first, then each labelled type).

score = logaddexp(log(P(defect) / P(good)), (a - centre) / width): log-odds of a defect, the
head's odds and the anomaly score's (put on the same scale) added, so either part can raise
it (0 = even odds; a probability would round to 1.0 in float32 for clear defects and lose
their order). `centre` is the anomaly score at the target false-reject rate on leave-one-out
goods (odds 1:1 there: as defective as the good-only model's threshold), `width` puts the
median good at odds 1:99 (-4.6). A labelled type scores high through the head, an unseen one
through the anomaly part.
"""

from __future__ import annotations

import torch
from torch import nn

from training.patchcore.model import PatchCore, search, search_buffers, squared_nearest

#: Patches whose evidence is averaged into the second defect-bank feature of each type.
EVIDENCE_TOP = 3


class DefectBank(nn.Module):
    """Prototypes of the labelled defects: the patches of each labelled image farthest from
    the good bank, grouped by type. A patch's evidence for type t is log(d_good / d_t), its
    distance to the good bank over its distance to the nearest prototype of t: positive
    where it looks more like a known defect than like any good surface. Per type and image:
    the largest evidence, the mean of the EVIDENCE_TOP largest, and log of the smallest d_t.
    """

    def __init__(self, entries: torch.Tensor, counts: list[int],
                 projection: torch.Tensor | None = None) -> None:
        """`entries` [M, C] patch features; `projection` [C, d] is PatchCore's (distances to
        the prototypes are taken in the same principal axes as those to the good bank)."""
        super().__init__()
        self.counts = [int(c) for c in counts]  # entries per type, in label order
        self.projection: torch.Tensor | None
        self.register_buffer(
            "projection", None if projection is None else projection.to(torch.float32))
        bank = entries.to(torch.float32)
        if self.projection is not None:
            bank = bank @ self.projection
        centre, matrix = search_buffers(bank)
        self.centre: torch.Tensor
        self.bank_matrix: torch.Tensor
        self.register_buffer("centre", centre)
        self.register_buffer("bank_matrix", matrix)

    @property
    def size(self) -> int:
        """Prototypes in the bank."""
        return int(self.bank_matrix.shape[1])

    @property
    def n_features(self) -> int:
        return 3 * len(self.counts)

    def forward(
        self, feats: torch.Tensor, d: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[N, 3 * types] from patch features [N, C, h, w] and their good-bank distances
        [N, h, w]; `exclude` [N, M] (training only) hides an image's own prototypes."""
        n, c, h, w = feats.shape
        q, partial = search(feats.reshape(n, c, h * w).transpose(1, 2), self.projection,
                            self.centre, self.bank_matrix)  # partial: [N, P, M]
        if exclude is not None:
            partial = partial.masked_fill(exclude.unsqueeze(1), float("inf"))
        log_good = d.reshape(n, h * w).clamp_min(1e-6).log()
        out, start = [], 0
        for count in self.counts:
            nearest = partial[:, :, start:start + count].min(dim=2).values
            start += count
            # Bounded: a type whose only prototypes are the image's own (hidden) stays finite.
            dist = squared_nearest(q, nearest, self.bank_matrix).clamp(1e-12, 1e12).sqrt()
            evidence = log_good - dist.log()
            top = evidence.topk(min(EVIDENCE_TOP, h * w), dim=1).values
            out += [top[:, 0], top.mean(dim=1), dist.min(dim=1).values.log()]
        return torch.stack(out, dim=1)


def describe(
    feats: torch.Tensor, d: torch.Tensor, score: torch.Tensor, top_fraction: float
) -> torch.Tensor:
    """The head's input per image [N, 3C + 3] from patch features [N, C, h, w], their
    nearest-neighbour distances [N, h, w] and the anomaly score [N] (the defect bank's
    features, when there is one, are appended by the caller)."""
    n, c, h, w = feats.shape
    flat = feats.reshape(n, c, h * w)
    k = max(1, round(top_fraction * h * w))
    worst = d.reshape(n, h * w).topk(k, dim=1).indices
    top = flat.gather(2, worst.unsqueeze(1).expand(n, c, k)).mean(dim=2)
    dist = d.reshape(n, h * w)
    stats = torch.stack([score, dist.amax(dim=1), dist.mean(dim=1)], dim=1)
    return torch.cat([flat.mean(dim=2), flat.amax(dim=2), top, stats.clamp_min(1e-6).log()], 1)


class HybridModel(nn.Module):
    """Image [N, H, W, 3] uint8 -> (score [N], anomaly_map [N, H, W], probabilities [N, C])."""

    def __init__(
        self,
        patchcore: PatchCore,
        head: nn.Linear,
        centre: float,
        width: float,
        top_fraction: float,
        defect_bank: DefectBank | None = None,
    ) -> None:
        super().__init__()
        self.patchcore = patchcore
        self.head = head
        self.defect_bank = defect_bank
        self.top_fraction = top_fraction
        self.centre: torch.Tensor
        self.width: torch.Tensor
        self.register_buffer("centre", torch.tensor(float(centre)))
        self.register_buffer("width", torch.tensor(float(width)))

    def anomaly_log_odds(self, score: torch.Tensor) -> torch.Tensor:
        """The anomaly score on the log-odds scale (0 at `centre`)."""
        return (score - self.centre) / self.width

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.patchcore.features(image)
        d = self.patchcore.distances(feats)
        anomaly, amap = self.patchcore.map_and_score(d)
        x = describe(feats, d, anomaly, self.top_fraction)
        if self.defect_bank is not None:
            x = torch.cat([x, self.defect_bank(feats, d)], dim=1)
        logits = self.head(x)
        score = combine(defect_log_odds(logits), self.anomaly_log_odds(anomaly))
        return score, amap, logits.softmax(dim=1)


def combine(head: torch.Tensor, anomaly: torch.Tensor) -> torch.Tensor:
    """log(exp(head) + exp(anomaly)): the odds of the two parts added, so either may raise
    them (chosen over their maximum on out-of-fold CV: training/README.md, Hybrid). Written
    as max + log(1 + exp(-|difference|)) for the exported graph."""
    return torch.maximum(head, anomaly) + torch.log1p(torch.exp(-(head - anomaly).abs()))


def defect_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log(P(any defect) / P(good)) from logits [N, C] with "good" first, without rounding."""
    return torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]
