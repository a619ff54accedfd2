"""Evaluation plots for a package's `report/`: ROC curve, score histograms, cost curve, worst
cases.

Needs matplotlib (installed with the [train] extra); the edge server never imports this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from inspector.core.metrics import roc_curve
from inspector.core.operating import tradeoff_curve
from inspector.core.pipeline import Detector
from inspector.evaluation import EvalResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(detector: Detector, result: EvalResult, out: Path, worst: int = 8) -> list[Path]:
    """Write roc.png, score_hist.png, cost_curve.png (with defects and goods),
    worst_cases.png and metrics.json; return the paths."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    y, s = result.labels, result.scores
    thr = detector.threshold
    m = result.metrics
    written = []

    fig, ax = plt.subplots(figsize=(5, 5))
    if y.any() and (~y).any():
        fpr, tpr = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=2, label=f"image AUROC {m['image_auroc']:.3f}")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set(
        xlabel="false-positive rate (good parts rejected)",
        ylabel="true-positive rate",
        title=f"ROC: {detector.card.ref}",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=110)
    plt.close(fig)
    written.append(out / "roc.png")

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(float(s.min()), float(s.max()), 50) if s.size else 10
    ax.hist(s[~y], bins=bins, alpha=0.6, label=f"good ({(~y).sum()})", color="tab:green")
    ax.hist(s[y], bins=bins, alpha=0.6, label=f"defect ({y.sum()})", color="tab:red")
    ax.axvline(thr, color="k", ls="--", label=f"threshold {thr:.3f}")
    ax.set(xlabel="score", ylabel="images", title="Score distribution")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_hist.png", dpi=110)
    plt.close(fig)
    written.append(out / "score_hist.png")

    if y.any() and (~y).any():
        written.append(_cost_curve(plt, result, thr, out / "cost_curve.png"))

    cases = _worst_cases(result, thr, worst)
    if cases:
        cols = 4
        rows = (len(cases) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (item, why) in zip(axes.ravel(), cases, strict=False):
            frame = detector.prepare_bytes(item.sample.path.read_bytes())
            res = detector.infer([frame])[0]
            ax.imshow(detector.overlay(frame, res))
            ax.set_title(
                f"{why}: {item.sample.label}\n{item.sample.path.name} {item.score:.3f}", fontsize=8
            )
        fig.tight_layout()
        fig.savefig(out / "worst_cases.png", dpi=100)
        plt.close(fig)
        written.append(out / "worst_cases.png")

    (out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    written.append(out / "metrics.json")
    return written


def _cost_curve(plt: Any, result: EvalResult, thr: float, path: Path) -> Path:
    """Escapes against false rejects as the threshold moves (both in % of their class), with
    the card's threshold and the FRR-target points of `operating_points` marked."""
    y, s = result.labels, result.scores
    _, frr, esc = tradeoff_curve(s[~y], s[y])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.step(100 * frr, 100 * esc, where="post", lw=2, color="tab:blue")
    card_frr, card_esc = float(np.mean(s[~y] >= thr)), float(np.mean(s[y] < thr))
    ax.plot(100 * card_frr, 100 * card_esc, "k*", ms=14,
            label=f"card threshold {thr:.4g}: FRR {card_frr:.1%}, escape {card_esc:.1%}")
    points = result.metrics.get("operating_points", {}).get("escape_at_frr", {})
    for target, p in points.items():
        if p["threshold"] is not None:
            ax.plot(100 * p["false_reject_rate"], 100 * p["escape_rate"], "o", ms=8,
                    label=f"FRR <= {float(target):.0%}: escape {p['escape_rate']:.1%}")
    ax.set_xlim(0, max(10.0, 100 * card_frr * 1.2))
    ax.set(xlabel=f"false rejects (% of {(~y).sum()} good parts)",
           ylabel=f"escapes (% of {y.sum()} defects)",
           title="Cost curve: escapes vs false rejects as the threshold moves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _worst_cases(result: EvalResult, thr: float, n: int) -> list[tuple[Any, str]]:
    """Highest-scoring goods (false rejects first) and lowest-scoring defects (escapes)."""
    goods = sorted((x for x in result.scored if not x.sample.is_defect), key=lambda x: -x.score)
    defects = sorted((x for x in result.scored if x.sample.is_defect), key=lambda x: x.score)
    half = max(1, n // 2)
    cases = [(x, "false reject" if x.score >= thr else "worst good") for x in goods[:half]]
    cases += [(x, "escape" if x.score < thr else "weakest defect") for x in defects[:half]]
    return cases
