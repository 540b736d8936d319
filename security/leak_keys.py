"""Key material by its first bytes: private keys are credentials, public ones are not.

A PEM block's base64 body travels without its ``-----BEGIN ...-----`` lines often enough
(pasted, or base64 of the DER file), and a certificate, a public key or an SSH public key
is routinely sent on purpose (a CA bundle, a deploy key). :func:`key_material` tells them
apart from the first 18 bytes: enough for the DER headers and the object identifier that
marks an encrypted private key.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["key_material"]

_OPENSSH_PRIVATE = b"openssh-key-v1\x00"
_SSH_PUBLIC_TYPES = (b"ssh-", b"ecdsa-", b"sk-")
# PKCS#5 (1.2.840.113549.1.5.*) and PKCS#12 PBE (1.2.840.113549.1.12.*): the algorithm
# of an EncryptedPrivateKeyInfo. Any other algorithm there is a public key's.
_RSADSI_PKCS = b"\x2a\x86\x48\x86\xf7\x0d\x01"
_PBE_ARCS = (0x05, 0x0C)
_INTEGER, _OCTET_STRING, _OID, _SEQUENCE, _EXPLICIT_0 = 0x02, 0x04, 0x06, 0x30, 0xA0


Material = Literal["private", "public"]


def key_material(head: bytes) -> Material | None:
    """``"private"`` or ``"public"`` if ``head`` starts key material, else None.

    Private: PKCS#8 (plain or encrypted), PKCS#1 RSA/DSA, SEC1 EC, OpenSSH. Public: X.509
    certificates and requests, SubjectPublicKeyInfo, PKCS#1 RSA public keys, SSH public
    keys (the wire format of ``ssh-ed25519 AAAA...``).
    """
    if head.startswith(_OPENSSH_PRIVATE):
        return "private"
    if head[:3] == b"\x00\x00\x00" and head[4:].startswith(_SSH_PUBLIC_TYPES):
        return "public"
    return _der(head)


def _der(head: bytes) -> Material | None:
    body = _contents(head, 0)
    if body is None or body + 4 > len(head):
        return None
    version = head[body : body + 3]
    # SEQUENCE { INTEGER 0, AlgorithmIdentifier | INTEGER ... }: PKCS#8, PKCS#1
    # SEQUENCE { INTEGER 1, OCTET STRING ... }: SEC1
    if (version == b"\x02\x01\x00" and head[body + 3] in (_SEQUENCE, _INTEGER)) or (
        version == b"\x02\x01\x01" and head[body + 3] == _OCTET_STRING
    ):
        return "private"
    if head[body] == _INTEGER and head[body + 1] & 0x80:
        return "public"  # PKCS#1 RSA public key: a modulus, never a one-byte version
    inner = _contents(head, body)
    if inner is None or inner + 10 > len(head):
        return None  # 18 bytes always reach this far for the shapes above
    if head[inner] == _OID:  # SEQUENCE { AlgorithmIdentifier ...
        oid = head[inner + 2 : inner + 10]
        encrypted = oid[:7] == _RSADSI_PKCS and oid[7] in _PBE_ARCS
        return "private" if encrypted else "public"
    # a certificate's or request's signed part starts with its version or serial number
    return "public" if head[inner] in (_EXPLICIT_0, _INTEGER) else None


def _contents(head: bytes, at: int) -> int | None:
    """Offset of the contents of the DER SEQUENCE at ``at``, if one starts there."""
    if at + 2 > len(head) or head[at] != _SEQUENCE:
        return None
    length = head[at + 1]
    return at + 2 + (length & 0x7F if length & 0x80 else 0)
