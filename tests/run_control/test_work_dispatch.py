"""The orchestrator's `WorkDispatcher`: each miner gets its routes one at a time, in issue order
(it computes, and so accumulates gradients, in the order they arrive)."""

import asyncio
from collections import Counter
from pathlib import Path

from node.orchestration.routes import Hop, Route
from node.run_control.work import WorkDispatcher
from p2p.admission import PeerSession
from p2p.memory_transport import MemoryNetwork
from p2p.messages import Ack, Message, Work
from tests.mining.kit import wait_for
from tests.p2p.endpoint_kit import allow, make_hotkey, make_node


async def test_each_miner_gets_its_routes_one_at_a_time_in_issue_order(tmp_path: Path) -> None:
    network = MemoryNetwork()
    hot = [make_hotkey(tmp_path, f"w{i}") for i in range(3)]
    policy = allow(*hot)
    orch = make_node(network, hot[0], policy, roles=("orchestrator",))
    miners = [make_node(network, h, policy) for h in hot[1:]]
    ids = [m.key.peer_id for m in miners]
    arrived: dict[str, list[int]] = {peer: [] for peer in ids}
    open_now: Counter[str] = Counter()
    most: Counter[str] = Counter()

    async def on_work(msg: Work, peer: PeerSession) -> Message:
        me = msg.miners[0]
        arrived[me].append(msg.batch)
        open_now[me] += 1
        most[me] = max(most[me], open_now[me])
        await asyncio.sleep(0.01 * (8 - msg.batch))  # the earlier batch answers later
        open_now[me] -= 1
        return Ack()

    for miner in miners:
        miner.endpoint.register(Work, on_work)
    dispatcher = WorkDispatcher(orch.endpoint, timeout_s=5.0)
    routes = [
        Route(route_id=f"r{b}", window=0, batch=b, attempt=0, issued_at=0.0,
              hops=[Hop(miner=ids[b % 2]), Hop(miner="next")])
        for b in range(8)
    ]  # fmt: skip
    dispatcher.send(routes[:5])
    dispatcher.send(routes[5:])  # a later tick's routes queue behind the earlier ones
    try:
        await wait_for(lambda: dispatcher.counters["sent"] == 8, 10.0, "every route sent")
        assert arrived == {ids[0]: [0, 2, 4, 6], ids[1]: [1, 3, 5, 7]}
        assert most == {ids[0]: 1, ids[1]: 1}
    finally:
        await dispatcher.close()
