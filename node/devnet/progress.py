"""The devnet's progress line: window, optimizer step, last loss and tokens/s of the run.

Rendered from the orchestrator's `/status` `"orchestrator"` section. On a terminal the line is
redrawn in place; otherwise a plain line is printed when the window changes, when the run is
done, and every `every_s`.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO

BAR = 20


def _num(value: Any, default: float = 0.0) -> float:
    return float(value) if isinstance(value, int | float) else default


def progress_line(orch: dict[str, Any] | None, windows: int) -> str:
    """One line of text for the run's state (tolerates a missing or partial section)."""
    if not orch:
        return f"window -/{windows}  waiting for the orchestrator"
    window = int(_num(orch.get("window")))
    target = int(_num(orch.get("windows_target"))) or windows
    batches = orch.get("batches") or {}
    total = int(_num(batches.get("total")))
    completed = int(_num(batches.get("completed")))
    closed = min(window, target) if target else window
    frac = closed / target if target else 0.0
    if target and window < target and total:
        frac += min(completed / total, 1.0) / target
    filled = round(BAR * min(frac, 1.0))
    bar = "#" * filled + "-" * (BAR - filled)
    progress = orch.get("progress") or {}
    loss = progress.get("loss")
    loss_text = f"{loss:.4f}" if isinstance(loss, int | float) else "-"
    shown = min(window + 1, target) if target else window + 1
    phase = "done" if orch.get("done") else str(orch.get("phase", "?"))
    waiting = int(_num(orch.get("waiting_for_validators")))
    if waiting and not orch.get("done"):
        phase = f"waiting for {waiting} validator{'s' if waiting > 1 else ''}"
    return (
        f"window {shown}/{target} [{bar}] {completed}/{total} batches  "
        f"step {int(_num(progress.get('step')))}  loss {loss_text}  "
        f"{_num(progress.get('tokens_per_s')):,.0f} tok/s  {phase}"
    )


class ProgressView:
    """Shows `progress_line`s on `out`: in place on a TTY, periodic plain lines otherwise."""

    def __init__(self, windows: int, out: TextIO | None = None, *, every_s: float = 10.0) -> None:
        self.windows = windows
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.every_s = every_s
        self._last_at = 0.0
        self._last_key: tuple[Any, bool] | None = None
        self._width = 0
        self._open = False

    def update(self, orch: dict[str, Any] | None) -> None:
        line = progress_line(orch, self.windows)
        if self.tty:
            line = line[: max(shutil.get_terminal_size().columns - 1, 20)]  # no wrapping
            pad = " " * max(self._width - len(line), 0)
            self.out.write("\r" + line + pad)
            self.out.flush()
            self._width, self._open = len(line), True
            return
        key = (orch.get("window"), bool(orch.get("done"))) if orch else None
        now = time.monotonic()
        if key != self._last_key or now - self._last_at >= self.every_s:
            print(f"devnet: {line}", file=self.out, flush=True)
            self._last_at, self._last_key = now, key

    def message(self, text: str) -> None:
        """A line of its own (on a TTY: below the progress line, which is redrawn next time)."""
        self.end()
        print(text, file=self.out, flush=True)

    def end(self) -> None:
        """Leaves the in-place line so that later output starts on a fresh line."""
        if self._open:
            self.out.write("\n")
            self.out.flush()
            self._open, self._width = False, 0
