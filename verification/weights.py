"""A validator's scores turned into the weights it sets on the chain: per miner hotkey, mapped
to uids through the metagraph, normalised, with an optional owner burn.

`burn_fraction` of the weight goes to `burn_uid` (the subnet owner's uid, whose emission the
subnet burns) and the rest to the miners in proportion to their scores, as the subnet documents
describe; miners that are not registered (no uid) get nothing. All zero scores set no weights
(nothing to say), unless a burn is configured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def uid_weights(
    scores: Mapping[str, float],
    uids: Mapping[str, int],
    *,
    burn_uid: int | None = None,
    burn_fraction: float = 0.0,
) -> dict[int, float]:
    """Weights per uid (summing to 1, or empty) from `scores` per hotkey and `uids` per hotkey."""
    if not 0.0 <= burn_fraction <= 1.0 or (burn_fraction > 0 and burn_uid is None):
        raise ValueError("burn_fraction must be in [0, 1], with a burn_uid when above 0")
    by_uid: dict[int, float] = {}
    for hotkey, score in scores.items():
        uid = uids.get(hotkey)
        if uid is not None and math.isfinite(score) and score > 0:
            by_uid[uid] = by_uid.get(uid, 0.0) + score
    total = sum(by_uid.values())
    out = {u: (1.0 - burn_fraction) * s / total for u, s in by_uid.items()} if total else {}
    if burn_fraction > 0 and burn_uid is not None:
        share = burn_fraction if total else 1.0
        out[burn_uid] = out.get(burn_uid, 0.0) + share
    return {u: w for u, w in sorted(out.items()) if w > 0}
