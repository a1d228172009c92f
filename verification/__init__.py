"""Receipts, audit selection, replay and comparison, scoring and weights."""
