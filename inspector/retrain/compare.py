"""The active model against the newly trained one, on the same held-out reviewed frames, and
the rule that decides whether the new one goes to the station as its shadow.

Each model is judged at its own card threshold (the one it would run at on the line), with
the escape rate at false-reject targets of 1/2/5 % beside it where there are enough goods
(at least 1/target, so the target allows one rejected good), and the image AUROC.

The rule: the new model is better when, on the held-out frames at each model's own card
threshold, it passes no larger share of defects (escape rate) AND rejects no larger share of
good parts (false-reject rate), and at least one of the two shares drops by more than
`min_gain` (0 by default: any improvement, e.g. one escape fewer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from inspector.core.operating import judge
from inspector.evaluation import EvalResult, scores_by_type


@dataclass(frozen=True)
class Standing:
    """One model on the held-out frames."""

    model: str
    threshold: float
    n_good: int
    n_defect: int
    escapes: int
    false_rejects: int
    escape_rate: float
    false_reject_rate: float
    image_auroc: float | None
    #: FRR target ("0.01") -> escape rate at that target; None with too few goods.
    escape_at_frr: dict[str, float | None]
    #: Defect type -> escape rate at the card threshold.
    escape_by_type: dict[str, float | None]


@dataclass(frozen=True)
class Decision:
    better: bool
    reason: str


def standing(model: str, result: EvalResult, threshold: float) -> Standing:
    """A model's figures from its `inspector.evaluation.evaluate` result."""
    y, s = result.labels, result.scores
    good, defect = s[~y], s[y]
    point = judge(good, defect, threshold)
    targets = result.metrics["operating_points"]["escape_at_frr"]
    return Standing(
        model=model, threshold=threshold, n_good=int(good.size), n_defect=int(defect.size),
        escapes=point.escapes or 0, false_rejects=point.false_rejects or 0,
        escape_rate=point.escape_rate or 0.0, false_reject_rate=point.false_reject_rate or 0.0,
        image_auroc=result.metrics["image_auroc"],
        escape_at_frr={k: p["escape_rate"] if good.size * float(k) >= 1 else None
                       for k, p in targets.items()},
        escape_by_type={t: judge(good, d, threshold).escape_rate
                        for t, d in scores_by_type(result).items()},
    )


def decide(active: Standing, new: Standing, min_gain: float = 0.0) -> Decision:
    """The rule of the module docstring, with the reason in words."""
    esc = f"escape {active.escape_rate:.1%} -> {new.escape_rate:.1%}"
    frr = f"false rejects {active.false_reject_rate:.1%} -> {new.false_reject_rate:.1%}"
    gain_esc = active.escape_rate - new.escape_rate
    gain_frr = active.false_reject_rate - new.false_reject_rate
    if gain_esc < 0:
        return Decision(False, f"it lets more defects through ({esc})")
    if gain_frr < 0:
        return Decision(False, f"it rejects more good parts ({frr})")
    if max(gain_esc, gain_frr) <= min_gain:
        return Decision(False, f"no gain above --min-gain {min_gain:.1%} ({esc}, {frr})")
    return Decision(True, f"{esc}, {frr}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def _counted(n: int, of: int, rate: float) -> str:
    return f"{n}/{of} {rate:.1%}"


def table(active: Standing, new: Standing) -> list[str]:
    """The comparison as lines of text: one column per model."""
    rows: list[tuple[str, str, str]] = [
        ("threshold (card)", f"{active.threshold:.5g}", f"{new.threshold:.5g}"),
        ("escapes", _counted(active.escapes, active.n_defect, active.escape_rate),
         _counted(new.escapes, new.n_defect, new.escape_rate)),
        ("false rejects", _counted(active.false_rejects, active.n_good, active.false_reject_rate),
         _counted(new.false_rejects, new.n_good, new.false_reject_rate)),
        ("image AUROC", _num(active.image_auroc), _num(new.image_auroc)),
    ]
    rows += [(f"escape at FRR {float(k):.0%}", _pct(v), _pct(new.escape_at_frr.get(k)))
             for k, v in active.escape_at_frr.items()]
    rows += [(f"  escape: {t[:18]}", _pct(v), _pct(new.escape_by_type.get(t)))
             for t, v in active.escape_by_type.items()]
    w = max(14, len(active.model) + 8, len(new.model) + 5)
    head = f"{'':<24} {'active ' + active.model:>{w}} {'new ' + new.model:>{w}}"
    lines = [f"on {active.n_good + active.n_defect} held-out reviewed frames ({active.n_good} "
             f"good, {active.n_defect} defect), each model at its own card threshold", head]
    lines += [f"{name:<24} {a:>{w}} {b:>{w}}" for name, a, b in rows]
    if any(v is None for v in active.escape_at_frr.values()):
        lines.append("(escape at FRR x% shows - with fewer than 1/x held-out goods)")
    return lines


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def as_json(active: Standing, new: Standing, decision: Decision) -> dict[str, Any]:
    return {"active": asdict(active), "new": asdict(new), "decision": asdict(decision)}
