"""Commit/reveal audit draws: deterministic from the revealed secret, unpredictable without it,
checkable by anyone, and uniform."""

import pytest

from verification.selection import (
    AuditDraw,
    Stream,
    commitment,
    draw,
    new_secret,
    verify_reveal,
)

MINERS = [(f"peer-{i:02d}", 10 + i) for i in range(10)]


def secret(i: int) -> bytes:
    return i.to_bytes(32, "big")


def test_commit_then_reveal() -> None:
    s = new_secret()
    c = commitment("validator-a", 7, s)
    assert len(c) == 32 and verify_reveal(c, "validator-a", 7, s)
    assert not verify_reveal(c, "validator-a", 7, new_secret())  # another secret
    assert not verify_reveal(c, "validator-a", 8, s)  # another window
    assert not verify_reveal(c, "validator-b", 7, s)  # another validator
    assert not verify_reveal(c, "validator-a", 7, s[:31])  # malformed
    assert not verify_reveal(c[:31] + bytes([c[31] ^ 1]), "validator-a", 7, s)


def test_commitment_framing_is_unambiguous() -> None:
    s = secret(1)
    assert commitment("ab", 1, s) != commitment("a", 1, s)
    with pytest.raises(ValueError):
        commitment("v", 1, b"short")
    with pytest.raises(ValueError):
        commitment("v", -1, s)


def test_same_inputs_same_draw_in_any_order() -> None:
    a = draw(secret(3), 5, MINERS, miners_per_window=3, units_per_miner=4)
    b = draw(secret(3), 5, list(reversed(MINERS)), miners_per_window=3, units_per_miner=4)
    assert a == b and isinstance(a, AuditDraw) and a.window == 5
    assert len(a.miners) == 3 and a.peers() == sorted(a.peers())
    counts = dict(MINERS)
    for m in a.miners:
        assert len(m.units) == 4 == len(set(m.units))
        assert list(m.units) == sorted(m.units) and all(0 <= u < counts[m.peer_id] for u in m.units)


def test_different_secrets_or_windows_draw_differently() -> None:
    draws = {draw(secret(i), 5, MINERS, miners_per_window=3, units_per_miner=4) for i in range(50)}
    assert len(draws) >= 45
    other = {draw(secret(1), w, MINERS, miners_per_window=3, units_per_miner=4) for w in range(50)}
    assert len(other) >= 45


def test_a_miners_units_do_not_depend_on_who_else_is_listed() -> None:
    full = draw(secret(9), 1, MINERS, miners_per_window=10, units_per_miner=3)
    alone = draw(secret(9), 1, MINERS[4:5], miners_per_window=1, units_per_miner=3)
    assert alone.miners[0] == next(m for m in full.miners if m.peer_id == MINERS[4][0])


def test_edge_cases() -> None:
    everything = draw(secret(2), 0, MINERS, miners_per_window=99, units_per_miner=None)
    assert [m.peer_id for m in everything.miners] == [p for p, _ in MINERS]
    assert all(m.units == tuple(range(n)) for m, (_, n) in zip(everything.miners, MINERS,
                                                               strict=True))  # fmt: skip
    assert draw(secret(2), 0, [], miners_per_window=3, units_per_miner=2).miners == ()
    assert (
        draw(secret(2), 0, [("p", 0)], miners_per_window=1, units_per_miner=2).miners[0].units == ()
    )
    assert draw(secret(2), 0, MINERS, miners_per_window=0, units_per_miner=2).miners == ()
    with pytest.raises(ValueError, match="twice"):
        draw(secret(2), 0, [("p", 1), ("p", 2)], miners_per_window=1, units_per_miner=1)
    with pytest.raises(ValueError):
        draw(b"short", 0, MINERS, miners_per_window=1, units_per_miner=1)
    with pytest.raises(ValueError):
        draw(secret(2), 0, MINERS, miners_per_window=-1, units_per_miner=1)


def chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)


def test_miner_choice_is_uniform() -> None:
    counts = [0] * len(MINERS)
    index = {p: i for i, (p, _) in enumerate(MINERS)}
    for i in range(3000):
        for m in draw(secret(i), 3, MINERS, miners_per_window=2, units_per_miner=1).miners:
            counts[index[m.peer_id]] += 1
    # 9 degrees of freedom: P(chi2 > 30) ~ 0.0004 for a uniform draw.
    assert chi_square(counts) < 30, counts


def test_unit_choice_is_uniform() -> None:
    counts = [0] * 16
    for i in range(2000):
        (m,) = draw(secret(i), 1, [("p", 16)], miners_per_window=1, units_per_miner=3).miners
        for u in m.units:
            counts[u] += 1
    # 15 degrees of freedom: P(chi2 > 40) ~ 0.0005.
    assert chi_square(counts) < 40, counts


def test_stream_bounds() -> None:
    stream = Stream(secret(1), 0, b"x")
    assert {stream.below(3) for _ in range(200)} == {0, 1, 2}
    assert stream.below(1) == 0
    assert sorted(stream.sample(5, 9)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        stream.below(0)
