"""`tessera devnet`: a whole network on one machine, as separate processes on loopback.

`command` is the CLI, `net` plans and starts the nodes, `procs` runs one node process, `train`
follows a training run, `progress` and `summary` show and record it.
"""
