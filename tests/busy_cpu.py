"""An oversubscribed CPU for tests and benches: one busy-looping process per core beside the
code under test, so that whatever it does runs slow and preempted, as on a loaded machine."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

BURN = "while True: pass"


@contextmanager
def busy_cpu(processes: int | None = None) -> Iterator[int]:
    """Start `processes` CPU burners (one per core by default) and stop them on exit."""
    n = processes if processes is not None else (os.cpu_count() or 1)
    burners = [
        subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.DEVNULL) for _ in range(n)
    ]
    try:
        yield n
    finally:
        for burner in burners:
            burner.kill()
        for burner in burners:
            burner.wait()
