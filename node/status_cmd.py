"""`tessera status URL` and `tessera top URL`: a node's dashboard as text in the terminal.

`status` prints the node's sections once (`--json`: the raw /status document); `top` (or
`status --watch S`) redraws them every few seconds until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from node.dashboard.text import render_text
from node.dashboard.view import dashboard_view

CLEAR = "\x1b[H\x1b[2J"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show a node's status",
        description="Print a node's status by section (URL of the node's status HTTP endpoint).",
    )
    p.add_argument("url", help="e.g. http://127.0.0.1:8420")
    p.add_argument("--json", action="store_true", help="print the raw /status JSON instead")
    p.add_argument("--watch", type=float, metavar="S", help="redraw every S seconds (as `top`)")
    p.add_argument("--width", type=int, help="columns (default: the terminal's, at most 100)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node")
    p.set_defaults(func=run)
    top = sub.add_parser(
        "top",
        help="watch a node's status in the terminal",
        description="Redraw a node's status every --interval seconds until Ctrl-C.",
    )
    top.add_argument("url", help="e.g. http://127.0.0.1:8420")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between redraws")
    top.add_argument("--width", type=int, help="columns (default: the terminal's)")
    top.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node")
    top.set_defaults(func=run_top)


def fetch_json(url: str, path: str, timeout: float) -> dict[str, Any]:
    base = url if "://" in url else f"http://{url}"
    base = base.rstrip("/").removesuffix("/status")
    with urllib.request.urlopen(f"{base}{path}", timeout=timeout) as response:
        data: dict[str, Any] = json.load(response)
    return data


def fetch_status(url: str, timeout: float) -> dict[str, Any]:
    return fetch_json(url, "/status", timeout)


def render(url: str, timeout: float, width: int) -> str:
    view = dashboard_view(fetch_status(url, timeout), fetch_json(url, "/peers", timeout))
    return render_text(view, width)


def _width(asked: int | None, cap: int) -> int:
    return asked or min(shutil.get_terminal_size((100, 40)).columns, cap)


def run(args: argparse.Namespace) -> int:
    if args.watch:
        return watch(args.url, args.watch, args.timeout, _width(args.width, 200))
    try:
        if args.json:
            print(json.dumps(fetch_status(args.url, args.timeout), indent=2))
        else:
            print(render(args.url, args.timeout, _width(args.width, 100)))
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        print(
            f"tessera status: cannot read {args.url}: {getattr(exc, 'reason', exc)}",
            file=sys.stderr,
        )
        return 1
    return 0


def run_top(args: argparse.Namespace) -> int:
    return watch(args.url, args.interval, args.timeout, _width(args.width, 200))


def watch(url: str, interval: float, timeout: float, width: int) -> int:
    """Redraw until Ctrl-C; a node that stops answering is reported in place and retried."""
    try:
        while True:
            try:
                text = render(url, timeout, width)
            except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
                text = f"tessera top: cannot read {url}: {getattr(exc, 'reason', exc)}"
            stamp = time.strftime("%H:%M:%S")
            sys.stdout.write(
                f"{CLEAR}{text}\n\n  {url} at {stamp} · every {interval:g} s · Ctrl-C quits\n"
            )
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
