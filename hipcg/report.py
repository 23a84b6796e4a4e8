"""The transferability report: Markdown, self-contained HTML (base64 images), JSON and PNG plots.

Input is the JSON written by :func:`hipcg.evaluate.evaluate`; nothing is recomputed here, so
the report shows exactly the numbers scripts read from ``report.json``.
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import OutputExistsError

SECTIONS = ("Summary", "State points", "Force errors", "Structure", "Transferability",
            "Density and pressure", "Diffusion", "Figures", "Definitions")


def _fmt(value, spec: str = ".3g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _get(d: dict | None, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def rows(result: dict) -> list[dict]:
    """One flat row per state point and model: what the tables (and scripts) need."""
    out = []
    for sp in result["state_points"]:
        for name, m in sp["models"].items():
            nvt, npt = m.get("nvt") or {}, m.get("npt") or {}
            blew = nvt.get("blew_up") or npt.get("blew_up")
            d = nvt.get("diffusion")
            d_ref = _get(sp, "reference", name, "diffusion")
            out.append({
                "state_point": sp["name"], "trained": sp["trained"], "temperature": sp["temperature"],
                "pressure_ref": sp.get("pressure"), "density_ref": sp.get("density"), "model": name,
                # pairwise, local-density, hipnn, hipnn-temperature (older evaluations: None)
                "model_kind": _get(result, "models", name, "model_kind"),
                "force_rmse": _get(m, "static", "force_rmse"), "force_mae": _get(m, "static", "force_mae"),
                "force_r2": _get(m, "static", "force_r2"), "rdf_error": nvt.get("rdf_error"),
                "rdf_errors": nvt.get("rdf_errors") or {}, "bond_errors": nvt.get("bond_errors") or {},
                "density": npt.get("density"), "density_error": npt.get("density_error"),
                "pressure": nvt.get("pressure"), "pressure_nvt_ref": sp.get("pressure_nvt"),
                "compressibility": npt.get("compressibility"),
                "compressibility_ref": sp.get("compressibility"),
                "thermal_expansion_ref": sp.get("thermal_expansion"),
                "diffusion_1e5_cm2_s": None if d is None else d * 1e4,
                "diffusion_ref_1e5_cm2_s": None if d_ref is None else d_ref * 1e4,
                "diffusion_ratio": None if (d is None or not d_ref) else d / d_ref,
                "blew_up": blew, "steps_per_s": nvt.get("steps_per_s"),
                **{k: m.get(k) for k in ("rdf_noise_floor", "rdf_null", "null_from",
                                          "rdf_error_common", "transferability_score", "separation")},
            })
    return out


# --------------------------------------------------------------------------- plots


def plot_rdfs(result: dict, outdir: Path) -> list[Path]:
    """One PNG per state point: reference and every model's g(r), one panel per type pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for sp in result["state_points"]:
        labels = sorted({lab for ref in sp["reference"].values() for lab in ref.get("rdfs", {})})
        if not labels:
            continue
        fig, axes = plt.subplots(1, len(labels), figsize=(4.5 * len(labels), 3.4), squeeze=False)
        for ax, lab in zip(axes[0], labels):
            ref_name = next(n for n in sp["reference"] if lab in sp["reference"][n].get("rdfs", {}))
            ref = sp["reference"][ref_name]["rdfs"][lab]
            ax.plot(ref["r"], ref["g"], "k-", lw=2.2, label="mapped atomistic")
            for name, m in sp["models"].items():
                g = _get(m, "nvt", "rdfs", lab)
                if g:
                    err = _get(m, "nvt", "rdf_errors", lab)
                    ax.plot(g["r"], g["g"], lw=1.3, label=f"{name} (err {_fmt(err, '.3f')})")
                elif _get(m, "nvt", "blew_up"):
                    ax.plot([], [], lw=1.3, label=f"{name}: blew up")
            ax.set_xlabel("r (Å)")
            ax.set_ylabel("g(r)")
            ax.set_title(f"{sp['name']} ({'trained' if sp['trained'] else 'held out'}) {lab}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = outdir / f"rdf_{sp['name']}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _isobars(rows: list[dict]) -> list[list[dict]]:
    """``rows`` grouped by pressure, each group sorted by T: lines join only the state points of
    one isobar (a line from 300 K / 1 atm to 450 K / 1000 atm would suggest a path never run)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r.get("pressure_ref"), []).append(r)
    return [sorted(g, key=lambda r: r["temperature"]) for g in groups.values()]


def _model_lines(ax, table: list[dict], key: str) -> None:
    """One line per model and isobar of ``key`` against T; trained state points filled, held out open."""
    for model in dict.fromkeys(r["model"] for r in table):
        color = None
        for rs in _isobars([r for r in table if r["model"] == model]):
            v = [np.nan if r[key] is None else r[key] for r in rs]
            (line,) = ax.plot([r["temperature"] for r in rs], v, "-", lw=1, color=color,
                              label=model if color is None else None)
            color = line.get_color()
            for r, vv in zip(rs, v):
                ax.plot(r["temperature"], vv, "o", color=color, ms=7,
                        mfc=color if r["trained"] else "white")


def _panels_vs_temperature(table: list[dict], panels: list, outdir: Path, name: str,
                           width: float, decorate, legend_outside: bool = False) -> Path:
    """A row of panels (key, label, ...) against T, written to ``outdir/name``; ``decorate(ax,
    panel)`` adds what a panel has beside the models' lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        decorate(ax, panel)
        _model_lines(ax, table, panel[0])
        ax.set_xlabel("T (K)")
        ax.set_ylabel(panel[-1])
        ax.legend(fontsize=7, title="filled: trained", title_fontsize=7,
                  **({"loc": "upper left", "bbox_to_anchor": (1.02, 1.0)} if legend_outside else {}))
    fig.tight_layout()
    path = outdir / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_errors_vs_temperature(table: list[dict], outdir: Path) -> Path:
    """RDF error, force RMSE, diffusion ratio against T; trained state points filled, held out open."""
    panels = [("rdf_error", "RDF error"), ("force_rmse", "force RMSE (kcal/mol/Å)"),
              ("density_error", "density error (relative)"), ("diffusion_ratio", "D_CG / D_ref")]
    panels = [p for p in panels if any(r[p[0]] is not None for r in table)]

    def decorate(ax, panel):
        if panel[0] == "rdf_error":
            from .analysis import RDF_ERROR_TOLERANCE

            ax.axhline(RDF_ERROR_TOLERANCE, color="grey", ls="--", lw=0.8, label="tolerance")

    return _panels_vs_temperature(table, panels, outdir, "errors_vs_temperature.png", 4.2, decorate)


def plot_thermo_vs_temperature(table: list[dict], outdir: Path) -> Path | None:
    """NPT density and NVT pressure against T, each model beside the atomistic reference."""
    panels = [("density", "density_ref", "NPT density (g/cm³)"),
              ("pressure", "pressure_nvt_ref", "NVT pressure (atm)")]
    panels = [p for p in panels if any(r[p[0]] is not None for r in table)]
    if not panels:
        return None

    def decorate(ax, panel):
        rows = list({r["state_point"]: r for r in table if r[panel[1]] is not None}.values())
        isobars = _isobars(rows)
        for k, rs in enumerate(isobars):
            ax.plot([r["temperature"] for r in rs], [r[panel[1]] for r in rs], "k-s", lw=1.5, ms=5,
                    label="atomistic (mapped)" if k == 0 else None)
            if len(isobars) > 1:  # say which isobar each reference point is on
                for r in rs:
                    ax.annotate(f"{_fmt(r.get('pressure_ref'), 'g')} atm", (r["temperature"], r[panel[1]]),
                                textcoords="offset points", xytext=(6, -10), fontsize=7)

    return _panels_vs_temperature(table, panels, outdir, "thermo_vs_temperature.png", 4.6, decorate)


def plot_score_vs_temperature(table: list[dict], outdir: Path) -> Path | None:
    """The transferability score of every model at the held-out state points against T, with
    the null model (0), the noise floor (1) and the 0.5 mark (docs/evaluation.md)."""
    if not any(r.get("transferability_score") is not None for r in table):
        return None

    def decorate(ax, panel):
        for y, text in ((1.0, "noise floor"), (0.5, "0.5"), (0.0, "null model")):
            ax.axhline(y, color="grey", ls="--" if y == 0.5 else ":", lw=0.8)
            ax.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), xytext=(-3, 2),
                        textcoords="offset points", fontsize=7, color="grey", ha="right")

    held = [r for r in table if not r["trained"]]
    return _panels_vs_temperature(held, [("transferability_score", "transferability score")], outdir,
                                  "score_vs_temperature.png", 7.0, decorate, legend_outside=True)


def _refine_section(result: dict) -> list[str]:
    """The volume terms and the self-consistent iterations (hipcg.refine), where there are any."""
    body = []
    for name, model in result["models"].items():
        for h in (model.get("refine") or {}).get("history", []):
            errs = h.get("density_error")
            body.append([name, h["step"], _fmt(h.get("p0"), ".0f"), _fmt(h.get("bulk"), ".0f"),
                         ", ".join(f"{100 * e:+.1f} %" for e in errs) if errs else "",
                         ", ".join(_fmt(k * 1e5 if k else None, ".3g") for k in h.get("compressibility") or []),
                         ", ".join(_fmt(p, ".0f") for p in h.get("pressure_cg") or [])])
    if not body:
        return []
    lines = ["## Volume term and its self-consistent refinement", "",
             "P_V(v) = p0 - K (v - v0)/v0 (docs/evaluation.md): `start` is the pressure-matched term, "
             "`nvt` moves p0 by the NVT pressure error at the reference density, `nptN` are the NPT "
             "iterations (density error and κ_T at the training state points, with the term they ran "
             "with).", ""]
    lines += _table(["model", "step", "p0 (atm)", "K (atm)", "NPT density error", "κ_T (1e-5/atm)",
                     "NVT pressure (atm)"], body)
    lines.append("")
    return lines


# --------------------------------------------------------------------------- text


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(r) + " |" for r in body])


def markdown(result: dict, table: list[dict], figures: list[Path]) -> str:
    from .analysis import RDF_ERROR_TOLERANCE

    models = list(result["models"])
    lines = ["# Transferability report", ""]
    # Summary
    lines += ["## Summary", ""]
    for model in models:
        rs = [r for r in table if r["model"] == model]
        held = [r for r in rs if not r["trained"]]
        ok = [r for r in rs if r["rdf_error"] is not None and r["rdf_error"] <= RDF_ERROR_TOLERANCE]
        worst = max((r["rdf_error"] for r in held if r["rdf_error"] is not None), default=None)
        blew = [r["state_point"] for r in rs if r["blew_up"]]
        lines.append(f"- **{model}** ({result['models'][model]['kind']}): RDF error within "
                     f"{RDF_ERROR_TOLERANCE} at {len(ok)}/{len(rs)} state points; worst held-out "
                     f"RDF error {_fmt(worst, '.3f')}"
                     + (f"; blew up at {', '.join(blew)}" if blew else "") + ".")
    lines += _score_summary(table, models)
    lines.append("")
    # State points
    lines += ["## State points", ""]
    lines += _table(["state point", "trained", "T (K)", "P ref (atm)", "density ref (g/cm³)"],
                    [[sp["name"], _fmt(sp["trained"]), _fmt(sp["temperature"], ".1f"),
                      _fmt(sp.get("pressure")), _fmt(sp.get("density"), ".4f")]
                     for sp in result["state_points"]])
    lines.append("")
    # Force errors
    lines += ["## Force errors", "", "Static, on the mapped frames of each state point; kcal/(mol Å)."]
    lines.append("")
    lines += _table(["state point", "trained", "model", "RMSE", "MAE", "R²"],
                    [[r["state_point"], _fmt(r["trained"]), r["model"], _fmt(r["force_rmse"], ".4f"),
                      _fmt(r["force_mae"], ".4f"), _fmt(r["force_r2"], ".4f")] for r in table])
    lines.append("")
    lines += _structure_section(table)
    lines += _transferability_section(table)
    lines += _density_section(table) + _refine_section(result)
    # Diffusion
    lines += ["## Diffusion", "", "Self-diffusion from the MSD (Einstein), 1e-5 cm²/s.", ""]
    lines += _table(["state point", "trained", "model", "D CG", "D ref", "ratio", "steps/s"],
                    [[r["state_point"], _fmt(r["trained"]), r["model"], _fmt(r["diffusion_1e5_cm2_s"]),
                      _fmt(r["diffusion_ref_1e5_cm2_s"]), _fmt(r["diffusion_ratio"]),
                      _fmt(r["steps_per_s"], ".4g")] for r in table])
    lines.append("")
    # Figures
    lines += ["## Figures", ""]
    lines += [f"![{p.stem}]({p.name})" for p in figures]
    lines.append("")
    # Definitions
    s = result.get("settings", {})
    lines += ["## Definitions", "",
              f"- RDF error: {result['definitions']['rdf_error']}.",
              f"- Runs: {s.get('steps')} NVT steps ({s.get('thermostat')}), {s.get('npt_steps')} NPT "
              f"steps, timestep {s.get('timestep')} fs, first {s.get('equilibration')} of each run "
              "discarded.",
              "- Units: " + ", ".join(f"{k} {v}" for k, v in result["definitions"]["units"].items()) + ".",
              "- Models: " + "; ".join(f"{n}: {m['kind']} `{m['path']}` (cutoff {m['cutoff']} Å)"
                                       for n, m in result["models"].items()) + ".", ""]
    return "\n".join(lines)


def _structure_section(table: list[dict]) -> list[str]:
    from .analysis import RDF_ERROR_TOLERANCE

    lines: list[str] = []
    lines += ["## Structure", "",
              f"RDF error (docs/evaluation.md): mean |g_CG - g_ref| on 0.1 Å bins up to min(cutoff, "
              f"half box); the largest over type pairs; tolerance {RDF_ERROR_TOLERANCE}.", ""]
    pair_labels = sorted({k for r in table for k in r["rdf_errors"]})
    bond_labels = sorted({k for r in table for k in r["bond_errors"]})
    header = ["state point", "trained", "model", "RDF error"] + [f"RDF {k}" for k in pair_labels] \
        + [f"intra {k}" for k in bond_labels] + ["status"]
    body = []
    for r in table:
        status = ("blew up at step {step}: {reason}".format(**r["blew_up"]) if r["blew_up"] else "ok")
        body.append([r["state_point"], _fmt(r["trained"]), r["model"], _fmt(r["rdf_error"], ".4f")]
                    + [_fmt(r["rdf_errors"].get(k), ".4f") for k in pair_labels]
                    + [_fmt(r["bond_errors"].get(k), ".3f") for k in bond_labels] + [status])
    lines += _table(header, body)
    if not bond_labels:
        lines += ["", "One bead per molecule: no intramolecular bead distributions."]
    lines.append("")
    return lines


def _density_section(table: list[dict]) -> list[str]:
    lines: list[str] = []
    lines += ["## Density and pressure", "",
              "Density from NPT runs at the reference pressure (n/a: no NPT run); pressure from "
              "NVT runs at the reference density, beside the atomistic mean pressure of the mapped "
              "frames (their per-frame thermo; n/a when the dataset has none); isothermal "
              "compressibility κ_T = <δV²>/(k_B T <V>) from the CG NPT run's volume fluctuations, "
              "beside the atomistic NPT equilibration's.", ""]
    lines += _table(["state point", "trained", "model", "density (g/cm³)", "ref", "rel. error",
                     "NVT pressure (atm)", "atomistic NVT (atm)", "κ_T (1e-5/atm)", "κ_T ref"],
                    [[r["state_point"], _fmt(r["trained"]), r["model"], _fmt(r["density"], ".4f"),
                      _fmt(r["density_ref"], ".4f"), _fmt(r["density_error"], "+.3f"),
                      _fmt(r["pressure"], ".4g"), _fmt(r["pressure_nvt_ref"], ".4g"),
                      _fmt(None if r["compressibility"] is None else r["compressibility"] * 1e5, ".3g"),
                      _fmt(None if r["compressibility_ref"] is None else r["compressibility_ref"] * 1e5, ".3g")]
                     for r in table])
    lines.append("")
    return lines


def _verdict(r: dict) -> str:
    from .transferability import inside_noise

    floor, null, model = r["rdf_noise_floor"], r["rdf_null"], r["rdf_error_common"]
    if r["blew_up"] or model is None:
        return "no CG RDF"
    if r["transferability_score"] is None:
        return "states do not separate (null <= floor): nothing to score"
    if inside_noise(model, null, floor):
        return "no difference from the null model (inside the noise)"
    return "better than the null model" if model < null else "worse than the null model"


def _score_summary(table: list[dict], models: list[str]) -> list[str]:
    """Models ranked by their mean transferability score over the held-out points."""
    ranked = []
    for model in models:
        scores = [r["transferability_score"] for r in table
                  if r["model"] == model and not r["trained"] and r["transferability_score"] is not None]
        ranked.append((sum(scores) / len(scores) if scores else None, model, len(scores)))
    ranked.sort(key=lambda t: -t[0] if t[0] is not None else float("inf"))
    lines = ["", "Transferability score (1 = as close as the reference to itself, 0 = no better than "
                 "reusing the nearest trained state's atomistic RDF; see below):"]
    for mean, model, n in ranked:
        held = [r for r in table if r["model"] == model and not r["trained"]]
        verdicts = ", ".join(f"{r['state_point']}: {_verdict(r)}" for r in held)
        lines.append(f"- {model}: mean score {_fmt(mean, '+.2f')} over {n} held-out point(s)"
                     + (f" ({verdicts})" if verdicts else ""))
    return lines


def _transferability_section(table: list[dict]) -> list[str]:
    from .transferability import SEPARATION_FACTOR

    held = [r for r in table if not r["trained"]]
    lines = ["## Transferability", "",
             "On the RDF bins every compared RDF shares: noise floor = the reference's first half of "
             "frames against its second half; null = the nearest trained state point's atomistic RDF "
             "used as the prediction; score = (null - model) / (null - floor). A held-out point is "
             f"informative when null >= {SEPARATION_FACTOR:g} x floor (the separation check).", ""]
    lines += _table(["state point", "model", "noise floor", "null (from)", "separation", "RDF error",
                     "score", "verdict"],
                    [[r["state_point"], r["model"], _fmt(r["rdf_noise_floor"], ".4f"),
                      f"{_fmt(r['rdf_null'], '.4f')} ({r['null_from'] or 'n/a'})",
                      _fmt(r["separation"], ".2f") + (" (ok)" if (r["separation"] or 0) >= SEPARATION_FACTOR
                                                      else " (too close)"),
                      _fmt(r["rdf_error_common"], ".4f"), _fmt(r["transferability_score"], "+.2f"),
                      _verdict(r)] for r in held])
    if not held:
        lines += ["", "No held-out state points: nothing to score."]
    lines.append("")
    return lines


def html_page(md_text: str, figures: list[Path]) -> str:
    """A self-contained HTML page: the Markdown tables and text, images inlined as base64."""
    embedded = {p.name: base64.b64encode(p.read_bytes()).decode() for p in figures}
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>hipcg transferability report</title>",
           "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 7px;"
           "font-size:13px}th{background:#eee}img{max-width:100%}</style></head><body>"]
    lines = md_text.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if line.startswith("|"):
            block = []
            while k < len(lines) and lines[k].startswith("|"):
                block.append([html.escape(c.strip()) for c in lines[k].strip("|").split("|")])
                k += 1
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in block[0]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in block[2:]]
            out.append("</table>")
            continue
        if line.startswith("## "):
            out.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            out.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("![") and "](" in line:
            name = line[line.index("](") + 2:-1]
            if name in embedded:
                out.append(f"<p><img alt='{html.escape(name)}' src='data:image/png;base64,{embedded[name]}'></p>")
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        k += 1
    out.append("</body></html>")
    return "\n".join(out)


def _inline(text: str) -> str:
    import re

    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def write_report(result: dict | str | os.PathLike, outdir: str | os.PathLike, overwrite: bool = False) -> dict[str, Path]:
    """Write report.md, report.html, report.json and the PNGs into ``outdir``; returns their paths."""
    if not isinstance(result, dict):
        result = json.loads(Path(result).read_text())
    outdir = Path(outdir)
    if (outdir / "report.md").exists() and not overwrite:
        raise OutputExistsError(f"{outdir / 'report.md'} exists; not overwriting it (use --overwrite)")
    # build in a temporary sibling directory, then move files into place: no half-written report
    tmp = outdir.parent / f".{outdir.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        table = rows(result)
        figures = plot_rdfs(result, tmp) + [plot_errors_vs_temperature(table, tmp)]
        figures += [p for p in [plot_thermo_vs_temperature(table, tmp), plot_score_vs_temperature(table, tmp)]
                    if p is not None]
        md = markdown(result, table, figures)
        (tmp / "report.md").write_text(md)
        (tmp / "report.html").write_text(html_page(md, figures))
        from .evaluate import to_jsonable

        (tmp / "report.json").write_text(json.dumps(to_jsonable({"rows": table, "evaluation": result}),
                                                    indent=1))
        outdir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for f in sorted(tmp.iterdir()):
            os.replace(f, outdir / f.name)
            paths[f.name] = outdir / f.name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths
