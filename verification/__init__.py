"""Audits by randomized recomputation, as pure functions (no networking).

`selection` (commit/reveal audit draws), `replay` (re-running a miner's window from its receipts),
`compare` (calibrated tolerances; `python -m verification.calibrate` measures them), `checkpoints`
(stage state for an audit), `verdict` (signed-ready verdicts and the judging rules), `scores`
(the IOTA score book).
"""
