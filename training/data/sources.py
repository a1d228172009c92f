"""Document sources: the Python standard library (code), its documentation topics (prose),
and user corpora (text files, one document each, or JSONL with a `text` field per line).

Every source yields (name, text) in a deterministic order; names decide the held-out split.
"""

from __future__ import annotations

import hashlib
import json
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "pydoc_data", "test", "tests"})
_SECTION = re.compile(r"\n\n(?=[^\n]+\n[=*-]{3,}\n)")
_DOMAIN = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")

Document = tuple[str, str]


@dataclass(frozen=True, kw_only=True, slots=True)
class UserCorpus:
    """Documents of one domain: `.jsonl` files hold one `{"text": ...}` per line, others are
    one document per file."""

    domain: str
    paths: tuple[Path, ...]

    def __post_init__(self) -> None:
        if not _DOMAIN.fullmatch(self.domain):
            raise ValueError(f"domain name {self.domain!r} must match {_DOMAIN.pattern}")
        if not self.paths:
            raise ValueError(f"user corpus {self.domain!r} has no paths")


def _stable_key(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def code_documents(*, max_bytes: int, max_file_bytes: int) -> list[Document]:
    """Standard-library modules in a hash-shuffled (stable, diverse) order, up to `max_bytes`."""
    root = Path(sysconfig.get_paths()["stdlib"])
    names = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _SKIPPED_DIRS.isdisjoint(rel.parts[:-1]) and path.stat().st_size <= max_file_bytes:
            names.append(rel.as_posix())
    docs: list[Document] = []
    total = 0
    for name in sorted(names, key=_stable_key):
        text = (root / name).read_text(encoding="utf-8", errors="replace")
        if total + len(text) > max_bytes:
            continue
        docs.append((name, text))
        total += len(text)
    return docs


def prose_documents(*, max_bytes: int | None = None) -> list[Document]:
    """Sections of Python's documentation topics (`pydoc_data.topics`), in topic name order.

    A topic is cut at its section headings, so the held-out split has enough documents."""
    from pydoc_data.topics import topics

    docs: list[Document] = []
    total = 0
    for topic in sorted(topics):
        for i, text in enumerate(_SECTION.split(topics[topic])):
            if max_bytes is not None and total + len(text) > max_bytes:
                continue
            docs.append((f"{topic}/{i}", text))
            total += len(text)
    return docs


def user_documents(corpus: UserCorpus) -> list[Document]:
    """The corpus's documents, named by (position of the path, file name, line)."""
    docs: list[Document] = []
    for i, path in enumerate(corpus.paths):
        stem = f"{i}:{path.name}"
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    text = record.get("text") if isinstance(record, dict) else None
                    if not isinstance(text, str):
                        raise ValueError(f"{path}:{line_no}: expected an object with a 'text'")
                    docs.append((f"{stem}:{line_no}", text))
        else:
            docs.append((stem, path.read_text(encoding="utf-8", errors="replace")))
    return [(name, text) for name, text in docs if text]
