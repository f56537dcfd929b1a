"""`keysafe serve --tls-cert/--tls-key`: the server speaks TLS, and the owner cookie is Secure."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import subprocess
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keysafe.testing import free_port
from tests.conftest import _KEYSAFE, PASSPHRASE, Cli


def _self_signed(dest: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dest / "cert.pem", dest / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def test_serve_with_tls_answers_https_only_and_marks_the_cookie_secure(
    vault: Cli, tmp_path: Path
) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [_KEYSAFE, "serve", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=vault.env,
    )
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        url = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/v1/health", verify=trust, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None, (
                    "TLS server did not start"
                )
                time.sleep(0.2)
        assert health.json()["ok"] is True
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
            assert plain.status_code >= 400  # a plain-HTTP client gets no answer it can use
        except httpx.HTTPError:
            pass
        login = httpx.post(
            f"{url}/v1/owner/login", json={"passphrase": PASSPHRASE}, verify=trust, timeout=60
        )
        assert login.status_code == 200, login.text
        cookie = login.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    finally:
        proc.terminate()
        proc.wait(timeout=10)
