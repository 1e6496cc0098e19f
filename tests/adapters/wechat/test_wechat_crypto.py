"""WeChat signatures, safe mode and XML, checked against wechatpy as an independent peer."""

from __future__ import annotations

import base64
import os

import pytest
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

from adapters.wechat.crypto import (
    SafeMode,
    WeChatCryptoError,
    WeChatSignatureError,
    signature,
    verify,
)
from adapters.wechat.messages import WeChatXmlError, encrypted_reply, parse, text_reply

TOKEN = "peakdesk-token"
APP_ID = "wx1234567890abcdef"
AES_KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")  # 43 characters
PUSH = (
    "<xml><ToUserName><![CDATA[gh_account]]></ToUserName>"
    "<FromUserName><![CDATA[oOpenId123]]></FromUserName>"
    "<CreateTime>1764201600</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[我的订单到哪了？]]></Content><MsgId>24680</MsgId></xml>"
)


def test_our_signature_is_the_one_wechat_makes() -> None:
    ours = signature(TOKEN, "1764201600", "nonce42")
    check_signature(TOKEN, ours, "1764201600", "nonce42")  # raises when it differs
    verify(ours, TOKEN, "1764201600", "nonce42")
    for wrong in ("", ours[:-1] + "0", signature("other-token", "1764201600", "nonce42")):
        with pytest.raises(WeChatSignatureError):
            verify(wrong, TOKEN, "1764201600", "nonce42")
    with pytest.raises(WeChatSignatureError):
        verify(ours, TOKEN, "", "nonce42")


@pytest.mark.parametrize(
    ("given", "nonce"),
    [
        ("\u00e9" * 40, "nonce42"),  # not ASCII: hmac.compare_digest raised TypeError
        ("\udcff" * 40, "nonce42"),  # a query byte that is not UTF-8
        ("0" * 40, "\ud800"),  # a nonce that decoded to a lone surrogate
    ],
    ids=["not-ascii", "not-utf8", "lone-surrogate-nonce"],
)
def test_signature_parameters_that_are_no_ascii_are_refused_not_a_crash(
    given: str, nonce: str
) -> None:
    with pytest.raises(WeChatSignatureError):
        verify(given, TOKEN, "1764201600", nonce)


def test_an_encrypt_field_that_is_not_ascii_is_refused_not_a_crash() -> None:
    encrypted = "\u00e9" * 44  # once a ValueError from base64, not a WeChatCryptoError
    with pytest.raises(WeChatCryptoError, match="base64"):
        SafeMode(TOKEN, AES_KEY, APP_ID).decrypt(
            encrypted, signature(TOKEN, "1", "n", encrypted), "1", "n"
        )


def test_we_decrypt_what_wechat_encrypts_and_refuse_tampering() -> None:
    peer = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    envelope = parse(peer.encrypt_message(PUSH, "nonce7", "1764201600").encode())
    safe = SafeMode(TOKEN, AES_KEY, APP_ID)
    xml = safe.decrypt(envelope["Encrypt"], envelope["MsgSignature"], "1764201600", "nonce7")
    assert parse(xml.encode())["Content"] == "我的订单到哪了？"
    with pytest.raises(WeChatSignatureError):
        safe.decrypt(envelope["Encrypt"], envelope["MsgSignature"], "1764201601", "nonce7")
    other_account = SafeMode(TOKEN, AES_KEY, "wx0000000000000000")
    with pytest.raises(WeChatCryptoError):
        other_account.decrypt(envelope["Encrypt"], envelope["MsgSignature"], "1764201600", "nonce7")
    garbage = base64.b64encode(os.urandom(64)).decode()
    with pytest.raises(WeChatCryptoError):
        safe.decrypt(garbage, signature(TOKEN, "1", "n", garbage), "1", "n")


def test_wechat_decrypts_our_encrypted_passive_reply() -> None:
    reply = text_reply("oOpenId123", "gh_account", "已发货，单号 793343217053 ]]> <b>", 1764201601)
    encrypted, msg_signature = SafeMode(TOKEN, AES_KEY, APP_ID).encrypt(reply, "1764201601", "n2")
    envelope = encrypted_reply(encrypted, msg_signature, "1764201601", "n2")
    peer = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    message = parse_message(peer.decrypt_message(envelope, msg_signature, "1764201601", "n2"))
    assert message.type == "text" and message.source == "gh_account"
    assert message.target == "oOpenId123"
    assert message.content == "已发货，单号 793343217053 ]]> <b>"


def test_safe_mode_refuses_a_malformed_key() -> None:
    for key in ("too-short", "!" * 43):
        with pytest.raises(ValueError, match="EncodingAESKey"):
            SafeMode(TOKEN, key, APP_ID)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<root><a>1</a></root>",
        # The billion laughs: an entity expansion bomb.
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<xml><Content>&lol2;</Content></xml>",
        # An external entity reading a file.
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<xml><Content>&xxe;</Content></xml>",
        b"<xml>" + b"<Content>x</Content>" * 5000 + b"</xml>",  # over 64 KiB
        # An encoding Python has no codec for (a LookupError, once a 500).
        b'<?xml version="1.0" encoding="x-no-such-codec"?><xml/>',
    ],
)
def test_hostile_or_foreign_xml_is_refused(body: bytes) -> None:
    with pytest.raises(WeChatXmlError):
        parse(body)
