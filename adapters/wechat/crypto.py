"""WeChat's push signatures and safe-mode encryption, as the Official Account docs define them.

- Every push (and the URL check) carries ``signature`` = SHA-1 of the sorted, concatenated
  ``[token, timestamp, nonce]``; in safe mode ``msg_signature`` also covers the ``Encrypt``
  field.
- Safe mode (``encrypt_type=aes``): AES-256-CBC with key = base64(EncodingAESKey + "="), IV =
  the key's first 16 bytes, PKCS#7 padding to 32-byte blocks. The plaintext is 16 random
  bytes, the message length (4 bytes, big-endian), the XML and the AppID.

AES comes from ``cryptography`` (a vetted implementation); everything around it is a few
lines of the published algorithm, checked in the tests against ``wechatpy`` as a peer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK: Final = 32  # WeChat pads to 32 bytes, not AES's 16


class WeChatSignatureError(Exception):
    """A push whose signature does not match: not from WeChat (answered 401)."""


class WeChatCryptoError(Exception):
    """A safe-mode payload that cannot be decrypted or is not for this account (400)."""


def signature(token: str, timestamp: str, nonce: str, *extra: str) -> str:
    """SHA-1 hex of the sorted, concatenated parts (``extra``: the ``Encrypt`` field)."""
    # surrogatepass: a query parameter can decode to a lone surrogate (never a valid one).
    joined = "".join(sorted((token, timestamp, nonce, *extra))).encode("utf-8", "surrogatepass")
    return hashlib.sha1(joined).hexdigest()  # noqa: S324 - WeChat's algorithm


def verify(expected: str | None, token: str, timestamp: str, nonce: str, *extra: str) -> None:
    """Raise WeChatSignatureError unless ``expected`` is the signature of the parts."""
    if not expected or not timestamp or not nonce:
        raise WeChatSignatureError("signature, timestamp and nonce are required")
    given = expected.encode("utf-8", "surrogatepass")  # compare_digest takes ASCII str only
    if not hmac.compare_digest(given, signature(token, timestamp, nonce, *extra).encode()):
        raise WeChatSignatureError("signature does not match")


class SafeMode:
    """Decrypts pushes and encrypts replies of one Official Account (``encrypt_type=aes``)."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except binascii.Error as exc:
            raise ValueError("EncodingAESKey: 43 characters of base64") from exc
        if len(key) != 32:
            raise ValueError("EncodingAESKey: 43 characters of base64 (a 32-byte key)")
        self.token = token
        self.app_id = app_id
        self._cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def decrypt(self, encrypted: str, msg_signature: str | None, timestamp: str, nonce: str) -> str:
        """The XML of a safe-mode push, after checking ``msg_signature`` over it."""
        verify(msg_signature, self.token, timestamp, nonce, encrypted)
        try:
            data = base64.b64decode(encrypted, validate=True)
        except ValueError as exc:  # binascii.Error, or characters that are not ASCII
            raise WeChatCryptoError("Encrypt is not base64") from exc
        if not data or len(data) % 16:
            raise WeChatCryptoError("Encrypt is not whole AES blocks")
        decryptor = self._cipher.decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise WeChatCryptoError("bad padding: wrong key?")
        plain = plain[16:-pad]  # the random prefix and the padding
        if len(plain) < 4:
            raise WeChatCryptoError("too short")
        (length,) = struct.unpack(">I", plain[:4])
        xml, app_id = plain[4 : 4 + length], plain[4 + length :]
        if len(xml) != length or app_id.decode(errors="replace") != self.app_id:
            raise WeChatCryptoError("not a message for this account")
        try:
            return xml.decode()
        except UnicodeDecodeError as exc:
            raise WeChatCryptoError("message is not UTF-8") from exc

    def encrypt(self, xml: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """``(Encrypt, MsgSignature)`` of a passive reply."""
        body = xml.encode()
        plain = os.urandom(16) + struct.pack(">I", len(body)) + body + self.app_id.encode()
        pad = BLOCK - len(plain) % BLOCK
        encryptor = self._cipher.encryptor()
        data = encryptor.update(plain + bytes([pad]) * pad) + encryptor.finalize()
        encrypted = base64.b64encode(data).decode()
        return encrypted, signature(self.token, timestamp, nonce, encrypted)
