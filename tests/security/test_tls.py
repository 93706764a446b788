#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""TLS end to end, with throwaway CAs made by the openssl CLI: p2p-dird over
HTTPS (verified by python3-requests, plain HTTP refused, bad files, reload,
socket activation), p2p-peerd logging in to an https directory (wrong CA and
wrong host refused), and a download between two peers over mutual-TLS gRPC
(a client from another CA, without a certificate, or in plain text is
refused)."""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import unittest

import grpc
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import p2ptest  # noqa: E402
from certs import CA  # noqa: E402
from dirdtest import Dird, raw_http  # noqa: E402
from test_control import Varlink  # noqa: E402


class TLSDird(Dird):
    """A p2p-dird serving HTTPS; session and url verify against ca."""

    def __init__(self, ca, cert, key, *extra, **kw):
        self.ca = ca.cert
        tls = ("--tls-certificate", cert, "--tls-key", key) if cert else ()
        super().__init__(*(tls + extra), **kw)
        self.url = "https://127.0.0.1:%d" % self.port

    def req(self, method, path, token=None, **kw):
        # Explicitly: REQUESTS_CA_BUNDLE in the environment would win over Session.verify.
        kw.setdefault("verify", self.ca)
        return super().req(method, path, token, **kw)

    def healthy(self):
        if not self.proc.alive():
            raise RuntimeError("p2p-dird exited:\n" + self.proc.output())
        try:
            return requests.get("https://127.0.0.1:%d/healthz" % self.port, verify=self.ca,
                                timeout=1).status_code == 200
        except requests.RequestException:
            return False


def served_cert(port):
    """The DER certificate a TLS server on 127.0.0.1:port presents."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def check(*argv):
    """Run a program to completion; (exit code, stderr)."""
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stderr


class Certs:
    """One set of CAs and certificates for the whole file (openssl is slow-ish)."""
    made = None

    @classmethod
    def get(cls):
        if not cls.made:
            d = p2ptest.tempdir("p2p-certs-")
            os.chmod(d, 0o755)
            c = cls.made = cls()
            c.dir = d
            c.ca = CA(d, "p2p test CA")
            c.other = CA(d, "another CA")
            c.server = c.ca.issue("dird")
            c.server2 = c.ca.issue("dird2")
            c.wrong_host = c.ca.issue("elsewhere", sans=("DNS:other.example",))
            c.peer1 = c.ca.issue("peer1")
            c.peer2 = c.ca.issue("peer2")
            c.intruder = c.other.issue("intruder")
        return cls.made


class DirdHTTPS(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Certs.get()
        cls.d = TLSDird(cls.c.ca, *cls.c.server)

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_api_over_verified_https(self):
        self.assertEqual(self.d.register("alice").status_code, 201)
        tok = self.d.login("alice")
        r = self.d.req("POST", "/verifyLogin", tok)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.json()["username"], "alice")
        self.assertIn("serving HTTPS", self.d.proc.output())

    def test_client_that_does_not_trust_the_ca_fails(self):
        for verify in (self.c.other.cert, True):
            with self.assertRaises(requests.exceptions.SSLError):
                requests.get(self.d.url + "/healthz", verify=verify, timeout=5)

    def test_plain_http_gets_nothing_and_dird_keeps_serving(self):
        for _ in range(3):
            answer = raw_http(self.d.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertNotIn(b"200", answer)
            self.assertNotIn(b"status", answer)
        self.assertTrue(self.d.proc.alive())
        self.assertEqual(self.d.req("GET", "/healthz").status_code, 200)


class DirdTLSConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Certs.get()

    def test_bad_files_are_errors_with_check_and_at_start(self):
        dird = p2ptest.binary("p2p-dird")
        cert, key = self.c.server
        missing = os.path.join(self.c.dir, "missing.pem")
        cases = [
            (["--tls-certificate", missing, "--tls-key", key], "cannot read the certificate file " + missing),
            (["--tls-certificate", cert, "--tls-key", missing], "cannot read the key file " + missing),
            (["--tls-certificate", key, "--tls-key", key], "not a PEM certificate"),
            (["--tls-certificate", cert, "--tls-key", cert], "not a PEM private key"),
            (["--tls-certificate", cert, "--tls-key", self.c.peer1[1]], "does not belong to the certificate"),
            (["--tls-certificate", cert], "set tls_certificate and tls_key together"),
            (["--tls-key", key], "set tls_certificate and tls_key together"),
        ]
        for args, message in cases:
            for mode in (["-n"], ["--listen", "127.0.0.1:%d" % p2ptest.free_port()]):
                code, err = check(dird, "--database", os.path.join(self.c.dir, "x.db"), *(mode + args))
                self.assertEqual(code, 2, (args, err))
                self.assertIn(message, err, args)
        code, err = check(dird, "-n", "--tls-certificate", cert, "--tls-key", key)
        self.assertEqual(code, 0, err)

    def test_reload_keeps_old_certificate_on_error_and_takes_a_good_one(self):
        cert, key = self.c.server
        d = TLSDird(self.c.ca, None, None, config={"tls_certificate": cert, "tls_key": key})
        try:
            self.assertEqual(served_cert(d.port), der(cert))
            with open(d.config_path, "w") as f:
                json.dump({"tls_certificate": cert, "tls_key": self.c.peer1[1]}, f)
            d.proc.send_signal(signal.SIGHUP)
            p2ptest.wait_for(lambda: "keeping the running configuration" in d.proc.output(), what="failed reload")
            self.assertIn("does not belong to the certificate", d.proc.output())
            self.assertEqual(served_cert(d.port), der(cert))
            self.assertEqual(d.req("GET", "/healthz").status_code, 200)
            with open(d.config_path, "w") as f:
                json.dump({"tls_certificate": self.c.server2[0], "tls_key": self.c.server2[1]}, f)
            d.proc.send_signal(signal.SIGHUP)
            p2ptest.wait_for(lambda: "configuration reloaded" in d.proc.output(), what="reload")
            self.assertEqual(served_cert(d.port), der(self.c.server2[0]))
            self.assertEqual(d.req("GET", "/healthz").status_code, 200)
        finally:
            d.stop()

    def test_https_on_a_socket_passed_by_systemd(self):
        port = p2ptest.free_port()
        cert, key = self.c.server
        p = p2ptest.Process(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, p2ptest.binary("p2p-dird"),
                             "--database", os.path.join(p2ptest.tempdir(), "db"), "--listen", "127.0.0.1:1",
                             "--tls-certificate", cert, "--tls-key", key])
        try:
            p2ptest.wait_for(lambda: p2ptest.port_open(port), what="socket")
            r = requests.get("https://127.0.0.1:%d/healthz" % port, verify=self.c.ca.cert, timeout=10)
            self.assertEqual(r.status_code, 200)
            self.assertIn("socket passed by systemd", p.output())
        finally:
            p.stop()


def start_peer(name, directory, *extra):
    """A p2p-peerd with a control socket and a folder; (process, varlink, folder, grpc port)."""
    base = p2ptest.tempdir("p2p-%s-" % name)
    folder = os.path.join(base, "files")
    os.mkdir(folder)
    sock = os.path.join(base, "ctl.sock")
    port = p2ptest.free_port()
    proc = p2ptest.Process([p2ptest.binary("p2p-peerd"), "--name", name, "--directory", directory,
                            "--folder", folder, "--listen", "127.0.0.1:%d" % port, "--port", str(port),
                            "--ip", "127.0.0.1", "--control-socket", sock, "--state-dir", base] + list(extra))
    p2ptest.wait_for(lambda: connectable(sock) or not proc.alive(), what="control socket of " + name)
    return proc, Varlink(sock), folder, port


def connectable(path):
    # The file appears at bind(), a moment before listen(): wait for both.
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


class PeerToHTTPSDirectory(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Certs.get()
        cls.d = TLSDird(cls.c.ca, *cls.c.server)
        cls.d.register("bob")

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def login(self, directory, *extra):
        proc, v, _, _ = start_peer("bob", directory, *extra)
        try:
            return v.call("Login", {"username": "bob", "password": "pw-" + "x" * 8}), proc.output()
        finally:
            v.close()
            proc.stop()

    def test_login_verified_by_ip_and_by_name(self):
        for host in ("127.0.0.1", "localhost"):
            r, out = self.login("https://%s:%d" % (host, self.d.port), "--directory-ca", self.c.ca.cert)
            self.assertNotIn("error", r, out)
            self.assertIn("logged in as bob at https://%s:%d" % (host, self.d.port), out)

    def test_certificate_from_another_ca_is_refused(self):
        r, out = self.login(self.d.url, "--directory-ca", self.c.other.cert)
        self.assertEqual(r.get("error"), "io.p2p.Peer.DirectoryUnreachable", out)
        self.assertIn("presented a certificate that is refused: unable to get local issuer certificate", out)
        r, out = self.login(self.d.url)  # the system's CAs do not know the test CA either
        self.assertIn("presented a certificate that is refused", out)

    def test_certificate_for_another_host_is_refused(self):
        # TLSDird's health check would refuse this certificate too: start it by hand.
        port = p2ptest.free_port()
        d = p2ptest.Process([p2ptest.binary("p2p-dird"), "--listen", "127.0.0.1:%d" % port, "--database",
                             os.path.join(p2ptest.tempdir(), "db"), "--tls-certificate", self.c.wrong_host[0],
                             "--tls-key", self.c.wrong_host[1]])
        try:
            p2ptest.wait_for(lambda: p2ptest.port_open(port), what="dird")
            r, out = self.login("https://127.0.0.1:%d" % port, "--directory-ca", self.c.ca.cert)
            self.assertEqual(r.get("error"), "io.p2p.Peer.DirectoryUnreachable", out)
            self.assertIn("refused: IP address mismatch", out)
            r, out = self.login("https://localhost:%d" % port, "--directory-ca", self.c.ca.cert)
            self.assertIn("refused: hostname mismatch", out.lower())
        finally:
            d.stop()

    def test_bad_settings_are_errors(self):
        peerd = p2ptest.binary("p2p-peerd")
        folder = p2ptest.tempdir()
        missing = os.path.join(self.c.dir, "missing.pem")
        cases = [
            (["--directory", self.d.url, "--directory-ca", missing], "directory_ca: cannot read the CA file"),
            (["--directory", self.d.url, "--directory-ca", self.c.server[1]], "directory_ca: "),
            (["--directory", "http://127.0.0.1:1", "--directory-ca", self.c.ca.cert],
             "directory_ca: only used with an https:// directory"),
            (["--directory", "ftp://127.0.0.1:1"], "must be an http:// or https:// URL"),
        ]
        for args, message in cases:
            code, err = check(peerd, "-n", "--folder", folder, *args)
            self.assertEqual(code, 2, (args, err))
            self.assertIn(message, err, args)


class GrpcTLS(unittest.TestCase):
    """Two peers with certificates from one CA, mutual TLS between them."""

    @classmethod
    def setUpClass(cls):
        cls.c = Certs.get()
        cls.d = TLSDird(cls.c.ca, *cls.c.server)
        cls.peers = {}
        for name, pair in (("peer1", cls.c.peer1), ("peer2", cls.c.peer2)):
            proc, v, folder, port = start_peer(name, cls.d.url, "--directory-ca", cls.c.ca.cert,
                                               "--tls-certificate", pair[0], "--tls-key", pair[1],
                                               "--tls-ca", cls.c.ca.cert)
            for call in ("Register", "Login"):
                r = v.call(call, {"username": name, "password": "pw-" + name})
                assert "error" not in r, (r, proc.output())
            cls.peers[name] = (proc, v, folder, port)

    @classmethod
    def tearDownClass(cls):
        for proc, v, _, _ in cls.peers.values():
            v.close()
            proc.stop()
        cls.d.stop()

    def test_1_download_between_tls_peers(self):
        data = os.urandom(3 * 1024 * 1024 + 7)
        proc1, v1, f1, _ = self.peers["peer1"]
        with open(os.path.join(f1, "tls.bin"), "wb") as f:
            f.write(data)
        self.assertNotIn("error", v1.call("Index"))
        self.assertIn("serving gRPC over TLS", proc1.output())
        proc2, v2, f2, _ = self.peers["peer2"]
        v2.send_raw(json.dumps({"method": "io.p2p.Peer.Download", "parameters": {"name": "tls.bin"},
                                "more": True}).encode() + b"\0")
        while True:
            m = v2.recv()
            if not m.get("continues"):
                break
        self.assertNotIn("error", m, proc2.output())
        self.assertEqual(m["parameters"]["state"], "done")
        with open(os.path.join(f2, "tls.bin"), "rb") as f:
            self.assertEqual(f.read(), data)

    def stat(self, creds):
        """A raw Stat call without a ticket; returns the status code."""
        port = self.peers["peer1"][3]
        if creds is None:
            ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        else:
            ch = grpc.secure_channel("127.0.0.1:%d" % port, creds)
        try:
            ch.unary_unary("/p2p.v1.Peer/Stat")(b"\x0a\x01x", timeout=10)
        except grpc.RpcError as e:
            return e.code(), e.details()
        finally:
            ch.close()
        return grpc.StatusCode.OK, ""

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_2_client_checks(self):
        ca = self.read(self.c.ca.cert)
        # A client of the network passes TLS and reaches the ticket check.
        good = grpc.ssl_channel_credentials(ca, self.read(self.c.peer2[1]), self.read(self.c.peer2[0]))
        self.assertEqual(self.stat(good)[0], grpc.StatusCode.UNAUTHENTICATED)
        refused = {
            "certificate from another CA": grpc.ssl_channel_credentials(ca, self.read(self.c.intruder[1]),
                                                                        self.read(self.c.intruder[0])),
            "no client certificate": grpc.ssl_channel_credentials(ca),
            "does not trust the server's CA": grpc.ssl_channel_credentials(
                self.read(self.c.other.cert), self.read(self.c.peer2[1]), self.read(self.c.peer2[0])),
            "plain text": None,
        }
        for what, creds in refused.items():
            self.assertEqual(self.stat(creds)[0], grpc.StatusCode.UNAVAILABLE, what)
        self.assertTrue(self.peers["peer1"][0].alive())

    def test_3_tls_with_socket_activation_is_a_clear_error(self):
        port = p2ptest.free_port()
        folder = p2ptest.tempdir()
        p = p2ptest.Process(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port, p2ptest.binary("p2p-peerd"),
                             "--folder", folder, "--directory", "http://127.0.0.1:1",
                             "--tls-certificate", self.c.peer1[0], "--tls-key", self.c.peer1[1]])
        try:
            p2ptest.wait_for(lambda: p2ptest.port_open(port), what="activation socket")
            socket.create_connection(("127.0.0.1", port), timeout=5).close()  # starts p2p-peerd
            p2ptest.wait_for(lambda: "cannot serve the socket passed by systemd" in p.output(), what="error")
        finally:
            p.stop()

    def test_4_bad_settings_are_errors(self):
        peerd = p2ptest.binary("p2p-peerd")
        folder = p2ptest.tempdir()
        cert, key = self.c.peer1
        cases = [
            (["--tls-certificate", cert], "set tls_certificate and tls_key together"),
            (["--tls-certificate", cert, "--tls-key", self.c.peer2[1]], "does not belong to the certificate"),
            (["--tls-certificate", key, "--tls-key", key], "tls_certificate: "),
            (["--tls-certificate", cert, "--tls-key", cert], "tls_key: "),
            (["--tls-ca", self.c.ca.cert], "tls_ca: needs tls_certificate"),
            (["--tls-certificate", cert, "--tls-key", key, "--tls-ca", os.path.join(self.c.dir, "none")],
             "tls_ca: cannot read the certificate file"),
        ]
        for args, message in cases:
            code, err = check(peerd, "-n", "--folder", folder, *args)
            self.assertEqual(code, 2, (args, err))
            self.assertIn(message, err, args)


if __name__ == "__main__":
    p2ptest.run()
