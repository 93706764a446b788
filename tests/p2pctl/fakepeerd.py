# SPDX-License-Identifier: MIT
"""A fake p2p-peerd control socket for p2pctl's tests.

It speaks the varlink framing of docs/CONTROL.md on a UNIX socket, records
every call, and answers each method with whatever the test scripted: replies,
any error, raw bytes (to test malformed replies), a closed connection, or
silence. It lets tests reach every error path of p2pctl without a directory
or a second peer.
"""
import json
import os
import socket
import threading

CLOSE = object()   # close the connection instead of answering
HANG = object()    # answer nothing and keep the connection open


def reply(**params):
    return {"parameters": params}


def progress(**params):
    return {"parameters": params, "continues": True}


def error(_name, **params):
    return {"error": _name, "parameters": params}


class FakePeerd:
    def __init__(self, path):
        self.path = path
        self.calls = []
        self.script = {}
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(16)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def on(self, method, *answers):
        """Answer io.p2p.Peer.<method> with these replies, in order. An
        answer is a dict (sent as JSON), bytes (sent raw, NUL added), CLOSE
        or HANG."""
        self.script["io.p2p.Peer." + method] = list(answers)

    def last(self):
        return self.calls[-1] if self.calls else None

    def close(self):
        self._stop.set()
        # shutdown wakes the thread blocked in accept(); a bare close would
        # leave it accepting on the fd number when a new socket reuses it.
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5)
        try:
            self._sock.close()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\0" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                msg, buf = buf.split(b"\0", 1)
                call = json.loads(msg.decode("utf-8"))
                self.calls.append(call)
                answers = self.script.get(call.get("method"))
                if answers is None:
                    answers = [error("org.varlink.service.MethodNotFound", method=call.get("method"))]
                for a in answers:
                    if a is CLOSE:
                        return
                    if a is HANG:
                        self._stop.wait()
                        return
                    data = a if isinstance(a, bytes) else json.dumps(a).encode()
                    try:
                        conn.sendall(data + b"\0")
                    except OSError:
                        return
