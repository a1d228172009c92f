"""Tolerant comparison: metrics, thresholds, and misshapen or non-finite claims."""

import math

import pytest
import torch

from p2p.tensors import TensorPayload
from verification.compare import (
    DEFAULT_TOLERANCE,
    WEIGHTS_TOLERANCE,
    Tolerance,
    combined,
    compare,
    from_wire,
)


def test_identical_and_scaled() -> None:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    same = compare(x, x)
    assert (same.rel_l2, same.max_abs, same.finite, same.shape_ok, same.numel) == (
        0.0, 0.0, True, True, 32)  # fmt: skip
    assert same.cosine == pytest.approx(1.0)
    scaled = compare(1.01 * x, x)
    assert scaled.rel_l2 == pytest.approx(0.01, rel=1e-6)
    assert scaled.cosine == pytest.approx(1.0)
    assert not DEFAULT_TOLERANCE.accepts(scaled)  # cosine alone would let scaling through


def test_honest_noise_passes_and_faults_do_not() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 64, generator=g)
    noisy = x + 1e-6 * x.norm() / x.numel() ** 0.5 * torch.randn(x.shape, generator=g)
    assert DEFAULT_TOLERANCE.accepts(compare(noisy, x))
    for fake in (torch.zeros_like(x), torch.randn(x.shape, generator=g), -x, x.flip(0)):
        assert not DEFAULT_TOLERANCE.accepts(compare(fake, x))


def test_scalars_use_their_own_threshold() -> None:
    loss = torch.tensor([6.25])
    assert DEFAULT_TOLERANCE.accepts(compare(torch.tensor([6.25 * (1 + 1e-6)]), loss))
    assert not DEFAULT_TOLERANCE.accepts(compare(torch.tensor([6.25 * (1 + 1e-4)]), loss))


def test_non_finite_and_misshapen() -> None:
    x = torch.ones(3)
    nan = compare(torch.tensor([1.0, math.nan, 1.0]), x)
    assert not nan.finite and not DEFAULT_TOLERANCE.accepts(nan)
    inf = compare(torch.tensor([1.0, math.inf, 1.0]), x)
    assert not inf.finite
    wrong = compare(torch.ones(4), x)
    assert not wrong.shape_ok and not DEFAULT_TOLERANCE.accepts(wrong)


def test_zero_vectors() -> None:
    z = torch.zeros(5)
    assert compare(z, z).rel_l2 == 0.0 and compare(z, z).cosine == 1.0
    assert compare(torch.ones(5), z).rel_l2 == math.inf
    assert compare(z, torch.ones(5)).cosine == 0.0
    empty = compare(torch.empty(0), torch.empty(0))
    assert empty.rel_l2 == 0.0 and DEFAULT_TOLERANCE.accepts(empty)


def test_combined_and_wire() -> None:
    a, b = torch.ones(2, 2), torch.full((3,), 2.0)
    c = combined([(a, a), (b * 1.5, b)])
    assert c.numel == 7 and 0 < c.rel_l2 < 0.5
    assert not combined([(a, b)]).shape_ok
    assert combined([]).rel_l2 == 0.0
    t = torch.randn(2, 3)
    back = from_wire(TensorPayload.from_torch(t).data, torch.empty(2, 3))
    assert back is not None and torch.equal(back, t)
    assert from_wire(b"\0" * 8, torch.empty(2, 3)) is None


def test_tolerance_validation() -> None:
    with pytest.raises(ValueError):
        Tolerance(max_rel_l2=-1)
    with pytest.raises(ValueError):
        Tolerance(min_cosine=2)
    assert WEIGHTS_TOLERANCE.max_rel_l2 < DEFAULT_TOLERANCE.max_rel_l2
