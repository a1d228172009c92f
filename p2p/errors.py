"""Errors raised by the p2p layer; third-party (libp2p, crypto) errors are mapped onto these."""


class P2PError(Exception):
    """Base class of every error raised by the p2p package."""


class IdentityError(P2PError):
    """A node key file is missing, unreadable, malformed or has unsafe permissions."""


class BindingError(P2PError):
    """A hotkey binding does not verify, has expired, or names another peer."""


class HostError(P2PError):
    """The libp2p host failed to start, listen, dial or shut down."""


class DialError(HostError):
    """Connecting to a peer failed (bad address, unreachable, handshake refused, timeout)."""


class PeerExchangeError(HostError):
    """A peer exchange response was malformed or over the size limit."""
