"""A database outage for one test, without stopping the machine's PostgreSQL (which other tests, or other test runs
on the machine, may be using): ``DatabaseLink`` forwards a local port to the server, and ``cut()`` does what a
stopped server or a lost network does to a client (open connections closed, new ones refused) until ``mend()``.
"""
from __future__ import annotations

import socket
import threading

from sqlalchemy.engine import make_url


class DatabaseLink:
    """``url`` reaches the database at ``target`` through this process; ``cut()``/``mend()`` take it down and up."""

    def __init__(self, target: str) -> None:
        self.target = make_url(target)
        self.listener: socket.socket | None = None
        self.port = 0
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.mend()
        self.url = self.target.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def mend(self) -> None:
        """Accept connections again, on the same port."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener, self.port = listener, listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close every open connection and refuse new ones."""
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.open.clear()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                server = socket.create_connection((self.target.host, self.target.port or 5432), timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self.lock:
                if self.listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with self.lock:  # one side ended: the whole connection ends, as with a real server
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                if sock in self.open:
                    self.open.remove(sock)
                    sock.close()
