# SPDX-License-Identifier: MIT
"""Shared pieces of the p2p-dird black-box tests: start a real p2p-dird on
127.0.0.1 with a free port and a temporary database, and a small client.
Every answer the client (Dird.req, Dird.healthy, get) receives is checked
against docs/openapi.json (openapi_check.py): an undocumented status, header
or body fails the test."""
import json
import os
import socket

import requests

import openapi_check
import p2ptest
import pgtest

SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def new_database():
    """A fresh database for one p2p-dird: a new database on the test's
    PostgreSQL server when the suite runs against PostgreSQL (pgtest), an
    SQLite file in a temporary directory otherwise."""
    pg = pgtest.from_environment()
    if pg:
        return pg.create_database()
    return os.path.join(p2ptest.tempdir("p2p-dird-"), "dird.db")


def on_postgresql():
    return pgtest.from_environment() is not None


class Dird:
    def __init__(self, *extra, db=None, config=None, port=None, env=None, wait=True):
        self.dir = p2ptest.tempdir("p2p-dird-")
        self.db = db or new_database()
        self.port = port or p2ptest.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        argv = [p2ptest.binary("p2p-dird"), "--listen", "127.0.0.1:%d" % self.port,
                "--database", self.db]
        if config is not None:
            path = os.path.join(self.dir, "dird.json")
            with open(path, "w") as f:
                f.write(config if isinstance(config, str) else json.dumps(config))
            argv += ["-c", path]
            self.config_path = path
        argv += list(extra)
        self.proc = p2ptest.Process(argv, env=env)
        self.session = requests.Session()
        self.session.hooks["response"].append(openapi_check.check_response)
        if wait:
            self.wait_healthy()

    def wait_healthy(self):
        p2ptest.wait_for(self.healthy, what="p2p-dird /healthz on port %d" % self.port)

    def healthy(self):
        if not self.proc.alive():
            raise RuntimeError("p2p-dird exited:\n" + self.proc.output())
        try:
            return get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, sig=None):
        import signal as _s
        return self.proc.stop(sig or _s.SIGTERM)

    def req(self, method, path, token=None, **kw):
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = "Bearer " + token
        return self.session.request(method, self.url + path, headers=headers, timeout=10, **kw)

    def register(self, user, password="pw-" + "x" * 8):
        return self.req("POST", "/register", json={"username": user, "password": password})

    def login(self, user, password="pw-" + "x" * 8):
        r = self.req("POST", "/login", json={"username": user, "password": password})
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()["token"]

    def user(self, name, files=("file1.txt",), port=50001):
        """Register, log in and index; returns the token."""
        r = self.register(name)
        assert r.status_code in (201, 409), r.text
        tok = self.login(name)
        r = self.req("POST", "/index", tok, json={"ip": "127.0.0.1", "port": port, "folder": "/srv/" + name,
                                                   "files": [{"name": f, "size": 3, "sha256": SHA} for f in files]})
        assert r.status_code == 200, r.text
        return tok


def get(url, **kw):
    """requests.get, with the answer checked against docs/openapi.json."""
    return requests.get(url, hooks={"response": openapi_check.check_response}, **kw)


def raw_http(port, data, timeout=5):
    """Send raw bytes, return the whole raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except socket.timeout:
            pass
        return b"".join(chunks)
