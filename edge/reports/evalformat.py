"""Text of ``mpox-edge eval`` (and bench's accuracy section): one block per collection."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _pct(v: float) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:5.1f}%"


def format_report(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r.get('architecture', '')} ({r.get('model', '')}) on {r.get('backend', '')}",
        f"  images {r['n']}  skipped {r['n_skipped']}  accuracy {_pct(r['accuracy'])}  "
        f"macro F1 {_pct(r['macro_f1'])}  macro AUC {r['macro_auc']:.3f}  "
        f"micro AUC {r['micro_auc']:.3f}",
        f"  {'class':<12}{'n':>5}{'prec':>8}{'recall':>8}{'spec':>8}{'F1':>8}{'AUC':>7}",
    ]
    for c, m in r["per_class"].items():
        lines.append(
            f"  {c:<12}{m['support']:>5}{_pct(m['precision']):>8}{_pct(m['recall']):>8}"
            f"{_pct(m['specificity']):>8}{_pct(m['f1']):>8}{m['auc']:>7.3f}"
        )
    names = list(r["per_class"])
    w = max(5, *(len(c) + 1 for c in names))
    lines.append("  confusion matrix: rows are the true class, columns the predicted class")
    lines.append(f"  {'':<12}" + "".join(f"{c:>{w}}" for c in names))
    for c, row in zip(names, r["confusion_matrix"], strict=False):
        lines.append(f"  {c:<12}" + "".join(f"{v:>{w}d}" for v in row))
    s = r.get("screening")
    if s:
        lo, hi = s["sensitivity_ci95"]
        slo, shi = s["specificity_ci95"]
        how = "argmax" if s.get("threshold") is None else f"p >= {s['threshold']:.3f}"
        lines.append(
            f"  screening {s['positive_class']} vs rest ({how}): sensitivity "
            f"{_pct(s['sensitivity'])} (95% CI {_pct(lo)}-{_pct(hi)}), specificity "
            f"{_pct(s['specificity'])} (95% CI {_pct(slo)}-{_pct(shi)})"
        )
    if r.get("unmatched_folders"):
        lines.append(f"  folders matching no class (ignored): {', '.join(r['unmatched_folders'])}")
    for sk in r["skipped"][:10]:
        lines.append(f"  skipped {sk['path']}: {sk['reason']}")
    if r["n_skipped"] > 10:
        lines.append(f"  ... and {r['n_skipped'] - 10} more skipped")
    return lines


def format_compare(results: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"{'model':<28}{'acc':>8}{'FPS':>8}{'recall':>8}{'spec':>8}{'practicality':>14}"]
    for r in results:
        s = r.get("screening", {})
        lines.append(
            f"{Path(r['model']).name[:27]:<28}{_pct(r['accuracy']):>8}"
            f"{r['average_fps']:>8.1f}{_pct(s.get('sensitivity', math.nan)):>8}"
            f"{_pct(s.get('specificity', math.nan)):>8}{r['practicality_score']:>14.3f}"
        )
    return lines


def _rate(r: dict[str, Any] | None) -> str:
    if not r or not r.get("n"):
        return "   -  "
    lo, hi = r["ci95"]
    return f"{_pct(r['rate'])} ({r['k']}/{r['n']}, 95% CI {_pct(lo).strip()}-{_pct(hi).strip()})"


def format_collection(c: dict[str, Any]) -> list[str]:
    """One collection: the 4-class block, then screening, calibration, selective, kiosk."""
    lines = [f"collection {c['name']}: {c['data']}"]
    extra = []
    if c.get("excluded"):
        extra.append(f"{c['excluded']} excluded by --exclude")
    if c.get("n_unseen"):
        extra.append(
            f"{c['n_unseen']} of classes the model lacks ({', '.join(c['unseen_labels'])})"
        )
    if extra:
        lines.append("  " + "; ".join(extra))
    lines += format_report(c)[1:]
    s = c.get("screening_all")
    if s:
        thr = s["threshold"]
        how = "argmax" if thr is None else f"p >= {thr:.3f}"
        lines.append(f"  answers per true class ({how}; refer/unsure/clear, all images):")
        lines += _table(s["per_class"])
        lines.append(
            f"    mpox to a health worker (refer or unsure): {_rate(s.get('sensitivity'))}"
        )
        if "specificity" in s:
            lines.append(
                f"    other known classes cleared:               {_rate(s['specificity'])}"
            )
        for name, r in (s.get("known_negative_to_health_worker") or {}).items():
            lines.append(f"    {name + ' sent to a health worker:':<43}{_rate(r)}")
        if "unseen_to_health_worker" in s:
            unseen = _rate(s["unseen_to_health_worker"])
            lines.append(f"    unseen classes sent to refer/unsure:       {unseen}")
    u = c.get("unseen")
    if u:
        aur = f"  AUROC unseen vs known: 1 - max prob {u['auroc_max_prob']:.3f}"
        if "auroc_ood_score" in u:
            aur += f", OOD score {u['auroc_ood_score']:.3f}"
        lines.append(aur)
    cal = c.get("calibration")
    if cal and cal.get("n"):
        lines.append(
            f"  calibration ({cal['n']} images of known classes): ECE ({cal['bins']} bins) "
            f"{cal['ece']:.4f}, Brier {cal['brier']:.4f}, NLL {cal['nll']:.4f}"
        )
    raw = c.get("calibration_raw")
    if raw and raw.get("n"):
        lines.append(
            f"    before temperature scaling: ECE {raw['ece']:.4f}, Brier {raw['brier']:.4f}, "
            f"NLL {raw['nll']:.4f}"
        )
    sel = c.get("selective")
    if sel and sel.get("n"):
        mp = sel["max_prob"]
        at = ", ".join(f"{k} {_pct(v).strip()}" for k, v in mp["risk_at_coverage"].items())
        lines.append(
            f"  selective: error at full coverage {_pct(sel['risk_at_full_coverage']).strip()}, "
            f"at coverage {at} (ranked by max prob; AURC {mp['aurc']:.4f})"
        )
        if "ood_score" in sel:
            lines.append(f"    ranked by OOD score: AURC {sel['ood_score']['aurc']:.4f}")
        un = sel.get("unsure")
        if un:
            lines.append(
                f"    model's unsure: {un['n_unsure']} unsure, coverage "
                f"{_pct(un['coverage']).strip()}, error on the rest {_pct(un['risk']).strip()} "
                f"({un['errors_caught']} of {un['errors']} errors held back)"
            )
    k = c.get("kiosk")
    if k:
        lines.append("  as the kiosk runs it (quality gate, unsure, refer/clear):")
        lines += _table(k["gated"]["per_class"], with_retake=True)
        g, ug = k["gated"], k["ungated"]
        lines.append(f"    sent to retake:                 {_rate(g.get('retake'))}")
        lines.append(f"    4-class accuracy ungated:       {_rate(k['accuracy_ungated'])}")
        lines.append(f"    4-class accuracy, gate passed:  {_rate(k['accuracy_passed'])}")
        lines.append(f"    4-class accuracy of retakes:    {_rate(k['accuracy_of_retakes'])}")
        lines.append(
            f"    mpox to a health worker: gated {_rate(g.get('sensitivity'))}; "
            f"ungated {_rate(ug.get('sensitivity'))}"
        )
    if c.get("plots"):
        lines.append(f"  plots: {', '.join(c['plots'])}")
    return lines


def _table(per: dict[str, dict[str, Any]], with_retake: bool = False) -> list[str]:
    cols = ["refer", "unsure", "clear"] + (["retake"] if with_retake else [])
    out = [f"    {'class':<12}{'n':>5}" + "".join(f"{c:>8}" for c in cols) + f"{'to HW':>9}"]
    for name, r in per.items():
        out.append(
            f"    {name:<12}{r['n']:>5}"
            + "".join(f"{r[c]:>8}" for c in cols)
            + f"{_pct(r['to_health_worker']):>9}"
        )
    return out
