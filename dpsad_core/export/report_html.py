"""``privacy-report.html``: the privacy report for people, in one self-contained file.

No JavaScript, no external fonts, styles or images: the sample grid is a base64 data URI and the
curves are inline SVG drawn here, so the file opens the same offline, in a mail client or archived.
Everything shown comes from the JSON report, so the two cannot disagree.
"""

from __future__ import annotations

import base64
import json
import math
from html import escape
from typing import Any

from dpsad_core.export.layout import NOT_DP_STAMP
from dpsad_core.export.names import size_text

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#f4f4f4}code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;max-height:28em}
.stamp{background:#b00020;color:#fff;font-size:2em;font-weight:bold;text-align:center;padding:.6em;margin:1em 0}
.guarantee{background:#eef6ee;border:1px solid #9c9;padding:.8em 1em}
.outside{background:#fff4e5;border:2px solid #e69500;padding:.8em 1em;margin-top:1.5em}
.muted{color:#666;font-size:.9em}img.grid{image-rendering:pixelated;max-width:100%;border:1px solid #ccc}
"""


def render_html(report: dict[str, Any], grid_png: bytes | None) -> str:
    """The HTML page for ``report`` (``report.build_report``), with ``grid_png`` embedded."""
    guarantee = report["guarantee"]
    private = guarantee["differentially_private"]
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{escape(report['title'])}</title>"
             f"<style>{_STYLE}</style></head><body>"]
    if not private:
        parts.append(f"<div class='stamp'>{NOT_DP_STAMP}</div>")
    parts.append(f"<h1>{escape(report['title'])}</h1>")
    parts.append(_summary(report))
    parts.append(_plain_language(report))
    if report.get("mechanism"):
        from dpsad_core.export.report_rdm import rdm_html

        parts.append(rdm_html(report["mechanism"], escape, _fmt))
    parts.append(_mechanisms(report))
    if grid_png:
        data = base64.b64encode(grid_png).decode("ascii")
        parts.append("<h2>Sample images</h2><p class='muted'>A few images of each class from this bundle (one row "
                     f"per class).</p><img class='grid' alt='sample grid' src='data:image/png;base64,{data}' "
                     "width='640'>")
    parts.append(_curves(report))
    if report.get("outside_guarantee"):
        parts.append(_outside(report["outside_guarantee"]))
    parts.append(_provenance(report))
    parts.append(_verification(report))
    parts.append("</body></html>\n")
    return "".join(parts)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return escape(str(value))
    if isinstance(value, float):
        return "infinity" if math.isinf(value) else f"{value:.{digits}g}"
    return escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{escape(key)}</th><td>{value}</td></tr>" for key, value in rows)
    return f"<table>{body}</table>"


def _summary(report: dict[str, Any]) -> str:
    g = report["guarantee"]
    bundle = report["bundle"]
    if g["differentially_private"]:
        headline = (f"<div class='guarantee'><b>({_fmt(g['epsilon'])}, {_fmt(g['delta'], 3)})-differentially "
                    f"private</b> per <b>{escape(g['unit_of_privacy'])}</b> (target epsilon "
                    f"{_fmt(g['epsilon_target'])}).</div>")
    else:
        headline = (f"<div class='stamp' style='font-size:1.1em'>No differential privacy guarantee: trained on the "
                    f"private data without protection: {escape(', '.join(g['nonprivate_parts']))}</div>")
        if g.get("claimed_epsilon_paper") is not None:
            headline += (f"<p>The published method's accounting would claim epsilon = "
                         f"{_fmt(g['claimed_epsilon_paper'])}: a claim, not a bound.</p>")
    values = g["accountant_values"]
    counts = ", ".join(f"{name}: {count}" for name, count in bundle["class_counts"].items())
    rows = [("epsilon (reported)", _fmt(g["epsilon"])), ("delta", _fmt(g["delta"], 3)),
            ("accountant values", f"RDP {_fmt(values.get('rdp'))} (order {_fmt(values.get('rdp_order'))}), "
                                  f"PRV {_fmt(values.get('prv'))}" + (f"; {escape(values['note'])}"
                                                                        if values.get("note") else "")),
            ("how epsilon is computed", escape(g["accountant"])),
            ("unit of privacy", escape(g["unit_of_privacy"])),
            ("recipe", escape(report["run"]["recipe"])), ("run", escape(report["run"]["run_id"])),
            ("images in this bundle", f"{bundle['images']} ({escape(counts)})"),
            _sampler_row(bundle),
            ("random number generator", escape(g.get("secure_rng_note") or "")),
            ("signed by", f"<code>{escape(report['signer']['fingerprint'])}</code>")]
    return headline + _table(rows)


def _sampler_row(bundle: dict[str, Any]) -> tuple[str, str]:
    if "sample_steps" in bundle:  # sampled from a released model by this export
        return ("sampler", f"{escape(str(bundle['sampler']))}, {bundle['sample_steps']} steps, guidance "
                           f"{_fmt(bundle['guidance'])}, seed {bundle['seed']}")
    # a DP-RDM run's images, made when the run was: the export only chose which to include
    return ("images from", f"{escape(str(bundle.get('source')))}: {escape(str(bundle.get('subset')))} of "
                           f"{bundle.get('images_in_run')}; sampler {escape(str(bundle.get('sampler')))}, guidance "
                           f"{_fmt(bundle.get('guidance'))}")


def _plain_language(report: dict[str, Any]) -> str:
    text = report["plain_language"]
    means = "".join(f"<li>{escape(item)}</li>" for item in text["means"])
    does_not = "".join(f"<li>{escape(item)}</li>" for item in text["does_not_mean"])
    return (f"<h2>What this means</h2><ul>{means}</ul>"
            f"<h2>What this does not mean</h2><ul>{does_not}</ul>")


def _mechanisms(report: dict[str, Any]) -> str:
    rows = []
    for mechanism in report["mechanisms"]:
        components = "; ".join(_component(c) for c in mechanism.get("components") or [])
        rows.append(f"<tr><td>{escape(mechanism['part'])}</td><td>{_fmt(mechanism['noise_multiplier'])}</td>"
                    f"<td>{_fmt(mechanism['sample_rate'])}</td><td>{mechanism['steps']}</td>"
                    f"<td>{_fmt(mechanism.get('clip_norm'))}</td><td>{components}</td></tr>")
    nonprivate = report["guarantee"]["nonprivate_parts"]
    extra = "".join(f"<tr><td>{escape(part)}</td><td colspan='5'><b>no noise: NOT private</b></td></tr>"
                    for part in nonprivate)
    if not rows and not extra:
        extra = "<tr><td colspan='6'>none</td></tr>"
    kind = ("one private retrieval per query (Poisson subsample, noisy mean of k neighbours)"
            if report.get("mechanism") else "DP-SGD with Poisson subsampling")
    return ("<h2>Mechanisms that touched the private data</h2><p class='muted'>Each is a sampled Gaussian "
            f"mechanism ({kind}); the accountant composes all of them.</p>"
            "<table><tr><th>part</th><th>noise multiplier</th><th>sample rate</th><th>steps</th><th>clip norm</th>"
            f"<th>components (one shared subsample)</th></tr>{''.join(rows)}{extra}</table>")


def _component(component: dict[str, Any]) -> str:
    if "k" in component:  # DP-RDM: the noise is set by k and sigma, the sensitivity by k
        return (f"{escape(component['part'])}: k {component['k']}, sigma {_fmt(component.get('sigma'))}, "
                f"sensitivity {_fmt(component.get('sensitivity'))}")
    return (f"{escape(component['part'])}: sigma {_fmt(component.get('noise_multiplier'))}, "
            f"clip {_fmt(component.get('clip_norm'))}")


def _curves(report: dict[str, Any]) -> str:
    curves = report["curves"]
    epsilon = curves["epsilon"]
    if not epsilon["step"] and report.get("mechanism"):
        return ""  # a DP-RDM run has no training steps: the mechanisms table gives its spend
    parts = ["<h2>Privacy spent during training</h2><p class='muted'>Epsilon (RDP bound) after each step. It "
             "depends only on the noise, the sample rate and the number of steps, not on the data.</p>",
             line_chart({"epsilon": (epsilon["step"], epsilon["epsilon"])}, x_label="training step",
                        y_label="epsilon")]
    if curves["public_losses"]:
        parts.append("<h2>Losses of the public phases</h2><p class='muted'>These phases trained on public data "
                     "only, so their losses reveal nothing about the private data.</p>")
        parts.extend(_loss_charts(curves["public_losses"]))
    return "".join(parts)


def _loss_charts(curves: dict[str, Any]) -> list[str]:
    charts = []
    for phase, columns in curves.items():
        series = {name: (columns["step"], values) for name, values in columns.items() if name != "step"}
        if series:
            charts.append(f"<h3>{escape(phase)}</h3>" + line_chart(series, x_label="step", y_label="loss"))
    return charts


def _outside(section: dict[str, Any]) -> str:
    parts = [f"<div class='outside'><h2>Outside the privacy guarantee</h2><p><b>{escape(section['note'])}.</b></p>"]
    if section.get("private_losses"):
        parts.append("<p>Losses of the phases that read the private data:</p>")
        parts.extend(_loss_charts(section["private_losses"]))
    evaluation = section.get("evaluation")
    if evaluation:
        parts.append("<p>Evaluation of the synthetic data (aggregate numbers only):</p>")
        parts.append(_table([(key, _fmt(value)) for key, value in sorted(evaluation.items())]))
    elif evaluation is None:
        parts.append("<p class='muted'>No evaluation results exist for this run.</p>")
    parts.append("</div>")
    return "".join(parts)


def _provenance(report: dict[str, Any]) -> str:
    dataset = report["dataset"]
    rows = [("dataset", escape(dataset["name"])), ("fingerprint", f"<code>{escape(dataset['fingerprint'])}</code>"),
            ("size", f"{escape(size_text(dataset))}, "
                     f"{dataset['num_classes']} classes, {dataset['channels']} x {dataset['resolution']} x "
                     f"{dataset['resolution']}"),
            ("class names", escape(str(dataset.get("class_names_from")))),
            ("neighbouring datasets", escape(str(dataset.get("neighbouring")))),
            _model_row(report["model"])]
    if report.get("public_dataset"):
        public = report["public_dataset"]
        rows.append(("public data", f"{escape(str(public.get('name')))} ({public.get('num_records')} records)"))
    software = report["software"]
    for when in ("training", "export"):
        rows.append((f"software ({when})", escape(", ".join(f"{k} {v}" for k, v in sorted(software[when].items())))))
    config = escape(json.dumps({"config": report["config"], "plan": report["plan"]}, indent=2, sort_keys=True))
    return (f"<h2>Data, model and software</h2>{_table(rows)}<p class='muted'>{escape(dataset['note'])}.</p>"
            f"<h2>Resolved configuration and privacy plan</h2><pre>{config}</pre>")


def _model_row(model: dict[str, Any]) -> tuple[str, str]:
    if model.get("sha256"):
        return ("model sha256", f"<code>{escape(model['sha256'])}</code> (not shipped)")
    return ("model", f"no private model (DP-RDM): public model {escape(str(model.get('public_model')))} trained on "
                     f"{escape(str(model.get('public_dataset')))}, encoder digest "
                     f"<code>{escape(str(model.get('encoder_digest')))}</code>")


def _verification(report: dict[str, Any]) -> str:
    return ("<h2>Checking this bundle</h2><p>Every file's sha256 is listed in <code>MANIFEST</code>, which is "
            "signed with Ed25519 (<code>MANIFEST.sig</code>). Run <code>dpsad-core verify BUNDLE --public-key "
            "SIGNER.pem</code> (no GPU, no network needed). Signer fingerprint: "
            f"<code>{escape(report['signer']['fingerprint'])}</code>; compare it with one you got from the signer.</p>")


def line_chart(series: dict[str, tuple[list[Any], list[Any]]], *, x_label: str, y_label: str,
               width: int = 640, height: int = 260) -> str:
    """An inline SVG line chart; ``None`` values leave gaps. Empty series give a short note instead."""
    points = {name: [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)
                     if y is not None and math.isfinite(float(y))]
              for name, (xs, ys) in series.items()}
    points = {name: values for name, values in points.items() if values}
    if not points:
        return "<p class='muted'>(no finite values to plot)</p>"
    left, right, top, bottom = 60, 15, 15, 40
    xs = [x for values in points.values() for x, _ in values]
    ys = [y for values in points.values() for _, y in values]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
           f"aria-label='{escape(y_label)} against {escape(x_label)}' style='font-size:11px'>",
           f"<rect x='{left}' y='{top}' width='{width - left - right}' height='{height - top - bottom}' "
           "fill='none' stroke='#999'/>"]
    for fraction in (0.0, 0.5, 1.0):
        y_value = y0 + fraction * (y1 - y0)
        svg.append(f"<text x='{left - 5}' y='{sy(y_value) + 4:.1f}' text-anchor='end'>{y_value:.3g}</text>")
        x_value = x0 + fraction * (x1 - x0)
        svg.append(f"<text x='{sx(x_value):.1f}' y='{height - bottom + 15}' text-anchor='middle'>{x_value:.4g}</text>")
    svg.append(f"<text x='{(left + width - right) / 2}' y='{height - 5}' text-anchor='middle'>{escape(x_label)}</text>")
    svg.append(f"<text x='12' y='{(top + height - bottom) / 2}' text-anchor='middle' "
               f"transform='rotate(-90 12 {(top + height - bottom) / 2})'>{escape(y_label)}</text>")
    for index, (name, values) in enumerate(points.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in values)
        svg.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{path}'/>")
        if len(values) == 1:
            x, y = values[0]
            svg.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{colour}'/>")
        svg.append(f"<text x='{left + 8}' y='{top + 14 + 13 * index}' fill='{colour}'>{escape(name)}</text>")
    svg.append("</svg>")
    return "".join(svg)
