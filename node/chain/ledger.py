"""The devnet chain's state for one subnet, in LMDB, under subtensor's rules.

It keeps uids (registration, and replacement of the lowest-emission uid outside the immunity
period when the subnet is full), stake per hotkey, validator permits, served endpoints, weights
(registered sender with a permit, rate limit, min allowed, max weight limit; stored max-upscaled
to u16 as subtensor does), commit-reveal (a digest committed, revealed in the epoch
`reveal_period` epochs later), and every `tempo` blocks a Yuma consensus epoch
(`verification.yuma.epoch`) whose inputs and result are kept per epoch. A subnet has one or more
mechanisms (`Hyperparams.mechanism_split`, one per competition): each keeps its own weights,
bonds, commits and weight-setting blocks, runs its own epoch on its share of the emission, and
a neuron's figures are the mechanisms' summed (emission) or split-weighted (the rest). Blocks
are given by the caller (the chain role's clock); signatures are the caller's to check. Every
extrinsic runs in one write transaction and raises `ChainError` before it writes, so a refused
one changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import blake3
import msgpack
import numpy as np

from node.chain.epoch_record import RESULT_FIELDS, pack_inputs, pack_result
from node.chain.records import ChainError, ChainFault, Hyperparams, Metagraph, Neuron
from store import ReadTxn, Store, WriteTxn
from verification.yuma import EpochInputs, EpochResult, epoch

TABLE = "chain"
U16 = 65535
KEEP_EPOCHS = 32
"""Epoch records (inputs and result) kept for checking; older ones are dropped."""


def commit_digest(hotkey: str, weights: Mapping[int, float], salt: bytes) -> bytes:
    """What a commit publishes: a digest of the weights a reveal must match."""
    pairs = sorted((int(u), float(w)) for u, w in weights.items())
    return blake3.blake3(msgpack.packb([hotkey, pairs, salt])).digest()


class DevnetLedger:
    def __init__(self, store: Store, netuid: int, params: Hyperparams) -> None:
        self._store = store
        self.netuid = netuid
        self.params = params
        self._p = f"{netuid}/"

    # queries ------------------------------------------------------------------------------

    def metagraph(self, block: int) -> Metagraph:
        with self._store.read() as txn:
            rows = self._rows(txn)
            neurons = tuple(
                Neuron(
                    uid=uid, hotkey=r["hotkey"], coldkey=r["coldkey"],
                    stake=self._stake(txn, r["hotkey"]), validator_permit=r["permit"],
                    last_update=r["last_update"], block_at_registration=r["registered"],
                    endpoint=r["endpoint"], **{k: r.get(k, 0.0) for k in RESULT_FIELDS},
                )
                for uid, r in enumerate(rows)
            )  # fmt: skip
        return Metagraph(netuid=self.netuid, block=block, neurons=neurons)

    def weights(self, mechid: int = 0) -> dict[int, dict[int, int]]:
        """Per validator uid, the u16 weights it set (on mechanism `mechid`)."""
        with self._store.read() as txn:
            return {
                int(k.rsplit(b"/", 1)[1]): {int(u): int(w) for u, w in row.items()}
                for k, row in txn.scan(TABLE, self._p + _kind("w", mechid) + "/")
            }

    def epochs(self) -> list[dict[str, Any]]:
        with self._store.read() as txn:
            return [dict(row) for _, row in txn.scan(TABLE, self._p + "e/")]

    def last_epoch(self) -> int:
        with self._store.read() as txn:
            return int((txn.get(TABLE, self._p + "meta") or {}).get("last_epoch", 0))

    def totals(self) -> dict[str, dict[str, float]]:
        """Per hotkey, the server and validator emission it received over the run."""
        with self._store.read() as txn:
            return {
                k.decode().rsplit("/", 1)[1]: dict(row)
                for k, row in txn.scan(TABLE, self._p + "t/")
            }

    # extrinsics ---------------------------------------------------------------------------

    def take_nonce(self, hotkey: str, nonce: int) -> None:
        """Use up `nonce` of `hotkey`: each must be above the last one taken (no replays)."""
        key = self._p + f"n/{hotkey}"
        with self._store.write() as txn:
            last = txn.get(TABLE, key)
            if last is not None and nonce <= last:
                raise ChainError(ChainFault.BAD_NONCE, f"nonce {nonce} is not above {last}")
            txn.put(TABLE, key, nonce)

    def genesis(self, now: float, stakes: Mapping[str, float]) -> float:
        """The chain's start time, set (with the genesis stakes) on the first call only."""
        with self._store.write() as txn:
            meta = dict(txn.get(TABLE, self._p + "meta") or {"last_epoch": 0})
            if "genesis" not in meta:
                meta["genesis"] = now
                for hotkey, amount in stakes.items():
                    txn.put(TABLE, self._p + f"s/{hotkey}", float(amount))
                txn.put(TABLE, self._p + "meta", meta)
            return float(meta["genesis"])

    def register(self, hotkey: str, coldkey: str, block: int) -> int:
        with self._store.write() as txn:
            if txn.get(TABLE, self._p + f"h/{hotkey}") is not None:
                raise ChainError(ChainFault.ALREADY_REGISTERED, hotkey)
            rows = self._rows(txn)
            if len(rows) < self.params.max_allowed_uids:
                uid = len(rows)
            else:
                uid = self._prunable(rows, block)
                txn.delete(TABLE, self._p + f"h/{rows[uid]['hotkey']}")
                for kind in ("w", "b", "c"):
                    for m in range(len(self.params.mechanism_split)):
                        txn.delete(TABLE, self._p + f"{_kind(kind, m)}/{uid:05d}")
            if uid == len(rows):
                meta = dict(txn.get(TABLE, self._p + "meta") or {"last_epoch": 0})
                meta["n"] = uid + 1
                txn.put(TABLE, self._p + "meta", meta)
            row = {"hotkey": hotkey, "coldkey": coldkey, "registered": block,
                   "last_update": block, "endpoint": "", "permit": False}  # fmt: skip
            txn.put(TABLE, self._p + f"u/{uid:05d}", row)
            txn.put(TABLE, self._p + f"h/{hotkey}", uid)
        return uid

    def add_stake(self, hotkey: str, amount: float) -> None:
        if not amount > 0:
            raise ChainError(ChainFault.MALFORMED, f"stake {amount} must be > 0")
        with self._store.write() as txn:
            txn.put(TABLE, self._p + f"s/{hotkey}", self._stake(txn, hotkey) + float(amount))

    def serve(self, hotkey: str, endpoint: str) -> None:
        with self._store.write() as txn:
            uid, row = self._neuron(txn, hotkey)
            row["endpoint"] = endpoint
            txn.put(TABLE, self._p + f"u/{uid:05d}", row)

    def set_weights(
        self, hotkey: str, weights: Mapping[int, float], block: int, mechid: int = 0
    ) -> None:
        if self.params.commit_reveal:
            raise ChainError(ChainFault.WEIGHTS_REJECTED, "commit-reveal is on: commit, reveal")
        self._mechanism(mechid)
        with self._store.write() as txn:
            uid, row = self._neuron(txn, hotkey)
            last, was_set = _updated(row, mechid)
            if block - last < self.params.weights_rate_limit and was_set:
                raise ChainError(ChainFault.RATE_LIMITED, f"last set at block {last}")
            self._put_weights(txn, uid, row, weights, block, mechid)

    def commit_weights(self, hotkey: str, digest: bytes, block: int, mechid: int = 0) -> None:
        if len(digest) != 32:
            raise ChainError(ChainFault.MALFORMED, "a commit is a 32-byte digest")
        key = _kind("c", self._mechanism(mechid))
        with self._store.write() as txn:
            uid, _ = self._neuron(txn, hotkey)
            last = txn.get(TABLE, self._p + f"{key}/{uid:05d}")
            if last is not None and block - last["block"] < self.params.weights_rate_limit:
                raise ChainError(ChainFault.RATE_LIMITED, f"committed at block {last['block']}")
            txn.put(TABLE, self._p + f"{key}/{uid:05d}", {"digest": digest, "block": block})

    def reveal_weights(
        self, hotkey: str, weights: Mapping[int, float], salt: bytes, block: int, mechid: int = 0
    ) -> None:
        key = _kind("c", self._mechanism(mechid))
        with self._store.write() as txn:
            uid, row = self._neuron(txn, hotkey)
            commit = txn.get(TABLE, self._p + f"{key}/{uid:05d}")
            if commit is None:
                raise ChainError(ChainFault.REVEAL_REJECTED, "nothing committed")
            due = commit["block"] // self.params.tempo + self.params.reveal_period
            now = block // self.params.tempo
            if now != due:
                raise ChainError(
                    ChainFault.REVEAL_REJECTED,
                    f"reveal in epoch {due}, not {now}" + (" (expired)" if now > due else ""),
                )
            if commit_digest(hotkey, weights, salt) != commit["digest"]:
                raise ChainError(ChainFault.REVEAL_REJECTED, "weights do not match the commit")
            self._put_weights(txn, uid, row, weights, block, mechid)
            txn.delete(TABLE, self._p + f"{key}/{uid:05d}")

    # epoch --------------------------------------------------------------------------------

    def maybe_epoch(self, block: int) -> dict[str, Any] | None:
        """Run the Yuma epoch if `tempo` blocks passed since the last one; its record."""
        with self._store.write() as txn:
            meta = txn.get(TABLE, self._p + "meta") or {"last_epoch": 0}
            if block - meta["last_epoch"] < self.params.tempo:
                return None
            rows = self._rows(txn)
            split = self.params.mechanism_split
            runs = [
                self._inputs(txn, rows, block, meta["last_epoch"], m) for m in range(len(split))
            ]
            record: dict[str, Any] = {"block": block, "inputs": pack_inputs(runs[0])}
            if len(split) > 1:
                record["mechanisms"] = [{"inputs": pack_inputs(x)} for x in runs[1:]]
            if rows:
                results = [epoch(x) for x in runs]
                record["result"] = pack_result(results[0])
                for extra, result in zip(record.get("mechanisms", []), results[1:], strict=True):
                    extra["result"] = pack_result(result)
                self._apply(txn, rows, results)
            txn.put(TABLE, self._p + f"e/{block:012d}", record)
            meta["last_epoch"] = block
            txn.put(TABLE, self._p + "meta", meta)
            old = [k for k, _ in txn.scan(TABLE, self._p + "e/")][:-KEEP_EPOCHS]
            for key in old:
                txn.delete(TABLE, key)
        return record

    # internals ----------------------------------------------------------------------------

    def _rows(self, txn: ReadTxn) -> list[dict[str, Any]]:
        return [dict(r) for _, r in txn.scan(TABLE, self._p + "u/")]

    def _count(self, txn: ReadTxn) -> int:
        """How many uids the subnet has (kept in the meta row by `register`)."""
        meta = txn.get(TABLE, self._p + "meta") or {}
        return int(meta["n"]) if "n" in meta else len(self._rows(txn))

    def _stake(self, txn: ReadTxn, hotkey: str) -> float:
        return float(txn.get(TABLE, self._p + f"s/{hotkey}") or 0.0)

    def _neuron(self, txn: ReadTxn, hotkey: str) -> tuple[int, dict[str, Any]]:
        uid = txn.get(TABLE, self._p + f"h/{hotkey}")
        if uid is None:
            raise ChainError(ChainFault.NOT_REGISTERED, hotkey)
        row = txn.get(TABLE, self._p + f"u/{uid:05d}")
        if row is None:
            raise ChainError(ChainFault.NOT_REGISTERED, f"{hotkey}: uid {uid} has no record")
        return int(uid), dict(row)

    def _prunable(self, rows: list[dict[str, Any]], block: int) -> int:
        """The uid to replace: lowest emission, then earliest registration, then lowest uid,
        among those past their immunity period."""
        mortal = [
            (r.get("emission", 0.0), r["registered"], uid)
            for uid, r in enumerate(rows)
            if block - r["registered"] >= self.params.immunity_period
        ]
        if not mortal:
            raise ChainError(ChainFault.SUBNET_FULL, "every uid is within its immunity period")
        return min(mortal)[2]

    def _put_weights(
        self,
        txn: WriteTxn,
        uid: int,
        row: dict[str, Any],
        weights: Mapping[int, float],
        block: int,
        mechid: int = 0,
    ) -> None:
        if not row["permit"]:
            raise ChainError(ChainFault.WEIGHTS_REJECTED, "no validator permit")
        n = self._count(txn)
        uids = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        values = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        if ((uids < 0) | (uids >= n)).any() or not (np.isfinite(values) & (values >= 0)).all():
            raise ChainError(ChainFault.MALFORMED, "uids must exist and weights be finite, >= 0")
        keep = values > 0
        uids, values = uids[keep], values[keep]
        if len(uids) < min(self.params.min_allowed_weights, n):
            raise ChainError(
                ChainFault.WEIGHTS_REJECTED,
                f"{len(uids)} weights, fewer than the {self.params.min_allowed_weights} allowed",
            )
        top = float(values.max()) if len(values) else 1.0
        if len(values) and top / float(values.sum()) > self.params.max_weight_limit + 1e-9:
            raise ChainError(ChainFault.WEIGHTS_REJECTED, "a weight exceeds max_weight_limit")
        order = np.argsort(uids)
        scaled = np.rint(values[order] / top * U16).astype(np.int64)
        stored = dict(zip(map(str, uids[order].tolist()), scaled.tolist(), strict=True))
        txn.put(TABLE, self._p + f"{_kind('w', mechid)}/{uid:05d}", stored)
        if mechid == 0:
            row["last_update"], row["set"] = block, True
        else:
            row.setdefault("updates", {})[str(mechid)] = block
        txn.put(TABLE, self._p + f"u/{uid:05d}", row)

    def _mechanism(self, mechid: int) -> int:
        if not 0 <= mechid < len(self.params.mechanism_split):
            count = len(self.params.mechanism_split)
            raise ChainError(ChainFault.MALFORMED, f"mechanism {mechid}: the subnet has {count}")
        return mechid

    def _inputs(
        self, txn: ReadTxn, rows: list[dict[str, Any]], block: int, last_epoch: int, mechid: int
    ) -> EpochInputs:
        n = len(rows)
        weights, bonds = np.zeros((n, n)), np.zeros((n, n))
        w_key, b_key = _kind("w", mechid), _kind("b", mechid)
        for i in range(n):
            for u, w in (txn.get(TABLE, self._p + f"{w_key}/{i:05d}") or {}).items():
                if int(u) < n:
                    weights[i, int(u)] = w
            for u, b in (txn.get(TABLE, self._p + f"{b_key}/{i:05d}") or {}).items():
                if int(u) < n:
                    bonds[i, int(u)] = b
        p = self.params
        return EpochInputs(
            stake=np.array([self._stake(txn, r["hotkey"]) for r in rows], dtype=np.float64),
            weights=weights,
            bonds=bonds,
            validator_permit=np.array([r["permit"] for r in rows], dtype=bool),
            last_update=np.array([_updated(r, mechid)[0] for r in rows], dtype=np.int64),
            block_at_registration=np.array([r["registered"] for r in rows], dtype=np.int64),
            current_block=block, tempo=p.tempo, activity_cutoff=p.activity_cutoff,
            kappa=p.kappa, bonds_moving_average=p.bonds_moving_avg,
            bonds_penalty=p.bonds_penalty, max_allowed_validators=p.max_allowed_validators,
            last_epoch_block=last_epoch or None, yuma3=p.yuma3, liquid_alpha=p.liquid_alpha,
            emission=p.emission_per_block * (block - last_epoch) * p.mechanism_split[mechid],
        )  # fmt: skip

    def _apply(self, txn: WriteTxn, rows: list[dict[str, Any]], results: list[EpochResult]) -> None:
        """Each mechanism's result: its bonds; emission summed over the mechanisms, the other
        figures weighted by the split; validator permits from the first (stake decides them
        alike in every mechanism)."""
        split = self.params.mechanism_split
        for uid, row in enumerate(rows):
            row["permit"] = bool(results[0].new_validator_permit[uid])
            for name in RESULT_FIELDS:
                values = [float(getattr(r, name)[uid]) for r in results]
                summed = name == "emission" or len(results) == 1
                row[name] = (
                    sum(values)
                    if summed
                    else sum(v * w for v, w in zip(values, split, strict=True))
                )
            txn.put(TABLE, self._p + f"u/{uid:05d}", row)
            key = self._p + f"t/{row['hotkey']}"
            total = dict(txn.get(TABLE, key) or {"server": 0.0, "validator": 0.0})
            for m, result in enumerate(results):
                bonds = {str(j): float(b) for j, b in enumerate(result.bonds[uid]) if b > 0}
                txn.put(TABLE, self._p + f"{_kind('b', m)}/{uid:05d}", bonds)
                total["server"] += float(result.server_emission[uid])
                total["validator"] += float(result.validator_emission[uid])
            txn.put(TABLE, key, total)


def _kind(kind: str, mechid: int) -> str:
    """The key prefix of a per-mechanism record kind (mechanism 0 keeps the plain one)."""
    return kind if mechid == 0 else f"{kind}{mechid}"


def _updated(row: Mapping[str, Any], mechid: int) -> tuple[int, bool]:
    """(block of the last weights on `mechid`, whether any were set); registration if none."""
    if mechid == 0:
        return int(row["last_update"]), bool(row.get("set"))
    block = row.get("updates", {}).get(str(mechid))
    return (int(row["registered"]), False) if block is None else (int(block), True)
