"""The store package is the lowest layer: importing it pulls in no other tessera package."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]


def test_store_imports_no_higher_layer() -> None:
    code = (
        "import sys, store, store.blobs, store.env;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'node', 'p2p', 'training', 'verification'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
