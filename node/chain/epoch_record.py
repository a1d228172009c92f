"""An epoch record of the devnet chain: the Yuma epoch's inputs and result as plain lists (what
LMDB keeps), and the inputs back as `EpochInputs`, so anyone can run the epoch again and compare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from verification.yuma import EpochInputs, EpochResult

RESULT_FIELDS = ("consensus", "trust", "validator_trust", "incentive", "dividends", "emission")


def pack_inputs(x: EpochInputs) -> dict[str, Any]:
    arrays = ("stake", "weights", "bonds", "validator_permit", "last_update",
              "block_at_registration")  # fmt: skip
    out: dict[str, Any] = {name: np.asarray(getattr(x, name)).tolist() for name in arrays}
    scalars = ("current_block", "tempo", "activity_cutoff", "kappa", "bonds_moving_average",
               "bonds_penalty", "max_allowed_validators", "last_epoch_block", "yuma3",
               "liquid_alpha", "emission")  # fmt: skip
    out.update({name: getattr(x, name) for name in scalars})
    return out


def unpack_inputs(record: Mapping[str, Any]) -> EpochInputs:
    """An epoch record's inputs as `EpochInputs` (to run `verification.yuma.epoch` again)."""
    x = dict(record)
    return EpochInputs(
        stake=np.array(x.pop("stake"), dtype=np.float64),
        weights=np.array(x.pop("weights"), dtype=np.float64).reshape(len(record["stake"]), -1),
        bonds=np.array(x.pop("bonds"), dtype=np.float64).reshape(len(record["stake"]), -1),
        validator_permit=np.array(x.pop("validator_permit"), dtype=bool),
        last_update=np.array(x.pop("last_update"), dtype=np.int64),
        block_at_registration=np.array(x.pop("block_at_registration"), dtype=np.int64),
        **x,
    )


def pack_result(result: EpochResult) -> dict[str, Any]:
    names = (*RESULT_FIELDS, "server_emission", "validator_emission", "new_validator_permit")
    return {name: np.asarray(getattr(result, name)).tolist() for name in names}
