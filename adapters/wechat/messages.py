"""WeChat's XML: pushes parsed safely, passive replies built.

Pushes are parsed with ``defusedxml``: no DTDs, no entity expansion, no external entities,
so a hostile body can neither blow up memory nor read files. Only the flat ``<xml>``
envelope WeChat sends is accepted; its fields come back as strings.
"""

from __future__ import annotations

from typing import Final
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

MAX_XML_BYTES: Final = 64 * 1024


class WeChatXmlError(Exception):
    """A body that is not a WeChat XML envelope (answered 400)."""


def parse(body: bytes) -> dict[str, str]:
    """The fields of a push: ``{"ToUserName": ..., "MsgType": ..., ...}``."""
    if len(body) > MAX_XML_BYTES:
        raise WeChatXmlError(f"body over {MAX_XML_BYTES} bytes")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        # LookupError: an encoding declaration Python has no codec for.
        raise WeChatXmlError(f"not well-formed XML: {type(exc).__name__}") from exc
    if root.tag != "xml":
        raise WeChatXmlError("the root element must be <xml>")
    return {child.tag: (child.text or "").strip() for child in root if len(child) == 0}


def _cdata(value: str) -> str:
    # A "]]>" inside the text would end the section: split it over two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """A passive text reply (to the customer's OpenID, from the account)."""
    return (
        "<xml>"
        f"<ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        "</xml>"
    )


def encrypted_reply(encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    """The safe-mode envelope of an encrypted passive reply."""
    return (
        "<xml>"
        f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
        f"<MsgSignature>{_cdata(msg_signature)}</MsgSignature>"
        f"<TimeStamp>{escape(timestamp)}</TimeStamp>"
        f"<Nonce>{_cdata(nonce)}</Nonce>"
        "</xml>"
    )
