"""Building the dataset on first use and caching it in `config.cache_dir`.

Cache layout: `tokenizer.json`, `tokens/<domain>.<split>.npy`, `manifest.json` (written last; it
names the config fingerprint and the dataset digest, both checked on load). A later call with the
same config reuses the build; a different config rebuilds in place.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import platform
import sysconfig
import time
from pathlib import Path

import numpy as np

from training.data import sources
from training.data.dataset import SPLITS, DataConfig, Dataset
from training.data.mathgen import math_documents
from training.data.schedule import Stream
from training.data.tokenizer import FILENAME, BPETokenizer

FORMAT = 1


def is_heldout(domain: str, name: str, fraction: float) -> bool:
    digest = hashlib.sha256(f"tessera-heldout|{domain}|{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


def split_documents(
    domain: str, docs: list[sources.Document], fraction: float
) -> dict[str, list[sources.Document]]:
    """Train/held-out by document name; both sides non-empty when there are two documents."""
    held = [is_heldout(domain, name, fraction) for name, _ in docs]
    if all(held) or not any(held):
        first = min(range(len(docs)), key=lambda i: hashlib.sha256(docs[i][0].encode()).digest())
        held = [i == first for i in range(len(docs))]
    return {
        "train": [d for d, h in zip(docs, held, strict=True) if not h],
        "heldout": [d for d, h in zip(docs, held, strict=True) if h],
    }


def collect_documents(config: DataConfig) -> dict[str, list[sources.Document]]:
    docs: dict[str, list[sources.Document]] = {}
    for name in config.builtin:
        if name == "code":
            docs[name] = sources.code_documents(
                max_bytes=config.code_max_bytes, max_file_bytes=config.code_max_file_bytes
            )
        elif name == "prose":
            docs[name] = sources.prose_documents(max_bytes=config.prose_max_bytes)
        elif name == "math":
            docs[name] = math_documents(config.math_seed, config.math_documents)
        else:
            raise ValueError(f"unknown built-in domain {name!r}")
    for corpus in config.user_corpora:
        docs.setdefault(corpus.domain, []).extend(sources.user_documents(corpus))
    if not docs:
        raise ValueError("no domains: enable a built-in domain or give a user corpus")
    empty = [d for d, items in docs.items() if len(items) < 2]
    if empty:
        raise ValueError(f"domains need at least two documents (train + held-out): {empty}")
    return docs


def fingerprint(config: DataConfig) -> str:
    """What the cached build depends on: the config, the Python stdlib, the input files."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields.pop("cache_dir")
    inputs: list[object] = [
        (str(p), p.stat().st_size, p.stat().st_mtime_ns)
        for corpus in config.user_corpora
        for p in corpus.paths
    ]
    if config.tokenizer_path is not None:
        inputs.append(hashlib.sha256((config.tokenizer_path / FILENAME).read_bytes()).hexdigest())
    stdlib = sysconfig.get_paths()["stdlib"]
    blob = repr((FORMAT, fields, inputs, platform.python_version(), stdlib))
    return hashlib.sha256(blob.encode()).hexdigest()


def build_dataset(config: DataConfig) -> Dataset:
    """Load the cached build for this config, or build (and cache) it."""
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    with (config.cache_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _load(config) or _build(config)


def _stream_path(cache_dir: Path, domain: str, split: str) -> Path:
    return cache_dir / "tokens" / f"{domain}.{split}.npy"


def _load(config: DataConfig) -> Dataset | None:
    try:
        manifest = json.loads((config.cache_dir / "manifest.json").read_text())
        if manifest.get("fingerprint") != fingerprint(config):
            return None
        streams = {
            (d, s): np.load(_stream_path(config.cache_dir, d, s))
            for d in manifest["domains"]
            for s in SPLITS
        }
        dataset = Dataset(BPETokenizer.load(config.cache_dir), streams, manifest)
    except (OSError, ValueError, KeyError):
        return None
    return dataset if dataset.digest == manifest.get("digest") else None


def _build(config: DataConfig) -> Dataset:
    started = time.perf_counter()
    splits = {
        d: split_documents(d, docs, config.heldout_fraction)
        for d, docs in collect_documents(config).items()
    }
    if config.tokenizer_path is not None:
        tokenizer = BPETokenizer.load(config.tokenizer_path)
    else:
        texts = (text for d in sorted(splits) for _, text in splits[d]["train"])
        tokenizer = BPETokenizer.train(texts, vocab_size=config.vocab_size)
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    streams: dict[tuple[str, str], Stream] = {}
    for domain, parts in splits.items():
        for split in SPLITS:
            encoded = tokenizer.encode_batch([text for _, text in parts[split]])
            streams[domain, split] = np.concatenate(
                [np.asarray([*ids, tokenizer.eos_id], dtype=dtype) for ids in encoded]
            )
            path = _stream_path(config.cache_dir, domain, split)
            path.parent.mkdir(exist_ok=True)
            np.save(path, streams[domain, split])
    tokenizer.save(config.cache_dir)
    manifest = {
        "format": FORMAT,
        "fingerprint": fingerprint(config),
        "domains": sorted(splits),
        "documents": {d: {s: len(p[s]) for s in SPLITS} for d, p in splits.items()},
        "tokens": {f"{d}.{s}": int(a.size) for (d, s), a in sorted(streams.items())},
        "vocab_size": tokenizer.vocab_size,
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    dataset = Dataset(tokenizer, streams, manifest)
    manifest["digest"] = dataset.digest
    tmp = config.cache_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(config.cache_dir / "manifest.json")
    return dataset
