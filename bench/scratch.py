"""A bench's scratch directory: removed when the bench is done with it, kept when the bench
fails inside it (its logs and stores are what one reads next), and named on stderr then."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_dir(prefix: str, given: Path | None = None) -> Iterator[Path]:
    """`given` as is (never removed), or a fresh temporary directory named `prefix`…"""
    if given is not None:
        yield given
        return
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    except BaseException:
        print(f"bench: kept {root} for a look (the run failed)", file=sys.stderr, flush=True)
        raise
    shutil.rmtree(root, ignore_errors=True)
