"""Ed25519 signatures over the records that name a model file's bytes: a bundle's sidecar (`model.onnx.json`:
the bundle's sha256 and its manifest), an ABCD segmenter's record (`lesion_segmenter.json`: the ONNX file's
sha256, input size, normalisation) and the ABCD rules (`abcd_rules.json`).

A sidecar's sha256 catches damage, not intent: whoever can edit a bundle can recompute it. A signature made with
the device maker's private key, checked against the public keys the device trusts (`--trusted-keys`,
`$MNET_TRUSTED_KEYS`), catches a bundle or manifest that is not the one released. The signature lives beside the
record, as `<record>.sig`: {algorithm, key_id, public_key, signed_file, signed_sha256, signature}."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ConfigError, ManifestError

ALGORITHM = "ed25519"
SIGNATURE_SUFFIX = ".sig"
TRUSTED_KEYS_ENV = "MNET_TRUSTED_KEYS"
KEY_SUFFIXES = (".pem", ".pub")


class SignatureError(ManifestError):
    """A model file that is unsigned, signed by a key not trusted here, or whose signature does not hold."""


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def signature_path(record: Path) -> Path:
    return record.with_name(record.name + SIGNATURE_SUFFIX)


def _public_raw(public_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_key_pair(private_path: Path) -> tuple[Path, Path, str]:
    """A new Ed25519 pair: the private key (PKCS#8 PEM, mode 0600) at `private_path`, the public key beside it
    as `<stem>.pub.pem`; refuses to overwrite either."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

    private_path = Path(private_path)
    public_path = private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"{path}: exists; keys are never overwritten: choose another name")
    key = Ed25519PrivateKey.generate()
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path, key_id(_public_raw(key.public_key()))


def load_private_key(path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"--key {path}: not found; make a pair with `mnet-export keygen -o KEY.pem`") from None
    except (ValueError, TypeError) as error:
        raise ConfigError(f"--key {path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"--key {path}: not an Ed25519 key; make one with `mnet-export keygen -o KEY.pem`")
    return key


def sign_record(record: Path, private_key) -> Path:
    """Sign the exact bytes of `record`; write `<record>.sig`."""
    record = Path(record)
    data = record.read_bytes()
    public_raw = _public_raw(private_key.public_key())
    payload = {"algorithm": ALGORITHM, "key_id": key_id(public_raw),
               "public_key": base64.b64encode(public_raw).decode(), "signed_file": record.name,
               "signed_sha256": hashlib.sha256(data).hexdigest(),
               "signature": base64.b64encode(private_key.sign(data)).decode()}
    path = signature_path(record)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    return path


@dataclass(frozen=True)
class TrustedKeys:
    keys: dict[str, bytes]  # key_id -> raw public key
    source: str

    @classmethod
    def load(cls, where: str | Path) -> "TrustedKeys":
        """Public keys from a PEM file or a folder of them (*.pem, *.pub)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        where = Path(where)
        if not where.exists():
            raise ConfigError(f"--trusted-keys {where}: not found; give a public key file (.pub.pem) or a folder "
                              "of them")
        files = sorted(p for p in where.iterdir() if p.suffix in KEY_SUFFIXES) if where.is_dir() else [where]
        keys = {}
        for path in files:
            try:
                key = load_pem_public_key(path.read_bytes())
            except ValueError:
                if where.is_dir():
                    continue  # a private key or another PEM file in the folder is not a trusted key
                raise ConfigError(f"--trusted-keys {path}: not a PEM public key; give the .pub.pem file that "
                                  "`mnet-export keygen` wrote") from None
            if isinstance(key, Ed25519PublicKey):
                raw = _public_raw(key)
                keys[key_id(raw)] = raw
        if not keys:
            raise ConfigError(f"--trusted-keys {where}: holds no Ed25519 public key")
        return cls(keys, str(where))

    @classmethod
    def from_option(cls, given: str | Path | None) -> "TrustedKeys | None":
        """The keys given, else those named by $MNET_TRUSTED_KEYS, else None (signatures not required)."""
        where = given if given is not None else os.environ.get(TRUSTED_KEYS_ENV) or None
        return None if where is None else cls.load(where)

    def check(self, record: Path, what: str) -> str:
        """The key id that signed `record`'s current bytes; refuses an unsigned record, an untrusted key or a
        signature that does not hold."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        record = Path(record)
        path = signature_path(record)
        if not path.is_file():
            raise SignatureError(f"{what}: unsigned (no {path.name} beside {record.name}), and trusted keys are "
                                 f"required ({self.source}); sign it with `mnet-export sign`, or run without "
                                 "--trusted-keys")
        try:
            payload = json.loads(path.read_text())
            signer, signature = payload["key_id"], base64.b64decode(payload["signature"])
        except (ValueError, KeyError, TypeError):
            raise SignatureError(f"{what}: {path.name} is not a signature file; sign it again with "
                                 "`mnet-export sign`") from None
        if signer not in self.keys:
            raise SignatureError(f"{what}: signed by key {signer}, which is not among the trusted keys "
                                 f"({self.source}); refused")
        try:
            Ed25519PublicKey.from_public_bytes(self.keys[signer]).verify(signature, record.read_bytes())
        except InvalidSignature:
            raise SignatureError(f"{what}: the signature by key {signer} does not match {record.name}: it was "
                                 "changed after signing; refused") from None
        return signer
