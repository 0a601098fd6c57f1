"""The adbd side of ADB: messages (protocol), the transport and its streams, the services
(shell, exec, sync, tcp forwarding) a stream opens."""

from .protocol import Message, ProtocolError
from .transport import Stream, StreamClosed, TransportServer

__all__ = ["Message", "ProtocolError", "Stream", "StreamClosed", "TransportServer"]
