"""Human-facing views of the accounting: terminal tables, Markdown, diffs and plots."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from moezoo.spec.schema import ModelSpec

COMPONENT_LABELS = {
    "embedding": "input embedding",
    "attention": "attention",
    "dense_ffn": "dense FFN",
    "router": "router",
    "shared_experts": "shared experts",
    "routed_experts": "routed experts",
    "norms": "norms",
    "position": "relative position bias",
    "lm_head": "LM head",
    "attention_core": "attention core (QK^T, AV)",
    "mtp": "MTP modules",
    "weights": "active weights",
    "total": "all (formula)",
}


# The FLOP breakdown charges only matmuls: the "attention" parameters' FLOPs are their projections.
FLOP_LABELS = {"attention": "attention projections"}


def human(n: float, unit: str = "") -> str:
    """671026404352 -> '671.03B'; keeps 2 decimals, B/M/K/T suffixes."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}" if float(n).is_integer() else f"{n:.2f}{unit}"


def human_bytes(n: float) -> str:
    for scale, suffix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n:.0f} B"


def gflops(x: float) -> str:
    return f"{x / 1e9:.2f}"


def ratio_text(r: float | None) -> str:
    if r is None:
        return "-"
    if r >= 1:
        return f"{r:.2f}"
    return f"1/{1 / r:.1f}" if abs(1 / r - round(1 / r)) > 0.05 else f"1/{round(1 / r)}"


def _summary_rows(rep: dict[str, Any]) -> list[tuple[str, str, str]]:
    p, f, m = rep["params"], rep["flops"], rep["memory"]
    rows = [
        ("total parameters", f"{p['total']:,}", human(p["total"])),
        ("active per token (emb + head incl.)", f"{p['active']:,}", human(p["active"])),
        ("active without input embedding", f"{p['active_non_embedding']:,}", human(p["active_non_embedding"])),
        ("active without embedding and head", f"{p['active_without_embedding_and_head']:,}",
         human(p["active_without_embedding_and_head"])),
        ("input embedding", f"{p['embedding']:,}", human(p["embedding"])),
        ("LM head" + (" (tied to embedding)" if p["tied_embeddings"] else ""), f"{p['lm_head']:,}", human(p["lm_head"])),
    ]
    if p["mtp"]:
        rows.append(("MTP modules (own tensors)", f"{p['mtp']:,}", human(p["mtp"])))
    if p["fine_grained_ratio"] is not None:
        rows.append(("fine-grained ratio (expert / dense width)", f"{p['fine_grained_ratio']:.4f}",
                     ratio_text(p["fine_grained_ratio"])))
        rows.append(("routed-expert share of parameters", f"{p['expert_share']:.4f}", f"{100 * p['expert_share']:.1f}%"))
    rows += [
        (f"training FLOPs / token (S={f['seq_len']}, {f['convention']})", f"{f['train_per_token']:,.0f}",
         f"{gflops(f['train_per_token'])} GFLOPs"),
        ("forward FLOPs / token", f"{f['forward_per_token']:,.0f}", f"{gflops(f['forward_per_token'])} GFLOPs"),
    ]
    if f["mtp_forward_per_token"] and not f["switches"]["include_mtp"]:
        rows.append(("MTP forward FLOPs / token (not included)", f"{f['mtp_forward_per_token']:,.0f}",
                     f"{gflops(f['mtp_forward_per_token'])} GFLOPs"))
    rows += [
        ("KV cache / token (bf16)", f"{m['kv_cache_bytes_per_token']:,}", human_bytes(m["kv_cache_bytes_per_token"])),
        (f"KV cache / sequence of {f['seq_len']} (windows capped)", f"{m['kv_cache_bytes_per_sequence']:,}",
         human_bytes(m["kv_cache_bytes_per_sequence"])),
        ("weights (bf16)", f"{m['weight_bytes']['bf16']:,}", human_bytes(m["weight_bytes"]["bf16"])),
        ("AdamW training state (16 B/param)", f"{m['training_state_bytes']:,}", human_bytes(m["training_state_bytes"])),
    ]
    if "per_gpu" in m:
        g = m["per_gpu"]
        rows.append((f"per GPU at EP={g['ep']}, DP={g['dp']}: params", f"{g['params']:,}", human(g["params"])))
        rows.append(("per GPU training state", f"{g['training_bytes']:,}", human_bytes(g["training_bytes"])))
    return rows


def _component_rows(rep: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    p, f = rep["params"], rep["flops"]
    keys = list(p["by_component"]) + [k for k in f["by_component"] if k not in p["by_component"]]
    rows = []
    for k in keys:
        total = p["by_component"].get(k)
        active = p["active_by_component"].get(k)
        fl = f["by_component"].get(k)
        rows.append((COMPONENT_LABELS.get(k, k), f"{total:,}" if total is not None else "",
                     f"{active:,}" if active is not None else "", f"{gflops(fl)}" if fl is not None else ""))
    return rows


CONVENTION_LABELS = {
    "total": "total",
    "total_with_mtp": "total + MTP",
    "with_embedding_and_head": "emb + head incl.",
    "without_input_embedding": "without input emb",
    "without_embedding_and_head": "without emb, head",
}


def _published_scale(value: int) -> tuple[float, str]:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return scale, suffix
    return 1.0, ""


def published_text(value: int) -> str:
    """A published figure as it was published: 671000000000 -> '671B', 116830000000 -> '116.83B'."""
    scale, suffix = _published_scale(value)
    text = f"{value / scale:,.3f}".rstrip("0").rstrip(".")
    return f"{text}{suffix}"


def computed_text(value: int, published: int) -> str:
    """A computed figure in the unit of the published one, one digit finer than it: '671.026B'."""
    scale, suffix = _published_scale(published)
    return f"{value / scale:,.3f}{suffix}"


def _reference_rows(rep: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for r in rep["reference"]:
        verdict = "agrees" if r["agrees"] and r["published"] > 0 else "DISAGREES"  # 0 is no figure to agree with
        rows.append((r["figure"].replace("_", " "), published_text(r["published"]),
                     CONVENTION_LABELS.get(r["convention"], r["convention"]),
                     computed_text(r["computed"], r["published"]),
                     f"{100 * r['rel_diff']:+.2f}% (tol {100 * r['tolerance']:g}%)", verdict))
    return rows


REFERENCE_HEADER = ("figure", "published", "counts", "computed", "difference", "verdict")


DISAGREE_HINT = ("DISAGREES: off by more than the tolerance in the spec's reference block; check which convention "
                 "the published figure uses (reference.*.convention) and the spec's hyper-parameters.")


def _reference_notes(rep: dict[str, Any]) -> list[str]:
    notes = [f"{r['figure'].replace('_params', '')}: {r['source']}" for r in rep["reference"] if r.get("source")]
    if any(not r["agrees"] for r in rep["reference"]):
        notes.append(DISAGREE_HINT)
    return notes


def _wrapped(lines: list[str], style: str | None = None) -> Table:
    """Text that wraps at the console width (the CLI console prints with soft_wrap, which would not)."""
    grid = Table.grid()
    grid.add_column()
    for line in lines:
        grid.add_row(Text(line, style=style or ""))
    return grid


def terminal_report(rep: dict[str, Any]) -> Group:
    title = Table.grid()
    title.add_column()
    title.add_row(Text(rep["name"], style="bold") + Text(f"  ({rep['family']})  {rep['description']}", style="dim"))

    summary = Table(show_header=True, header_style="bold", title=None, expand=False)
    summary.add_column("figure")
    summary.add_column("exact", justify="right")
    summary.add_column("", justify="right")
    for row in _summary_rows(rep):
        summary.add_row(*row)
    comps = Table(show_header=True, header_style="bold")
    comps.add_column("component")
    comps.add_column("parameters", justify="right")
    comps.add_column("active / token", justify="right")
    comps.add_column("fwd GFLOPs / token", justify="right")
    for row in _component_rows(rep):
        comps.add_row(*row)
    parts: list[Any] = [title, summary]
    if rep["flops"].get("note"):
        parts.append(_wrapped([f"FLOPs: {rep['flops']['note']}."], "dim"))
    parts.append(comps)
    refs = _reference_rows(rep)
    if refs:
        t = Table(show_header=True, header_style="bold", title="published vs computed")
        for i, c in enumerate(REFERENCE_HEADER):
            t.add_column(c, justify="right" if c in ("published", "computed", "difference") else "left",
                         no_wrap=i < 5)
        for row in refs:
            style = None if row[-1] == "agrees" else "bold red"
            t.add_row(*row, style=style)
        parts.append(t)
        parts.append(_wrapped(_reference_notes(rep), "dim"))
    return Group(*parts)


def _md_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A Markdown table; the first column left-aligned, the others right-aligned (numbers)."""
    header = list(header)
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def markdown_report(rep: dict[str, Any], spec: ModelSpec | None = None) -> str:
    out = [f"# {rep['name']}", "", rep["description"], ""]
    out.append(_md_table(["figure", "exact", ""], _summary_rows(rep)))
    if rep["flops"].get("note"):
        out += ["", f"FLOPs: {rep['flops']['note']}."]
    out += ["", "## Breakdown by component", ""]
    out.append(_md_table(["component", "parameters", "active / token", "fwd GFLOPs / token"], _component_rows(rep)))
    refs = _reference_rows(rep)
    if refs:
        out += ["", "## Published vs computed", ""]
        out.append(_md_table(REFERENCE_HEADER, refs))
        out += [""] + [f"- {note}" for note in _reference_notes(rep)]
    out += ["", "## Conventions", "",
            ("- Parameters: exact; tied or shared tensors once; buffers (routing bias, rotary tables) excluded; "
             "`total` excludes MTP modules."),
            "- Active: what one token touches, input embedding and LM head included (k of E routed experts).",
            (f"- FLOPs: 2 per multiply-add, training = 3 x forward, convention `{rep['flops']['convention']}` "
             f"at S = {rep['flops']['seq_len']} (see docs/accounting.md)."), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- the zoo side by side

ZOO_COLUMNS = ["model", "routed", "top-k", "shared", "fine-grained", "total params", "active params",
               "train GFLOPs/token", "KV cache/token"]
# Terminal: routed / top-k / shared in one column, so that the whole zoo fits 100 columns uncut.
ZOO_TERMINAL_HEADERS = ["model", "experts\nE / k / shared", "fine-\ngrained", "total\nparams", "active\nparams",
                        "train GFLOPs\nper token", "KV cache\nper token"]


def zoo_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in reports:
        moe, p = r["moe"], r["params"]
        rows.append([
            r["name"],
            str(moe.get("routed", "-")),
            str(moe.get("active") if moe.get("active") is not None else moe.get("router", "-")),
            str(moe.get("shared", "-")),
            ratio_text(p["fine_grained_ratio"]),
            human(p["total"]),
            human(p["active"]),
            gflops(r["flops"]["train_per_token"]),
            human_bytes(r["memory"]["kv_cache_bytes_per_token"]),
        ])
    return rows


def zoo_table(reports: list[dict[str, Any]]) -> Table:
    first = reports[0]["flops"] if reports else {"seq_len": 0, "convention": ""}
    t = Table(show_header=True, header_style="bold",
              title=f"moezoo: {len(reports)} models (S={first['seq_len']}, {first['convention']} convention)")
    for i, c in enumerate(ZOO_TERMINAL_HEADERS):
        t.add_column(c, justify="left" if i == 0 else "right", no_wrap=True)
    for row in zoo_rows(reports):
        t.add_row(row[0], " / ".join(row[1:4]), *row[4:])
    return t


def zoo_markdown(reports: list[dict[str, Any]]) -> str:
    return _md_table(ZOO_COLUMNS, zoo_rows(reports)) + "\n"


# --------------------------------------------------------------------------- diff


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    else:
        out[prefix] = data
    return out


DIFF_FIGURES = [
    ("total parameters", lambda r: r["params"]["total"], human),
    ("active parameters", lambda r: r["params"]["active"], human),
    ("MTP parameters", lambda r: r["params"]["mtp"], human),
    ("train GFLOPs / token", lambda r: r["flops"]["train_per_token"], lambda x: gflops(x)),
    ("KV cache / token", lambda r: r["memory"]["kv_cache_bytes_per_token"], human_bytes),
    ("weights (bf16)", lambda r: r["memory"]["weight_bytes"]["bf16"], human_bytes),
]


def spec_diff(a: ModelSpec, b: ModelSpec) -> list[tuple[str, Any, Any]]:
    fa = _flatten(a.model_dump(mode="json", exclude={"reference", "name", "description"}))
    fb = _flatten(b.model_dump(mode="json", exclude={"reference", "name", "description"}))
    keys = sorted(set(fa) | set(fb))
    return [(k, fa.get(k, "(absent)"), fb.get(k, "(absent)")) for k in keys if fa.get(k, "(absent)") != fb.get(k, "(absent)")]


def figure_diff(ra: dict[str, Any], rb: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for label, get, fmt in DIFF_FIGURES:
        va, vb = get(ra), get(rb)
        if va == vb:
            change = "="
        elif va:
            change = f"{100 * (vb - va) / va:+.2f}%"
        else:
            change = "new"
        rows.append((label, fmt(va), fmt(vb), change))
    return rows


# --------------------------------------------------------------------------- plots

# Label positions tried around a point, in points: (dx, dy, horizontal alignment, vertical alignment).
_LABEL_OFFSETS = [(7, 4, "left", "bottom"), (7, -4, "left", "top"), (-7, 4, "right", "bottom"),
                  (-7, -4, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"),
                  (9, 0, "left", "center"), (-9, 0, "right", "center")]
_FAR_OFFSETS = [(dx * s, dy * s, ha, va) for s in (2.5, 4.0) for dx, dy, ha, va in _LABEL_OFFSETS if dx or dy]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(ax, points: list[tuple[float, float, str]], fontsize: float = 7.5,
                  obstacles: list[Any] = ()) -> None:
    """Label each point where its text overlaps other labels, markers and the axes edge the least
    (a small greedy placer: the zoo has clusters of models of similar size)."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    axbox = ax.get_window_extent(renderer)
    disp = [ax.transData.transform((x, y)) for x, y, _ in points]
    r = 5 * fig.dpi / 72  # marker radius in pixels
    markers = [Bbox([[px - r, py - r], [px + r, py + r]]) for px, py in disp]
    placed: list[Any] = [b.padded(2) for b in obstacles]
    # Crowded points first, so that they get the best spots.
    order = sorted(range(len(points)), key=lambda i: -sum(
        1 for j in range(len(points)) if j != i and abs(disp[i][0] - disp[j][0]) + abs(disp[i][1] - disp[j][1]) < 80))
    leader = {"arrowstyle": "-", "color": "grey", "lw": 0.5, "shrinkA": 0, "shrinkB": 4}
    for i in order:
        x, y, name = points[i]
        best = None
        for n, (dx, dy, ha, va) in enumerate(_LABEL_OFFSETS + _FAR_OFFSETS):
            far = n >= len(_LABEL_OFFSETS)
            ann = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=fontsize, zorder=4,
                              arrowprops=leader if far else None)
            box = ann.get_window_extent(renderer).padded(2)
            cost = sum(_overlap(box, b) for b in placed) + sum(_overlap(box, m) for m in markers)
            inside = _overlap(box, axbox)
            cost += 4 * (box.width * box.height - inside)  # outside the axes is worst
            cost += 30 * n  # prefer the first, nearest positions
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box)
            else:
                ann.remove()
            if cost < 30 * (n + 1) and n < len(_LABEL_OFFSETS):
                break  # a free spot close to the point
        placed.append(best[2])


def _log_axis_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: human(v).replace(".00", "") if v >= 1 else f"{v:g}")


# One colour per family (tab10, then darker extras) and a marker cycle, so neighbours differ in both.
FAMILY_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#e7ba52", "#222222", "#b5cf6b", "#843c39", "#3182bd"]
FAMILY_MARKERS = ["o", "s", "D", "^", "v", "P", "X", "h"]


def plot_zoo(reports: list[dict[str, Any]], path: Path) -> Path:
    """Total vs active parameters across the zoo, log-log, one labelled point per model, with lines of
    constant active share."""
    import math

    from matplotlib.transforms import Bbox

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 7.5), dpi=110)
    families = sorted({r["family"] for r in reports})
    totals = [r["params"]["total"] for r in reports]
    actives = [r["params"]["active"] for r in reports]
    xlo, xhi = min(totals) / 2.5, max(totals) * 2.5
    ylo, yhi = min(actives) / 2.5, max(actives) * 4
    for fam_i, fam in enumerate(families):
        members = [r for r in reports if r["family"] == fam]
        ax.scatter([r["params"]["total"] for r in members], [r["params"]["active"] for r in members], s=42,
                   color=FAMILY_COLORS[fam_i % len(FAMILY_COLORS)], marker=FAMILY_MARKERS[fam_i % len(FAMILY_MARKERS)],
                   edgecolor="black", linewidth=0.5, zorder=3, label=fam)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xlo, xhi)
    ax.set_ylim(ylo, yhi)
    ax.xaxis.set_major_formatter(_log_axis_formatter())
    ax.yaxis.set_major_formatter(_log_axis_formatter())
    ax.set_xlabel("total parameters")
    ax.set_ylabel("active parameters per token (input embedding and LM head included)")
    ax.set_title(f"The MoE zoo: total vs active parameters ({len(reports)} models)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2, frameon=True, framealpha=0.9, title="family",
              title_fontsize=8)
    fig.tight_layout()  # fix the axes geometry before placing text in display coordinates
    renderer = fig.canvas.get_renderer()
    line_labels = [ax.get_legend().get_window_extent(renderer)]
    r = 6 * fig.dpi / 72
    markers = [Bbox.from_extents(px - r, py - r, px + r, py + r)
               for px, py in (ax.transData.transform(xy) for xy in zip(totals, actives))]
    axbox = ax.get_window_extent(renderer)
    for frac in (1.0, 0.1, 0.01, 0.001):
        ax.plot([xlo, xhi], [xlo * frac, xhi * frac], color="grey", lw=0.7, ls=":", zorder=1)
        # Label the line near where it leaves the plot (top or right edge), sliding down it past markers.
        x = min(xhi, yhi / frac) / 1.6
        while x * frac > ylo * 2:
            p0, p1 = ax.transData.transform((x, x * frac)), ax.transData.transform((x * 2, x * 2 * frac))
            angle = math.degrees(math.atan2(p1[1] - p0[1], p1[0] - p0[0]))
            text = ax.annotate(f"{frac:.1%} active".replace(".0%", "%"), (x, x * frac), fontsize=7.5,
                               color="dimgrey", rotation=angle, rotation_mode="anchor", ha="right", va="bottom",
                               xytext=(0, 2), textcoords="offset points")
            box = text.get_window_extent(renderer)
            if not any(_overlap(box.padded(3), m) for m in markers) and _overlap(box, axbox) == box.width * box.height:
                line_labels.append(box)
                break
            text.remove()
            x /= 1.6
    _place_labels(ax, [(r["params"]["total"], r["params"]["active"], r["name"]) for r in reports],
                  obstacles=line_labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_breakdown(rep: dict[str, Any], path: Path) -> Path:
    """Parameters (total and active per token) and forward FLOPs per token, by component."""
    plt = _pyplot()
    p, f = rep["params"], rep["flops"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), dpi=110, gridspec_kw={"width_ratios": [1.15, 1]})
    fig.suptitle(f"{rep['name']}: {human(p['total'])} parameters, {human(p['active'])} active per token; "
                 f"{gflops(f['train_per_token'])} training GFLOPs per token at S={f['seq_len']} "
                 f"({f['convention']} convention)", fontsize=11)
    comps = list(p["by_component"])
    ys = list(range(len(comps)))
    ax = axes[0]
    totals = [p["by_component"][c] for c in comps]
    actives = [p["active_by_component"].get(c, 0) for c in comps]
    ax.barh([y - 0.2 for y in ys], totals, height=0.4, label="total", color="#4c72b0")
    ax.barh([y + 0.2 for y in ys], actives, height=0.4, label="active per token", color="#dd8452")
    for y, t, a in zip(ys, totals, actives):
        ax.annotate(human(t), (t, y - 0.2), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        if a != t:
            ax.annotate(human(a), (a, y + 0.2), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(ys, [COMPONENT_LABELS.get(c, c) for c in comps])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(min(v for v in totals + actives if v) / 3, max(totals) * 12)
    ax.xaxis.set_major_formatter(_log_axis_formatter())
    ax.set_xlabel("parameters (log scale)")
    ax.set_title("parameters by component", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)
    ax = axes[1]
    fcomps = list(f["by_component"])
    values = [f["by_component"][c] / 1e9 for c in fcomps]
    total = sum(values) or 1.0
    ax.barh(range(len(fcomps)), values, color="#55a868")
    ax.set_yticks(range(len(fcomps)), [FLOP_LABELS.get(c, COMPONENT_LABELS.get(c, c)) for c in fcomps])
    ax.invert_yaxis()
    for y, v in enumerate(values):
        share = 100 * v / total
        ax.annotate(f"{v:.2f} ({share:.0f}%)" if share >= 1 else f"{v:.2f} (<1%)", (v, y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)
    ax.set_xlim(0, max(values + [0.0]) * 1.3 or 1)
    ax.set_xlabel(f"forward GFLOPs per token (training = {f['train_per_token'] / (total * 1e9):.0f} x forward)")
    title = f"forward FLOPs per token: {total:.2f} G"
    if f["mtp_forward_per_token"] and not f["switches"]["include_mtp"]:
        title += f" (MTP, not included: {gflops(f['mtp_forward_per_token'])} G)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
