"""A TCP forwarder on 127.0.0.1 that fault tests put between the app and PostgreSQL or
Redis, so that a dependency can be taken away without touching the shared servers.

    proxy = FaultProxy("127.0.0.1", 5432).start()   # proxy.port forwards to it
    FaultProxy("/run/pg", 5432)          # a Unix socket directory (PostgreSQL's .s.PGSQL.5432)
    FaultProxy("/run/redis.sock", None)  # or a Unix socket itself (the embedded servers')
    proxy.cut()      # every open connection reset, new ones refused (the server is down)
    proxy.hang()     # connections stay open and new ones are accepted, but no byte moves
    proxy.restore()  # forwarding again (after hang, the buffered bytes flow on)
"""
import contextlib
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_host: str, target_port: int | None):
        if target_host.startswith("/"):  # a Unix socket, or PostgreSQL's directory of them
            directory = not target_host.endswith(".sock") and "." not in target_host.rsplit("/", 1)[-1]
            self.target = f"{target_host}/.s.PGSQL.{target_port or 5432}" if directory else target_host
        else:
            self.target = (target_host, int(target_port))
        self.port = 0
        self.mode = "up"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._moving = threading.Event()
        self._moving.set()
        self._closed = False

    # Control.
    def start(self) -> "FaultProxy":
        self._listen()
        return self

    def cut(self) -> None:
        """Down: reset every connection and refuse new ones (nothing listens on the port)."""
        with self._lock:
            self.mode = "down"
            listener, self._listener = self._listener, None
            doomed, self._sockets = self._sockets, set()
        if listener is not None:
            _close(listener)
        for sock in doomed:
            _close(sock, reset=True)

    def hang(self) -> None:
        """Unresponsive: new connections are accepted and nothing is forwarded either way."""
        self._moving.clear()
        with self._lock:
            self.mode = "hang"
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        with self._lock:
            self.mode = "up"
        if self._listener is None:
            self._listen()
        self._moving.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._moving.set()

    # Forwarding.
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # cut or closed
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self._track(client)
        self._moving.wait()  # a hung proxy does not even reach the server
        try:
            if isinstance(self.target, str):
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.settimeout(5)
                upstream.connect(self.target)
            else:
                upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client, reset=True)
            return
        if not self._track(upstream):
            _close(client, reset=True)
            return
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self.mode == "down" or self._closed:
                _close(sock, reset=True)
                return False
            self._sockets.add(sock)
            return True

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._moving.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with self._lock:
                    self._sockets.discard(sock)
                _close(sock)


def _close(sock: socket.socket, reset: bool = False) -> None:
    with contextlib.suppress(OSError):
        if reset:  # RST, as a dead server's host answers, instead of an orderly FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def wait_for(predicate, timeout: float, every: float = 0.1):
    """Poll predicate() until it is true; (value, seconds taken); value is falsy on timeout."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value or time.monotonic() - start > timeout:
            return value, time.monotonic() - start
        time.sleep(every)
