"""Checks a new credential passes before it may become ``current`` (executor side).

A service-account key file must parse, name the expected account and key id, load in google-auth
and sign; when IAM hands out the key's public half, the signature must verify against it, which
proves the stored private key is the one IAM registered. The real token exchange is a separate
port, off by default. A generated value read back from Secret Manager must match the checksum
Secret Manager returned and conform to its spec. Failures raise ``CredentialRejectedError`` with a
reason that names the check, never the material (chained exceptions are dropped: parsers like
``json`` keep the input document on their errors).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from google.auth import crypt
from google.oauth2 import service_account

from gatehouse.rotation.generate import GeneratorSpec, nonconformance
from gatehouse.rotation.material import Material, crc32c
from gatehouse.rotation.ports import CredentialRejectedError


def _key_file(payload: Material) -> dict[str, Any] | None:
    try:
        info = json.loads(payload.reveal())
    except (ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) else None


def key_id_of(payload: Material) -> str | None:
    """``private_key_id`` of a JSON key file, or None when the payload is not one."""
    info = _key_file(payload)
    key_id = info.get("private_key_id") if info else None
    return key_id if isinstance(key_id, str) and key_id else None


def check_key_file(
    payload: Material, *, email: str, key_id: str | None, public_key_pem: bytes | None
) -> None:
    info = _key_file(payload)
    if info is None or info.get("type") != "service_account":
        raise CredentialRejectedError("the payload is not a service account JSON key file")
    if info.get("client_email") != email:
        raise CredentialRejectedError(f"the key file is for {info.get('client_email')!r}, not {email}")
    if key_id is None or info.get("private_key_id") != key_id:
        raise CredentialRejectedError(f"the key file's private_key_id is not the key {key_id} IAM created")
    try:
        credentials = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
        probe = f"gatehouse rotation probe {key_id} {secrets.token_hex(8)}".encode()
        signature = credentials.signer.sign(probe)
    except (ValueError, KeyError, TypeError):
        raise CredentialRejectedError("google-auth cannot load or sign with the key file") from None
    if public_key_pem is not None:
        try:
            verifier = crypt.RSAVerifier.from_string(public_key_pem)  # type: ignore[no-untyped-call]
            verified = verifier.verify(probe, signature)
        except ValueError:
            raise CredentialRejectedError(f"IAM's public key for {key_id} cannot be loaded") from None
        if not verified:
            raise CredentialRejectedError(
                f"the signature does not verify against IAM's public key for {key_id}"
            )


def check_generated(payload: Material, checksum: int | None, spec: GeneratorSpec) -> None:
    data = payload.reveal()
    if checksum is not None and checksum != crc32c(data):
        raise CredentialRejectedError("the CRC32C Secret Manager returned does not match the payload")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CredentialRejectedError("the payload is not ASCII text") from None
    reason = nonconformance(text, spec)
    if reason:
        raise CredentialRejectedError(f"the value does not conform to its spec: {reason}")
