"""The validator's `/status` quality section stays strict JSON when a screen broke the model."""

import json
import math

from node.roles.validator import _finite


def test_a_broken_screen_is_shown_as_null() -> None:
    screens = {"m": {"loss_before": 5.0, "loss_after": math.inf, "missing": False, "stage": 1}}
    shown = _finite(screens)
    assert shown == {"m": {"loss_before": 5.0, "loss_after": None, "missing": False, "stage": 1}}
    json.dumps(shown, allow_nan=False)  # raises on inf or nan
