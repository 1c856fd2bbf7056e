"""A throwaway certificate authority for the TLS tests, made with the ``openssl``
command: a CA, a server certificate for localhost and 127.0.0.1, a client certificate
signed by the CA, and a second CA (with its own client certificate) nobody trusts."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(cwd: Path, name: str) -> None:
    _openssl(cwd, "req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def _leaf(cwd: Path, name: str, ca: str, extensions: str) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl(cwd, "req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
    _openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
             f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext")


@dataclass
class Certs:
    dir: Path

    def __getattr__(self, name: str) -> str:
        # ca, server, client, rogue_ca, rogue_client: .pem; name_key: .key
        if name.endswith("_key"):
            return str(self.dir / f"{name[:-4]}.key")
        return str(self.dir / f"{name}.pem")


def make_certs(cwd: Path) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    cwd.mkdir(parents=True, exist_ok=True)
    _ca(cwd, "ca")
    _ca(cwd, "rogue_ca")
    _leaf(cwd, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
          "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
          "extendedKeyUsage=serverAuth\n")
    client = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" \
             "extendedKeyUsage=clientAuth\n"
    _leaf(cwd, "client", "ca", client)
    _leaf(cwd, "rogue_client", "rogue_ca", client)
    return Certs(cwd)
