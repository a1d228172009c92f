"""A stage's butterfly all-reduce among its miners at each window end (the network side).

`session` holds one member's part of one merge and serves it to the other members; `exchange`
fetches partitions from peers; `runner` drives a merge from this member's side; the miner's
MergeStart handler is `node.mining.merge_handler`, the orchestrator's side
`node.run_control.merger`.
"""
