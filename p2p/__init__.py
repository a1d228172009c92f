"""Peer-to-peer layer: node identity, hotkey bindings and the libp2p host bridge."""
