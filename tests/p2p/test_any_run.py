"""A subnet-wide node (the chain) serves the peers of every run, each in its own run, while
the nodes of two runs keep refusing each other."""

import pytest

from p2p.admission import PeerSession
from p2p.memory_transport import MemoryNetwork
from p2p.messages import Ack, Heartbeat, Message
from p2p.refusals import Reason, Refused
from tests.p2p.endpoint_kit import allow, make_hotkey, make_node


@pytest.fixture(scope="module")
def hotkeys(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("wallets")
    return [make_hotkey(path, f"r{i}") for i in range(3)]


async def test_a_subnet_wide_node_answers_every_run_in_its_own(hotkeys) -> None:
    network = MemoryNetwork()
    policy = allow(*hotkeys)
    chain = make_node(network, hotkeys[0], policy, roles=("chain",), run="chain", any_run=True)
    a = make_node(network, hotkeys[1], policy, run="run-a")
    b = make_node(network, hotkeys[2], policy, run="run-b")
    beats: list[str] = []

    async def on_beat(msg: Heartbeat, peer: PeerSession) -> Message:
        beats.append(peer.peer_id)
        return Ack()

    for node in (chain, a, b):
        node.endpoint.register(Heartbeat, on_beat)
    for node in (a, b):  # each run's node is admitted and answered in its own run
        assert isinstance(await node.endpoint.request(chain.key.peer_id, Heartbeat()), Ack)
    assert chain.endpoint.peer_runs == {a.key.peer_id: "run-a", b.key.peer_id: "run-b"}
    for node in (a, b):  # and the chain's own requests go out in the peer's run
        assert isinstance(await chain.endpoint.request(node.key.peer_id, Heartbeat()), Ack)
    assert beats.count(chain.key.peer_id) == 2
    with pytest.raises(Refused) as refused:  # two runs stay apart: the refusal says why
        await a.endpoint.request(b.key.peer_id, Heartbeat())
    assert refused.value.reason is Reason.WRONG_RUN
    assert b.endpoint.refusals.counts["wrong_run"] >= 1
    for i in range(3000):  # strangers' Hellos: the runs remembered stay bounded
        chain.endpoint.note_run(f"stranger-{i}", "run-x")
    assert len(chain.endpoint.peer_runs) <= 4 * 256 + 1
    assert chain.endpoint.peer_runs[a.key.peer_id] == "run-a"  # admitted peers are kept
