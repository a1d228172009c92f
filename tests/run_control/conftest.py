"""Node fixtures shared with the audit tests: real nodes in one event loop."""

from tests.auditing.conftest import audit_data, audit_hotkeys, start_node

__all__ = ["audit_data", "audit_hotkeys", "start_node"]
