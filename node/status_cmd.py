"""`tessera status URL`: fetch a node's /status and print it as a readable table."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show a node's status",
        description="Print a node's /status as a table (URL of the node's status HTTP endpoint).",
    )
    p.add_argument("url", help="e.g. http://127.0.0.1:8420")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node")
    p.set_defaults(func=run)


def fetch_status(url: str, timeout: float) -> dict[str, Any]:
    base = url if "://" in url else f"http://{url}"
    base = base.rstrip("/").removesuffix("/status")
    with urllib.request.urlopen(f"{base}/status", timeout=timeout) as response:
        data: dict[str, Any] = json.load(response)
    return data


def flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, f"{name}."))
        elif isinstance(value, list):
            items = [json.dumps(v) if isinstance(v, dict | list) else str(v) for v in value]
            rows.append((f"{name} ({len(items)})", items[0] if items else "-"))
            rows.extend(("", item) for item in items[1:])
        else:
            rows.append((name, "-" if value is None or value == {} else str(value)))
    return rows


def render_table(doc: dict[str, Any]) -> str:
    rows = flatten(doc)
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def run(args: argparse.Namespace) -> int:
    try:
        doc = fetch_status(args.url, args.timeout)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"tessera status: cannot read {args.url}: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2) if args.json else render_table(doc))
    return 0
