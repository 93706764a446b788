# SPDX-License-Identifier: MIT
"""A source that speaks just enough HTTP/2 by hand (no HTTP/2 library) to
answer p2p.v1.Peer/Stat truthfully and then, to a Read, announce one gRPC
message of 3 GiB and stream its first bytes as fast as flow control lets it
(issue 14: "an HTTP/2 source that announces a 2-4 GiB message"). It counts
the bytes the client let it send, so a test can bound what the client
buffered."""
import socket
import struct
import threading

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x4, 0x6, 0x7, 0x8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
ANNOUNCED = 3 << 30


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK: literal header field without indexing, new name, no Huffman."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


RESPONSE_HEADERS = b"\x88" + literal(b"content-type", b"application/grpc")  # :status 200 (static 8)
TRAILERS = literal(b"grpc-status", b"0")


class H2Liar:
    def __init__(self, stat_reply):
        self.stat_reply = stat_reply  # serialized StatResponse
        self.sent = 0                 # bytes of the announced message sent
        self.stop_event = threading.Event()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop_event.is_set():
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read(c, n):
        buf = b""
        while len(buf) < n:
            d = c.recv(n - len(buf))
            if not d:
                raise EOFError
            buf += d
        return buf

    def _serve(self, c):
        lock = threading.Lock()
        cond = threading.Condition(lock)
        win = {"conn": 65535, "init": 65535, "streams": {}}
        try:
            if self._read(c, len(PREFACE)) != PREFACE:
                return
            c.sendall(frame(SETTINGS, 0, 0))
            bodies = {}
            while not self.stop_event.is_set():
                h = self._read(c, 9)
                length = int.from_bytes(h[:3], "big")
                ftype, flags, stream = h[3], h[4], struct.unpack(">I", h[5:9])[0] & 0x7FFFFFFF
                payload = self._read(c, length)
                with cond:
                    if ftype == SETTINGS and not flags & ACK:
                        for i in range(0, len(payload), 6):
                            ident, value = struct.unpack(">HI", payload[i:i + 6])
                            if ident == 0x4:
                                win["init"] = value
                        c.sendall(frame(SETTINGS, ACK, 0))
                    elif ftype == PING and not flags & ACK:
                        c.sendall(frame(PING, ACK, 0, payload))
                    elif ftype == WINDOW_UPDATE:
                        inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
                        if stream == 0:
                            win["conn"] += inc
                        else:
                            win["streams"][stream] = win["streams"].get(stream, win["init"]) + inc
                        cond.notify_all()
                    elif ftype == HEADERS:
                        bodies[stream] = b""
                        win["streams"].setdefault(stream, win["init"])
                    elif ftype == DATA and stream in bodies:
                        bodies[stream] += payload
                        if flags & END_STREAM:
                            self._answer(c, cond, win, stream, bodies.pop(stream))
                    elif ftype == GOAWAY:
                        return
        except (EOFError, OSError):
            return
        finally:
            c.close()

    def _answer(self, c, cond, win, stream, body):
        # The request message: 5-byte prefix, then field 1 (name); a Read
        # request has more fields after it, a Stat request none.
        msg = body[5:]
        name_len = msg[1] if len(msg) > 1 else 0
        is_read = len(msg) > 2 + name_len
        c.sendall(frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS))  # under cond (the reader's)
        if not is_read:
            reply = b"\0" + struct.pack(">I", len(self.stat_reply)) + self.stat_reply
            c.sendall(frame(DATA, 0, stream, reply))
            c.sendall(frame(HEADERS, END_HEADERS | END_STREAM, stream, TRAILERS))
            return
        threading.Thread(target=self._flood, args=(c, cond, win, stream), daemon=True).start()

    def _flood(self, c, cond, win, stream):
        """The announced 3 GiB message: its prefix, then zeros as fast as
        the client's windows allow."""
        first = b"\0" + struct.pack(">I", ANNOUNCED)
        try:
            while not self.stop_event.is_set() and self.sent < ANNOUNCED:
                with cond:
                    room = min(win["conn"], win["streams"].get(stream, 0), 16384)
                    if room < 16:
                        cond.wait(0.5)
                        continue
                    payload = (first + b"\0" * (room - len(first))) if first else b"\0" * room
                    first = b""
                    win["conn"] -= room
                    win["streams"][stream] -= room
                    # Sent under the lock: the reader thread sends too.
                    c.sendall(frame(DATA, 0, stream, payload))
                self.sent += room
        except OSError:
            return

    def stop(self):
        self.stop_event.set()
        self.ls.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
