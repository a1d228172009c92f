"""Writer for the crash test: commits related records in a loop until it is killed.

Each transaction adds record n to "runs", a blob for it, and sets meta "n" to n + 1; every
few commits a GC removes expired blobs. After each commit it prints n + 1 on stdout.
"""

import sys
from pathlib import Path

from store import BlobStore, Store, StoreConfig

BLOB_RETAIN_S = 3.0


def record(n: int) -> dict[str, object]:
    return {"i": n, "pad": "x" * (1000 + 37 * (n % 50))}


def blob(n: int) -> bytes:
    return f"blob {n};".encode() * (20 + n % 90)


def main(path: Path) -> None:
    store = Store.open(path, StoreConfig(map_size_mib=64, sync=True))
    blobs = BlobStore(store)
    with store.read() as txn:
        n = txn.get("meta", "n") or 0
    while True:
        with store.write() as txn:
            txn.put("runs", f"{n:08d}", record(n))
            blobs.put(blob(n), now=float(n), retain_s=BLOB_RETAIN_S, txn=txn)
            if n % 7 == 0:
                blobs.pin(blobs.put(blob(n), txn=txn), txn=txn)
            txn.put("meta", "n", n + 1)
        n += 1
        if n % 4 == 0:
            blobs.gc(now=float(n))
        print(n, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
