"""Layering: node → training, verification → p2p → store. Lower layers never import higher ones."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]

FORBIDDEN = {
    "store": {"node", "p2p", "training", "verification"},
    "p2p": {"node", "training", "verification"},
    "training": {"node", "verification"},
    "verification": {"node"},
    # The orchestrator core is pure: no network, no event loop, no node services, no torch.
    "node.orchestration": {
        "node.*",
        "training",
        "verification",
        "aiohttp",
        "asyncio",
        "trio",
        "libp2p",
        "torch",
    },
}


def imported_by(package: str) -> set[str]:
    code = (
        "import sys, pkgutil, importlib, " + package.split(".")[0] + "\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('\\n'.join(sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_no_higher_layer(package: str) -> None:
    modules = imported_by(package)
    assert package in modules
    hits = set()
    for banned in FORBIDDEN[package]:
        if banned.endswith(".*"):
            parent = banned[:-2]
            hits |= {
                m
                for m in modules
                if m.startswith(parent + ".") and m != package and not m.startswith(package + ".")
            }
        else:
            hits |= {m for m in modules if m == banned or m.startswith(banned + ".")}
    assert sorted(hits) == []
