"""The tessera node daemon: CLI, config, Service lifecycle, role components and status surfaces."""

__version__ = "0.1.0"
