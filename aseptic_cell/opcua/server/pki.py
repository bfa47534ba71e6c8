"""Server certificate (generated on first start) and the client trust list.

Layout of the PKI directory::

    own/cert.der      server certificate (DER), SAN URI = the server's application URI
    own/key.pem       its RSA-2048 private key (PKCS#8 PEM, mode 0600)
    trusted/          client certificates (DER or PEM, one per file) that may connect
    rejected/         copies of refused client certificates, for an administrator to review

The trust list is an exact-certificate list (SHA-256 fingerprints of the files in
``trusted/``), re-read when the folder changes. An empty or missing ``trusted/`` trusts
nobody (asyncua's TrustStore raises ValueError on an empty folder; OPCUA_NOTES hole 4).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

__all__ = ["ServerPki", "TrustList", "cert_application_uri", "load_cert", "make_self_signed"]


def load_cert(data: bytes) -> x509.Certificate:
    """DER or PEM."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def cert_application_uri(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def make_self_signed(
    key: rsa.RSAPrivateKey,
    *,
    common_name: str,
    application_uri: str,
    hostnames: list[str],
    days: int,
    server: bool,
    organization: str = "aseptic_cell",
) -> x509.Certificate:
    """A self-signed OPC UA application instance certificate (OPC 10000-6 §6.2.2)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    san += [x509.DNSName(h) for h in hostnames]
    eku = (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        if server
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    pub = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@dataclass
class ServerPki:
    """Paths of the server's PKI folder; ``ensure()`` generates what is missing or unusable."""

    root: Path

    @property
    def cert_path(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def key_path(self) -> Path:
        return self.root / "own" / "key.pem"

    @property
    def trusted_dir(self) -> Path:
        return self.root / "trusted"

    @property
    def rejected_dir(self) -> Path:
        return self.root / "rejected"

    def ensure(self, *, application_uri: str, common_name: str, hostnames: list[str], days: int) -> None:
        """Create the folders; (re)generate the certificate if absent, expired or for another URI."""
        for d in (self.root / "own", self.trusted_dir, self.rejected_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "own", 0o700)
        if self.key_path.is_file():
            key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
                raise ValueError(f"{self.key_path}: expected an RSA key of at least 2048 bits")
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_private(
                self.key_path,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            self.cert_path.unlink(missing_ok=True)
            log.info("generated server key %s", self.key_path)
        regenerate = not self.cert_path.is_file()
        if not regenerate:
            cert = load_cert(self.cert_path.read_bytes())
            now = dt.datetime.now(dt.UTC)
            cert_pub = cert.public_key()
            regenerate = (
                application_uri not in cert_application_uri(cert)
                or cert.not_valid_after_utc < now + dt.timedelta(days=1)
                or not isinstance(cert_pub, rsa.RSAPublicKey)  # not our (RSA) key: regenerate
                or cert_pub.public_numbers() != key.public_key().public_numbers()
            )
        if regenerate:
            cert = make_self_signed(
                key,
                common_name=common_name,
                application_uri=application_uri,
                hostnames=hostnames,
                days=days,
                server=True,
            )
            self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
            log.info("generated server certificate %s for %s", self.cert_path, application_uri)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


class TrustList:
    """Exact-certificate trust list read from a folder (re-read when the folder's mtime changes)."""

    def __init__(self, trusted_dir: Path, rejected_dir: Path | None = None) -> None:
        self.trusted_dir = Path(trusted_dir)
        self.rejected_dir = rejected_dir
        self._lock = threading.Lock()
        self._stamp: tuple[float, int] | None = None
        self._trusted: dict[str, x509.Certificate] = {}

    def _load(self) -> dict[str, x509.Certificate]:
        try:
            st = self.trusted_dir.stat()
            files = sorted(p for p in self.trusted_dir.iterdir() if p.is_file())
        except OSError:
            return {}
        stamp = (st.st_mtime, len(files))
        with self._lock:
            if stamp == self._stamp:
                return self._trusted
        out: dict[str, x509.Certificate] = {}
        for p in files:
            try:
                c = load_cert(p.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("trust list: ignoring %s (%s)", p, exc)
                continue
            out[fingerprint(c)] = c
        if not out:
            log.warning("trust list %s is empty: every client certificate will be refused", self.trusted_dir)
        with self._lock:
            self._stamp, self._trusted = stamp, out
        return out

    def reload(self) -> int:
        with self._lock:
            self._stamp = None
        return len(self._load())

    def is_trusted(self, cert: x509.Certificate) -> bool:
        return fingerprint(cert) in self._load()

    def reject(self, cert: x509.Certificate) -> None:
        """Keep a copy of a refused certificate so an administrator can trust it deliberately."""
        if self.rejected_dir is None:
            return
        try:
            self.rejected_dir.mkdir(parents=True, exist_ok=True)
            files = list(self.rejected_dir.iterdir())
            if len(files) >= 100:  # bounded: an attacker cannot fill the disk
                return
            path = self.rejected_dir / f"{fingerprint(cert)[:32]}.der"
            if not path.exists():
                path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
        except OSError as exc:
            log.warning("could not store rejected certificate: %s", exc)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
