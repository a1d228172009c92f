"""The orchestrator role's moving parts: membership, work dispatch, receipts, window close, eval."""
