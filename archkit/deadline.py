"""A deadline on a whole HTTP transfer, headers included.

urllib's ``timeout`` bounds each socket operation, not the transfer: a server that sends its status
line and headers a byte at a time keeps every read under it and holds the download for as long as it
likes. Here a timer shuts the connection's socket down when the deadline passes, which ends whatever
read is blocked on it (the TLS handshake, ``urlopen``'s headers or the body loop); the caller then sees
``expired``. The deadline holds a duplicate of each socket's descriptor: ``shutdown`` acts on the
connection itself, whoever else holds it (a TLS socket takes over the plain one's descriptor).
"""

from __future__ import annotations

import http.client
import math
import socket
import threading
import urllib.request
from typing import Any


class Deadline:
    """Shuts down the sockets it watches ``seconds`` after entering; ``expired`` says whether it did."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        finite = math.isfinite(seconds) and seconds < threading.TIMEOUT_MAX  # inf (or past what a timer takes): none
        self._timer = threading.Timer(seconds, self._expire) if finite else None
        if self._timer is not None:
            self._timer.daemon = True

    def watch(self, sock: socket.socket) -> socket.socket:
        """Watch ``sock``'s connection (shut down at once if the deadline has passed); returns ``sock``."""
        with self._lock:
            self._sockets.append(sock.dup())
            if self.expired:
                _shut(self._sockets[-1])
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self) -> "Deadline":
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()  # the duplicates only: their owners close the connections
            self._sockets.clear()

    def opener(self, *handlers: Any) -> urllib.request.OpenerDirector:
        """``urllib.request.build_opener(*handlers)`` whose HTTP(S) connections this deadline watches."""
        deadline = self

        def watched(cls: type) -> type:
            class Connection(cls):  # type: ignore[misc, valid-type]
                def __init__(self, *args: Any, **kwargs: Any) -> None:
                    super().__init__(*args, **kwargs)
                    self._create_connection = lambda *a, **k: deadline.watch(socket.create_connection(*a, **k))

            return Connection

        plain, tls = watched(http.client.HTTPConnection), watched(http.client.HTTPSConnection)

        class Plain(urllib.request.HTTPHandler):
            def http_open(self, req: Any) -> Any:
                return self.do_open(plain, req)

        class Secure(urllib.request.HTTPSHandler):
            def https_open(self, req: Any) -> Any:
                return self.do_open(tls, req, context=self._context)

        return urllib.request.build_opener(Plain, Secure, *handlers)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer closed it already
