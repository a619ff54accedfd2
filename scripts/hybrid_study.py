"""Hybrid head designs compared by out-of-fold CV on the training data (goods + labelled
defects) of a cache made by hybrid_study_cache.py; test-split figures printed beside, for the
record only (designs are chosen on the CV columns).

    python scripts/hybrid_study.py /tmp/hyb/study/mtd.npz
    python scripts/hybrid_study.py /tmp/hyb/study/mtd.npz inputs   # head inputs, anomaly alone
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inspector.core.metrics import auroc, threshold_for_frr
from training.hybrid.head import fit_head, predict, stratified_folds
from training.hybrid.model import combine, defect_log_odds, describe

FRRS = (0.01, 0.02, 0.05)


def esc_at(good: np.ndarray, bad: np.ndarray) -> list[float]:
    return [float(np.mean(bad < threshold_for_frr(good, f))) for f in FRRS]


class Study:
    def __init__(self, path: str) -> None:
        z = np.load(path)
        self.feats = torch.from_numpy(z["feats"])  # [N, h, w, C]
        n, h, w, c = self.feats.shape
        self.patches = self.feats.reshape(n, h * w, c)
        self.d = torch.from_numpy(z["d"]).reshape(n, h * w)
        self.score = torch.from_numpy(z["score"])
        self.label = z["label"]
        self.path = z["path"]
        self.train = z["split"] == "train"
        self.types = sorted({t for t in self.label[self.train] if t != "good"})
        self.labels = ["good", *self.types]
        self.y = np.array([self.labels.index(t) if t in self.labels else -1 for t in self.label])
        self.centre, self.width = float(z["centre"]), float(z["width"])
        self.anom = ((self.score - self.centre) / self.width).numpy()
        self.tr = np.flatnonzero(self.train)
        self.te = np.flatnonzero(~self.train)
        self.folds = stratified_folds(self.y[self.tr], min(5, 10), 0)

    def base(self, top: float = 0.02) -> np.ndarray:
        n, _p, c = self.patches.shape
        h, w = self.feats.shape[1:3]
        f = self.patches.permute(0, 2, 1).reshape(n, c, h, w)
        return describe(f, self.d.reshape(n, h, w), self.score, top).numpy()

    # --- defect-prototype bank -------------------------------------------------------------
    def bank(self, rows: np.ndarray, k: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """Top-k most anomalous patches of each defect image in `rows` (indices into all)."""
        idx = self.d[rows].topk(k, dim=1).indices  # [R, k]
        entries = torch.stack([self.patches[r][i] for r, i in zip(rows, idx, strict=True)])
        src = np.repeat(rows, k)
        typ = np.repeat(self.y[rows], k)
        return entries.reshape(-1, entries.shape[-1]), src, typ

    def evidence(self, rows: np.ndarray, bank: tuple[torch.Tensor, np.ndarray, np.ndarray],
                 mode: str, topk: int, per_type: bool) -> np.ndarray:
        entries, src, typ = bank
        out = []
        src_t = torch.from_numpy(src)
        for part in np.array_split(rows, max(1, len(rows) // 64)):
            q = self.patches[part]  # [B, P, C]
            dd = torch.cdist(q, entries.unsqueeze(0).expand(len(part), -1, -1))  # [B, P, M]
            own = src_t.view(1, 1, -1) == torch.from_numpy(part).view(-1, 1, 1)
            dd = dd.masked_fill(own, float("inf"))
            groups = [np.arange(len(src))] if not per_type else [
                np.flatnonzero(typ == t) for t in range(1, len(self.labels))]
            feats = []
            dg = self.d[part]
            for g in groups:
                ddef = dd[:, :, torch.from_numpy(g)].min(dim=2).values.clamp_min(1e-6)
                e = dg - ddef if mode == "diff" else (dg.clamp_min(1e-06) / ddef).log()
                top = e.topk(topk, dim=1).values
                feats += [top[:, 0], top.mean(dim=1), ddef.min(dim=1).values.log()]
            out.append(torch.stack(feats, 1))
        return torch.cat(out).numpy()

    # --- patch-level head ---------------------------------------------------------------
    def patch_x(self, rows: np.ndarray) -> torch.Tensor:
        return torch.cat([self.patches[rows], self.d[rows].clamp_min(1e-6).log().unsqueeze(2)], 2)

    def patch_head(self, rows: np.ndarray, k_pos: int, k_neg: int, l2: float):
        """Linear patch classifier: top-k_pos patches (by distance to the good bank) of the
        defect images in `rows` against the top-k_neg patches of the goods in `rows`."""
        y = self.y[rows]
        xs, ys = [], []
        for r, lab in zip(rows, y, strict=True):
            k = k_pos if lab > 0 else k_neg
            idx = self.d[r].topk(k).indices
            xs.append(self.patch_x(np.array([r]))[0, idx])
            ys += [int(lab > 0)] * k
        x = torch.cat(xs).numpy()
        return fit_head(x, np.array(ys), 2, l2, 200)

    def patch_evidence(self, head, rows: np.ndarray, topk: int = 3) -> np.ndarray:
        with torch.no_grad():
            lg = head(self.patch_x(rows))  # [R, P, 2]
            e = lg[..., 1] - lg[..., 0]
            top = e.topk(topk, dim=1).values
        return torch.stack([top[:, 0], top.mean(1)], 1).numpy()

    def oof_patch_evidence(self, k_pos: int, k_neg: int, l2: float) -> np.ndarray:
        out = np.zeros((len(self.label), 2), np.float32)
        for f in range(self.folds.max() + 1):
            held = self.folds == f
            head = self.patch_head(self.tr[~held], k_pos, k_neg, l2)
            out[self.tr[held]] = self.patch_evidence(head, self.tr[held])
        head = self.patch_head(self.tr, k_pos, k_neg, l2)
        out[self.te] = self.patch_evidence(head, self.te)
        return out

    # --- evaluation -------------------------------------------------------------------------
    def run(self, name: str, l2: float, ev: dict | None = None, base_top: float = 0.02,
            use_base: bool = True, extra: np.ndarray | None = None, odds: bool = False) -> dict:
        """One head design: out-of-fold CV on the training data, test figures beside. The head
        and anomaly parts are combined by their maximum (the study's first rounds) or, with
        `odds`, by adding their odds as the shipped model does (`combine`)."""
        x0 = self.base(base_top) if use_base else np.zeros((len(self.label), 0), np.float32)
        if extra is not None:
            x0 = np.concatenate([x0, extra], 1)
        tr, te, y = self.tr, self.te, self.y
        ytr = y[tr]
        defects_tr = tr[ytr > 0]
        oof = np.zeros((len(tr), len(self.labels)), np.float32)
        oof_ev = np.zeros(len(tr))
        for f in range(self.folds.max() + 1):
            held = self.folds == f
            x = x0
            if ev:
                b = self.bank(np.intersect1d(defects_tr, tr[~held]), ev["k"])
                e = self.evidence(np.arange(len(self.label)), b, ev["mode"], ev["topk"],
                                  ev["per_type"])
                x = np.concatenate([x0, e], 1)
                oof_ev[held] = e[tr[held], 0]
            head = fit_head(x[tr[~held]], ytr[~held], len(self.labels), l2, 200)
            oof[held] = predict(head, x[tr[held]])
        x = x0
        if ev:
            b = self.bank(defects_tr, ev["k"])
            e = self.evidence(np.arange(len(self.label)), b, ev["mode"], ev["topk"], ev["per_type"])
            x = np.concatenate([x0, e], 1)
        head = fit_head(x[tr], ytr, len(self.labels), l2, 200)
        test_logits = predict(head, x[te])
        join = (lambda h, a: combine(torch.from_numpy(h), torch.from_numpy(a)).numpy()) if odds \
            else np.maximum
        cv = join(defect_log_odds(torch.from_numpy(oof)).numpy(), self.anom[tr])
        ts = join(defect_log_odds(torch.from_numpy(test_logits)).numpy(), self.anom[te])
        gt, bt = ytr == 0, self.label[te] != "good"
        r = {"name": name, "cv_auc": auroc(~gt, cv), "cv_esc": esc_at(cv[gt], cv[~gt]),
             "te_auc": auroc(bt, ts), "te_esc": esc_at(ts[~bt], ts[bt]), "test_scores": ts,
             "cv_scores": cv, "cv_head": defect_log_odds(torch.from_numpy(oof)).numpy(),
             "test_head": defect_log_odds(torch.from_numpy(test_logits)).numpy()}
        r["te_type"] = {t: esc_at(ts[~bt], ts[self.label[te] == t])[1] for t in self.types}
        print(f"{name:42s} CV auc {r['cv_auc']:.4f} esc@1/2/5 "
              + "/".join(f"{v*100:.1f}" for v in r["cv_esc"])
              + f" | test auc {r['te_auc']:.4f} esc "
              + "/".join(f"{v*100:.1f}" for v in r["te_esc"])
              + " | " + " ".join(f"{t[:5]}={v*100:.0f}" for t, v in r["te_type"].items()),
              flush=True)
        return r


def main() -> None:
    s = Study(sys.argv[1])
    what = sys.argv[2] if len(sys.argv) > 2 else "all"
    if what == "quick":
        for l2 in (1.0, 0.1, 10.0):
            s.run(f"base l2={l2}", l2)
        for k_pos, k_neg in ((5, 10), (3, 20)):
            e = s.oof_patch_evidence(k_pos, k_neg, 1.0)
            g, b = e[s.tr][s.y[s.tr] == 0, 0], e[s.tr][s.y[s.tr] > 0, 0]
            print(f"patch k+={k_pos} k-={k_neg}: evidence alone CV auc "
                  f"{auroc(np.r_[g*0, b*0+1], np.r_[g, b]):.4f}", flush=True)
            s.run(f"base+patch k+={k_pos} k-={k_neg} pl2=1", 1.0, extra=e)
        for k, mode, pt in ((3, "ratio", True), (10, "diff", False)):
            ev = {"k": k, "mode": mode, "topk": 3, "per_type": pt}
            s.run(f"ev k={k} {mode} pt={int(pt)} l2=1", 1.0, ev)
    if what == "inputs":  # head inputs against the part-identity shortcut (fourth round)
        c = s.patches.shape[2]
        base = s.base()
        ev = {"k": 3, "mode": "ratio", "topk": 3, "per_type": True}
        for name, x in (("all (default)", base), ("without the mean", base[:, c:]),
                        ("top patches + anomaly figures", base[:, 2 * c:]),
                        ("anomaly figures only", base[:, 3 * c:])):
            s.run(name, 1.0, ev, use_base=False, extra=x, odds=True)
        gt, bt = s.y[s.tr] == 0, s.label[s.te] != "good"
        cv, ts = s.anom[s.tr], s.anom[s.te]
        print(f"{'anomaly part alone':42s} CV auc {auroc(~gt, cv):.4f} esc@1/2/5 "
              + "/".join(f"{v*100:.1f}" for v in esc_at(cv[gt], cv[~gt]))
              + f" | test auc {auroc(bt, ts):.4f} esc "
              + "/".join(f"{v*100:.1f}" for v in esc_at(ts[~bt], ts[bt])))
    if what in ("all", "l2"):
        for l2 in (0.1, 1.0, 10.0, 100.0):
            s.run(f"base l2={l2}", l2)
    if what in ("all", "patch"):
        for k_pos, k_neg in ((5, 10), (10, 10), (3, 20)):
            for pl2 in (1.0, 10.0):
                e = s.oof_patch_evidence(k_pos, k_neg, pl2)
                g, b = e[s.tr][s.y[s.tr] == 0, 0], e[s.tr][s.y[s.tr] > 0, 0]
                print(f"patch k+={k_pos} k-={k_neg} l2={pl2}: evidence alone CV auc "
                      f"{auroc(np.r_[g*0, b*0+1], np.r_[g, b]):.4f}")
                s.run(f"base+patch k+={k_pos} k-={k_neg} pl2={pl2}", 1.0, extra=e)
                s.run(f"stats+patch k+={k_pos} k-={k_neg} pl2={pl2}", 1.0, extra=np.c_[
                    s.base()[:, -3:], e], use_base=False)
    if what in ("all", "ev"):
        for k in (3, 10):
            for mode in ("diff", "ratio"):
                for per_type in (False, True):
                    ev = {"k": k, "mode": mode, "topk": 3, "per_type": per_type}
                    s.run(f"ev k={k} {mode} pt={int(per_type)} l2=1", 1.0, ev)


if __name__ == "__main__":
    main()
