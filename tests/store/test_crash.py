"""Crash consistency: SIGKILL a real writer process mid-loop, then check every invariant."""

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import BlobStore, ReadTxn, Store, StoreConfig
from store.blobs import BLOBS_TABLE, EXPIRY_PREFIX, INDEX_TABLE, META_PREFIX, TOTAL_KEY
from tests.store.crash_child import record

REPO = Path(__file__).parents[2]
CONFIG = StoreConfig(map_size_mib=64, sync=True)


def _run_and_kill(path: Path, commits: int, extra_delay_s: float) -> int:
    """Starts the writer, SIGKILLs it after `commits` acknowledged commits; returns the last."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.store.crash_child", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert child.stdout is not None and child.stderr is not None
    seen: list[int] = []
    buffer = b""
    deadline = time.monotonic() + 20
    try:
        while len(seen) < commits:
            ready, _, _ = select.select([child.stdout], [], [], deadline - time.monotonic())
            chunk = os.read(child.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                raise AssertionError(f"writer stopped early: {child.stderr.read().decode()}")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            seen.extend(int(line) for line in lines)
        time.sleep(extra_delay_s)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
        rest = child.stdout.read()
        seen.extend(int(line) for line in (buffer + rest).split(b"\n") if line.strip())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    return seen[-1]


def _check_invariants(store: Store, acknowledged: int) -> int:
    with store.read() as txn:
        n = txn.get("meta", "n")
        assert isinstance(n, int)
        # Every acknowledged commit survived; at most one more (killed before its print).
        assert acknowledged <= n <= acknowledged + 1
        runs = list(txn.scan("runs"))
        assert [key for key, _ in runs] == [f"{i:08d}".encode() for i in range(n)]
        assert all(value == record(i) for i, (_, value) in enumerate(runs))
        _check_blob_index(txn)
    return n


def _check_blob_index(txn: ReadTxn) -> None:
    metas = {key[1:]: value for key, value in txn.scan(INDEX_TABLE, META_PREFIX)}
    sizes = {}
    for digest, (size, expires_ms, pinned, *_) in metas.items():
        data = txn.get_raw(BLOBS_TABLE, digest)
        assert data is not None, f"index entry for {digest!r} points at a missing blob"
        assert hashlib.sha256(data).hexdigest().encode() == digest
        assert size == len(data)
        expiry_key = EXPIRY_PREFIX + expires_ms.to_bytes(8, "big") + digest
        assert (txn.get_raw(INDEX_TABLE, expiry_key) is not None) == (not pinned)
        sizes[digest] = size
    assert txn.count(BLOBS_TABLE) == len(metas), "a blob has no index entry"
    expiry_digests = [key[9:] for key, _ in txn.scan(INDEX_TABLE, EXPIRY_PREFIX)]
    assert sorted(expiry_digests) == sorted(d for d, m in metas.items() if not m[2])
    assert txn.get(INDEX_TABLE, TOTAL_KEY) == sum(sizes.values())
    assert any(meta[2] for meta in metas.values())


@pytest.mark.integration
def test_sigkill_mid_write_leaves_a_consistent_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    previous = 0
    for commits, delay in [(5, 0.0), (40, 0.003), (150, 0.011)]:
        acknowledged = _run_and_kill(path, commits, delay)
        assert acknowledged >= previous + commits
        with Store.open(path, CONFIG) as store:
            previous = _check_invariants(store, acknowledged)
            with store.write() as txn:
                txn.put("events", "after-crash", previous)
            BlobStore(store).put(b"post-crash blob")
            _check_invariants_after_write(store, previous)


def _check_invariants_after_write(store: Store, n: int) -> None:
    with store.read() as txn:
        assert txn.get("events", "after-crash") == n
        assert txn.get("meta", "n") == n
