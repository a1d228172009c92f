"""The dashboard's document as text for a terminal (`tessera status`, `tessera top`): one block
per section, tables cut to the terminal's width (100 columns by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SPARKS = "▁▂▃▄▅▆▇█"
MARKS = {"pass": "✓", "fail": "✗", "inconclusive": "?"}


def render_text(view: dict[str, Any], width: int = 100) -> str:
    blocks = [_node(view["node"], width)]
    for name, draw in (
        ("run", _run),
        ("stages", _stages),
        ("miner", _miner),
        ("audits", _audits),
        ("pay", _pay),
        ("emission", _emission),
        ("peers", _peers),
    ):
        if view.get(name):
            blocks.append(draw(view[name], width))
    return "\n\n".join(blocks)


def short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return f"{text[:8]}…{text[-6:]}" if len(text) > 16 else text


def num(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if value != value or value in (float("inf"), float("-inf")):
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def sparkline(values: Sequence[float], width: int) -> str:
    values = [v for v in values if v == v][-width:]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    scale = (len(SPARKS) - 1) / (hi - lo) if hi > lo else 0.0
    return "".join(SPARKS[round((v - lo) * scale)] for v in values)


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], width: int, right: str = "") -> str:
    """Columns padded to their widest cell; `right` lists (by letter index a, b, …) the columns
    aligned right; lines cut at `width`."""
    cells = [list(map(str, head)), *([str(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if "abcdefghijklmnop"[i] in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append(_cut("  " + "  ".join(parts).rstrip(), width))
    return "\n".join(lines)


def _cut(line: str, width: int) -> str:
    """`line` without control characters (a peer's string cannot move the cursor), at most
    `width` long."""
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line if len(line) <= width else line[: width - 1] + "…"


def _node(node: dict[str, Any], width: int) -> str:
    store = node.get("store") or {}
    used, size = store.get("used"), store.get("map_size")
    who = [
        "+".join(node.get("roles") or []),
        f"run {node.get('run_id')}",
        f"peer {short(node.get('peer_id'))}",
        f"hotkey {short(node.get('hotkey'))}",
    ]
    how = [
        f"up {num((node.get('uptime_s') or 0) / 60, 1)} min",
        f"store {num((used or 0) / 2**20, 1)} of {num((size or 0) / 2**20, 0)} MiB",
        f"tessera {node.get('version')}",
    ]
    return _cut("NODE  " + " · ".join(who), width) + "\n" + _cut("  " + " · ".join(how), width)


def _run(run: dict[str, Any], width: int) -> str:
    target = f"/{run['windows_target']}" if run.get("windows_target") else ""
    head = (
        f"RUN  window {run.get('window')}{target} · "
        f"{'done' if run.get('done') else run.get('phase')} · {run.get('model')} · "
        f"step {num(run.get('step'))} · loss {num(run.get('loss'), 4)} · "
        f"{num(run.get('tokens_per_s'), 0)} tok/s · {num(run.get('tokens'))} tokens"
    )
    curve = [p[1] for p in run.get("loss_curve") or []]
    lines = [_cut(head, width)]
    if curve:
        lines.append(
            f"  loss per step  {curve[0]:.3f} {sparkline(curve, width - 40)} {curve[-1]:.3f}"
        )
    windows = (run.get("windows") or [])[-8:]
    domains = sorted({d for w in windows for d in w.get("perplexity") or {}})
    rows = [
        [
            w.get("window"),
            num(w.get("loss"), 4),
            num(w.get("tokens_per_s"), 0),
            *(num((w.get("perplexity") or {}).get(d), 1) for d in domains),
        ]
        for w in windows
    ]
    if rows:
        head_row = ["window", "loss", "tok/s", *(f"ppl {d}" for d in domains)]
        lines.append(table(head_row, rows, width, right="abcdefgh"))
    return "\n".join(lines)


def _stages(stages: dict[str, Any], width: int) -> str:
    bottleneck = stages.get("bottleneck")
    all_stages = stages.get("stages") or []
    count = sum(len(s["miners"]) for s in all_stages)
    leases = stages.get("open_leases")
    head = f"STAGES  {count} miners in {len(all_stages)} stages · {leases} leases open"
    if bottleneck is not None:
        head += f" · bottleneck: stage {bottleneck}"
    rows = []
    for s in all_stages:
        for m in s["miners"]:
            rows.append(_miner_row(str(s["stage"]), m))
    rows.extend(_miner_row("standby", m) for m in stages.get("standby") or [])
    cols = ["stage", "miner", "uid", "state", "bwd/s", "backward", "leases", "missed", "merged"]
    return _cut(head, width) + "\n" + table(cols, rows, width, right="cefgh")


def _miner_row(stage: str, m: dict[str, Any]) -> list[Any]:
    version = m.get("version")
    return [
        stage,
        short(m.get("peer_id")),
        num(m.get("uid")),
        m.get("state"),
        num(m.get("rate")),
        num(m.get("backward")),
        num(m.get("leases")),
        num(m.get("misses")),
        version[:12] if version else "-",
    ]


def _miner(m: dict[str, Any], width: int) -> str:
    stage = "standby" if m.get("standby") else m.get("stage")
    work = [
        f"stage {stage}",
        f"window {m.get('window')}",
        f"{num(m.get('optimizer_steps'))} steps",
        f"{num(m.get('backward_passes'))} backward",
        f"last loss {num(m.get('last_loss'), 4)}",
    ]
    load = [
        f"in flight {m.get('inflight')}/{m.get('max_inflight')}",
        f"compute queue {m.get('compute_queue')}",
        f"compute {num(m.get('compute_s'), 1)} s",
        f"weights {str(m.get('weights_version') or '-')[:12]}",
    ]
    return _cut("MINER  " + " · ".join(work), width) + "\n" + _cut("  " + " · ".join(load), width)


def _audits(a: dict[str, Any], width: int) -> str:
    v = a.get("verdicts") or {}
    head = (
        f"AUDITS  through window {a.get('window')}: {v.get('pass', 0)} pass, "
        f"{v.get('fail', 0)} fail, {v.get('inconclusive', 0)} inconclusive"
    )
    rows = []
    for m in a.get("miners") or []:
        counts = m.get("counts") or {}
        marks = "".join(MARKS.get(t["outcome"], "·") for t in m.get("timeline") or [])
        rows.append(
            [
                short(m.get("peer_id")),
                num(m.get("uid")),
                counts.get("pass", 0),
                counts.get("fail", 0),
                counts.get("inconclusive", 0),
                marks[-(width - 60) :],
            ]
        )
    failed = [t for t in a.get("latest") or [] if t.get("outcome") != "pass"]
    lines = [
        _cut(head, width),
        table(["miner", "uid", "pass", "fail", "inc", "verdicts"], rows, width, right="bcde"),
    ]
    for t in failed[-3:]:
        lines.append(
            _cut(
                f"  {t['outcome']} {short(t.get('miner'))} window {t.get('window')}: "
                f"{t.get('reason')}",
                width,
            )
        )
    return "\n".join(lines)


def _pay(p: dict[str, Any], width: int) -> str:
    rows = [
        [
            short(m.get("peer_id")),
            num(m.get("uid")),
            num(m.get("work")),
            num(m.get("incentive")),
            num(m.get("escrow")),
            num(m.get("barred_through")),
            num(m.get("weight"), 4),
        ]
        for m in p.get("miners") or []
    ]
    cols = ["miner", "uid", "work", "incentive", "escrow", "barred to", "weight"]
    lines = ["PAY  score book", table(cols, rows, width, right="bcdefg")]
    setting = p.get("set") or {}
    weights = setting.get("weights") or {}
    if weights:
        pairs = ", ".join(f"{uid}: {w:.4f}" for uid, w in weights.items())
        lines.append(_cut(f"  weights set at block {setting.get('last_block')}: {pairs}", width))
    return "\n".join(lines)


def _emission(e: dict[str, Any], width: int) -> str:
    rows = [
        [
            n.get("uid"),
            short(n.get("hotkey")),
            num(n.get("stake")),
            num(n.get("incentive"), 4),
            num(n.get("emission"), 4),
        ]
        for n in e.get("uids") or []
    ]
    head = f"EMISSION  metagraph at block {e.get('block')}"
    return (
        head
        + "\n"
        + table(["uid", "hotkey", "stake", "incentive", "emission"], rows, width, right="acde")
    )


def _peers(p: dict[str, Any], width: int) -> str:
    connected = p.get("connected") or []
    head = (
        f"PEERS  {len(connected)} connected · {p.get('admitted')} admitted · {p.get('known')} known"
    )
    refusals = p.get("refusals") or {}
    lines = [_cut(head, width)]
    if refusals:
        text = ", ".join(f"{r} {n}" for r, n in sorted(refusals.items(), key=lambda kv: -kv[1]))
        lines.append(_cut(f"  refused: {text}", width))
    rows = [
        [
            short(c.get("peer_id")),
            short(c.get("hotkey")),
            ",".join(c.get("roles") or []),
            c.get("direction"),
            "yes" if c.get("admitted") else "no",
        ]
        for c in connected
    ]
    lines.append(table(["peer", "hotkey", "roles", "direction", "admitted"], rows, width))
    return "\n".join(lines)
