"""check_finite: NaN and Inf anywhere refused with NON_FINITE; large finite tensors pass."""

from __future__ import annotations

import pytest
import torch

from p2p.refusals import Reason, Refused
from p2p.tensors import TensorPayload, check_finite


def payload(t: torch.Tensor) -> TensorPayload:
    return TensorPayload.from_torch(t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), float("-inf"), (float("inf"), float("-inf"))]
)
def test_any_non_finite_element_is_refused(dtype: torch.dtype, bad: object) -> None:
    t = torch.randn(4, 33, 7).to(dtype)
    values = bad if isinstance(bad, tuple) else (bad,)
    for i, value in enumerate(values):  # an Inf and a -Inf together sum to NaN
        t.view(-1)[17 + 40 * i] = value
    with pytest.raises(Refused) as refused:
        check_finite(payload(t))
    assert refused.value.reason is Reason.NON_FINITE


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_finite_values_whose_sum_overflows_pass(dtype: torch.dtype) -> None:
    big = torch.finfo(dtype).max
    t = torch.full((64,), big, dtype=dtype)
    assert not torch.isfinite(t.sum())  # the fast check alone would refuse it
    check_finite(payload(t))
    check_finite(payload(torch.randn(8, 16).to(dtype)))
    check_finite(payload(torch.tensor([-big, big, 0.0, -0.0], dtype=dtype)))
    check_finite(payload(torch.tensor([1, 2], dtype=torch.int64)))  # not a float: not checked
