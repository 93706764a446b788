# SPDX-License-Identifier: MIT
"""Throwaway certificate authorities for the TLS tests, made with the
openssl command line in a test's temporary directory."""
import os
import subprocess


def _run(*argv):
    subprocess.run(["openssl"] + list(argv), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class CA:
    """A CA (EC P-256) in directory d; issue() makes leaf certificates."""

    def __init__(self, d, name="p2p test CA"):
        self.dir = d
        self.name = name.replace(" ", "-")
        self.cert = os.path.join(d, self.name + ".pem")
        self.key = os.path.join(d, self.name + ".key")
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        self.serial = 1

    def issue(self, name, sans=("DNS:localhost", "IP:127.0.0.1")):
        """A certificate for sans; returns (cert path, key path)."""
        cert = os.path.join(self.dir, "%s-%s.pem" % (self.name, name))
        key = os.path.join(self.dir, "%s-%s.key" % (self.name, name))
        csr = cert + ".csr"
        ext = cert + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n" % ",".join(sans))
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        self.serial += 1
        _run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-set_serial", str(self.serial),
             "-out", cert, "-days", "2", "-extfile", ext)
        os.chmod(key, 0o600)
        return cert, key
