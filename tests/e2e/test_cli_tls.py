"""--ca-file: the whole link over HTTPS and WSS against a server with its own CA."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from e2e_helpers import REGISTRATION_CODE, folder_digest, new_number, run


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca_and_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 signed by it (PEM files)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


def test_link_over_tls_with_ca_file(make_server, tmp_path: Path, background) -> None:
    ca_file, cert_file, key_file = make_ca_and_cert(tmp_path)
    srv = make_server(extra_args=("--tls-cert", str(cert_file), "--tls-key", str(key_file)))
    assert srv.url.startswith("https://127.0.0.1:")
    number = new_number()
    master_home, home = tmp_path / "master", tmp_path / "secondary"

    # Without the CA, the certificate cannot be verified: exit 6, nothing stored.
    res = run(
        "register",
        "--number",
        number,
        "--code",
        REGISTRATION_CODE,
        "--json",
        home=master_home,
        server=srv.url,
    )
    assert res.returncode == 6
    assert "certificate" in res.event("error")["message"]
    assert folder_digest(master_home) == "absent"
    res = run("secondary", "--json", home=home, server=srv.url)
    assert res.returncode == 6

    ca = {"PROVISION_CA_FILE": str(ca_file)}
    res = run(
        "register",
        "--number",
        number,
        "--code",
        REGISTRATION_CODE,
        home=master_home,
        server=srv.url,
        env=ca,
    )
    assert res.returncode == 0, res.stderr
    secondary = background(
        "--ca-file",
        str(ca_file),
        "secondary",
        "--json",
        "--expect-number",
        number,
        home=home,
        server=srv.url,
    )
    link = secondary.wait_event("channel_opened")["link"]
    assert "channel_server=https%3A%2F%2F127.0.0.1" in link
    res = run("master", "--link", link, "--yes", home=master_home, env=ca)
    assert res.returncode == 0, res.stderr
    assert secondary.wait() == 0, secondary.stderr()
    assert secondary.seen_event("registered")["device_id"] == 2
