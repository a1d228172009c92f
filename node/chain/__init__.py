"""The chain a subnet's incentives live on: records and errors every chain client returns, and
the devnet chain's ledger (`ledger`), which keeps one subnet in LMDB the way subtensor does and
runs a Yuma consensus epoch (`verification.yuma`) every tempo."""
