"""``rediss://``: the fleet store over TLS, against a real redis-server with a certificate made here.

The CA and the server certificate are generated per test (``cryptography``); redis-server listens with
TLS only (``--port 0 --tls-port``). The client trusts the CA through the ``redis`` package's own
``ssl_ca_certs`` query parameter, which the store URL passes through.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mcprelay.errors import ErrorType, McpRelayError
from mcprelay.oauth.grant import load_grant
from mcprelay.store.redis import RedisStore
from tests.conftest import Servers
from tests.integration.test_store_redis import logged_in
from tests.redis_helpers import REDIS_SERVER, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for 127.0.0.1, server key), PEM files in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcprelay test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return ca_path, cert_path, key_path


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks TLS only, on a free port: (port, CA certificate to trust)."""
    if REDIS_SERVER is None or shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (./run test installs it with apt-get)")
    directory = tmp_path / "redis-tls"
    directory.mkdir()
    ca, cert, key = make_certificates(directory)
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
         "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--protected-mode", "no",
         "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            log = (directory / "redis.log").read_text() if (directory / "redis.log").exists() else ""
            if proc.poll() is not None or time.monotonic() > deadline:
                if "TLS" in log and ("not supported" in log or "Bad directive" in log):
                    pytest.skip("this redis-server is built without TLS")
                raise RuntimeError(f"redis-server with TLS did not start on {port}: {log[-2000:]}")
            time.sleep(0.05)
        yield port, ca
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_the_store_over_tls_holds_a_login_and_refuses_an_untrusted_or_plain_connection(
    strict_servers: Callable[..., Servers], tls_redis: tuple[int, Path], store_key: str,
) -> None:
    port, ca = tls_redis
    servers = strict_servers(access_token_ttl=600)
    store = RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&prefix=tls:")
    try:
        await logged_in(servers, store)
        grant = load_grant(store, "strict")
        assert grant is not None and grant.tokens.refresh_token
        assert "ssl_ca_certs" not in store.describe() and store.describe().startswith("redis (rediss://127.0.0.1:")
    finally:
        store.close()
    # A second replica with the same URL and key sees the same grant.
    sibling = RedisStore(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&prefix=tls:")
    try:
        again = load_grant(sibling, "strict")
        assert again is not None and again.tokens.refresh_token == grant.tokens.refresh_token
    finally:
        sibling.close()

    failures: list[McpRelayError] = []
    for url in (f"rediss://127.0.0.1:{port}/0?prefix=tls:",  # the test CA is not in the system's trust store
                f"redis://127.0.0.1:{port}/0?prefix=tls:"):  # plain text to a TLS port
        untrusted: Any = RedisStore(url)
        try:
            with pytest.raises(McpRelayError) as caught:
                untrusted.get("tokens/strict")
            failures.append(caught.value)
        finally:
            untrusted.close()
    for failure in failures:
        assert failure.error_type == ErrorType.TOKEN_STORE_UNAVAILABLE, failure
        assert grant.tokens.refresh_token not in failure.message
    assert "certificate" in failures[0].message.lower(), failures[0].message
    assert "ssl_ca_certs=" in failures[0].suggestion, failures[0].suggestion
    assert "rediss://" in failures[1].suggestion, failures[1].suggestion
