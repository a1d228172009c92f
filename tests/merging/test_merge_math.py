"""The merge's pure parts: layout, seeded plan, reductions, outer step, quantized formats."""

import pytest
import torch

from training.merge import quantize
from training.merge.layout import Layout
from training.merge.plan import make_plan
from training.merge.reduce import Reduction, outer_step, reduce, weighted_mean


def test_layout_round_trips_and_checks_names() -> None:
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.tensor([7.0])}
    layout = Layout.of_tensors(tensors)
    assert [e.name for e in layout.entries] == ["a", "b"] and layout.size == 7
    vec = layout.flatten({**tensors, "optimizer/a/step": torch.tensor(3.0)})
    assert vec.tolist() == [7.0, 0, 1, 2, 3, 4, 5]
    back = layout.unflatten(vec)
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    with pytest.raises(ValueError, match="lacks parameter b"):
        layout.flatten({"a": torch.tensor([1.0])})
    with pytest.raises(ValueError, match="shape"):
        layout.flatten({"a": torch.tensor([1.0, 2.0]), "b": torch.zeros(2, 3)})


@pytest.mark.parametrize("n", [1, 2, 3, 4, 8])
def test_plan_is_pure_covers_the_vector_and_balances_owners(n: int) -> None:
    members = [f"peer{i}" for i in range(n)]
    plan = make_plan("run", 3, 1, members, 1000)
    assert plan == make_plan("run", 3, 1, list(reversed(members)), 1000)  # order-free
    assert plan.partitions[0].start == 0 and plan.partitions[-1].end == 1000
    assert all(a.end == b.start for a, b in zip(plan.partitions, plan.partitions[1:], strict=False))
    for p in plan.partitions:
        assert sorted(p.candidates) == sorted(members)  # every member is a fallback
        assert len(set(p.owners)) == min(n, 2)
    owned = {m: len(plan.owned_by(m)) for m in members}
    assert set(owned.values()) == {min(n, 2)}, owned
    other = make_plan("run", 4, 1, members, 1000)
    if n > 2:
        assert [p.owners for p in other.partitions] != [p.owners for p in plan.partitions]


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_plan_traffic_is_three_n_minus_four_partition_copies(n: int) -> None:
    """Per partition: n - 2 members send to both owners and each owner to the other (2n - 2
    contributions), and the n - 2 non-owners take its bytes from one owner."""
    members = [f"peer{i}" for i in range(n)]
    plan = make_plan("run", 5, 0, members, 1200)
    sent = {m: plan.bytes_sent(m, lambda k: 4 * k) for m in members}
    assert sum(sent.values()) == 4 * 1200 * (3 * n - 4)
    for m in members:
        taken = [plan.source(m, p) for p in plan.partitions]
        assert all(s in p.owners for s, p in zip(taken, plan.partitions, strict=True))
        assert all(s == m for s, p in zip(taken, plan.partitions, strict=True) if m in p.owners)
    assert max(sent.values()) - min(sent.values()) <= 4 * n  # alike, but for rounding


def test_plan_refuses_bad_membership() -> None:
    with pytest.raises(ValueError):
        make_plan("run", 0, 0, ["a", "a"], 10)
    with pytest.raises(ValueError):
        make_plan("run", 0, 0, [], 10)


def test_weighted_mean_is_exact_and_order_fixed() -> None:
    xs = [torch.randn(100, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    weights = [1.0, 3.0, 0.0, 2.0]
    got = weighted_mean(xs, weights)
    ref = (xs[0].double() * 1 + xs[1].double() * 3 + xs[3].double() * 2) / 6
    assert torch.equal(got, ref.float())
    with pytest.raises(ValueError):
        weighted_mean(xs, [0, 0, 0, 0])
    with pytest.raises(ValueError):
        weighted_mean(xs, [1.0, float("nan"), 1.0, 1.0])


@pytest.mark.parametrize("robust", ["trimmed", "clip"])
def test_robust_reductions_resist_one_poisoned_contribution(robust: str) -> None:
    g = torch.Generator().manual_seed(0)
    honest = [torch.ones(50) + 0.01 * torch.randn(50, generator=g) for _ in range(4)]
    poisoned = [*honest, torch.full((50,), 1e4)]
    how = Reduction(robust=robust, trim=1, tau=0.5)  # type: ignore[arg-type]
    robust_out = reduce(poisoned, [1.0] * 5, how)
    plain = reduce(poisoned, [1.0] * 5, Reduction())
    assert (plain - 1).abs().max() > 1000  # the plain mean is dragged away
    assert (robust_out - 1).abs().max() < 0.2, robust_out


def test_outer_step_is_nesterov_and_lr1_mu0_is_the_mean() -> None:
    start, mean, m = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 2.5]), torch.tensor([0.1, 0.0])
    new, m2 = outer_step(start, mean, m, lr=0.7, mu=0.9)
    delta = start.double() - mean.double()
    mm = 0.9 * m.double() + delta
    assert torch.allclose(m2, mm.float()) and torch.allclose(
        new, (start.double() - 0.7 * (delta + 0.9 * mm)).float()
    )
    same, _ = outer_step(start, mean, torch.zeros(2), lr=1.0, mu=0.0)
    assert torch.equal(same, mean)


@pytest.mark.parametrize("fmt", quantize.FORMATS)
def test_formats_stay_within_their_stated_error(fmt: quantize.Format) -> None:
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1)) * 0.01
    x[7] = 3.0  # one large value in a block
    data = quantize.encode(fmt, x)
    assert len(data) == quantize.encoded_size(fmt, x.numel())
    back = quantize.decode(fmt, data, x.numel())
    err = (back - x).abs()
    assert bool((err <= quantize.bound(fmt, x)).all())
    if fmt == "fp32":
        assert torch.equal(back, x)
    else:
        assert float(err.max()) > 0
    with pytest.raises(ValueError):
        quantize.decode(fmt, data[:-1], x.numel())


def test_error_feedback_delivers_what_rounding_delayed() -> None:
    fb = quantize.ErrorFeedback()
    delta = torch.full((300,), 1e-3)
    delta[0] = 1.0  # int8 rounds the small values of this block to 0
    sent_total = torch.zeros(300)
    for _ in range(20):
        _, sent = fb.encode("int8", delta)
        sent_total += sent
    no_feedback = quantize.decode("int8", quantize.encode("int8", delta), 300) * 20
    # Without feedback the small updates are lost for good; with it they arrive (delayed).
    assert float((no_feedback - 20 * delta).abs()[1:256].max()) == pytest.approx(0.02, rel=1e-3)
    assert float((sent_total - 20 * delta).abs().max()) < 1.0 / 254 + 1e-6
