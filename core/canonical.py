"""Canonical questions: the one question asked for everyone who asks about an intent.

At a peak, customers who ask the same thing in their own words share one answer (the handler
shares by intent from ladder level 1). That answer must be computed from content that belongs
to no customer, or the first asker's words would reach everyone after them: so the model is
asked the intent's canonical question, written here as a generic customer would ask it, in
English or Chinese, and nothing else: no customer's text, history, context or tools of their
own. For another language, known from the message's locale, it gets the English question and
an instruction to answer in that language; the language code is checked to be one (two or
three letters), so no free text of a customer can enter a shared prompt through it either.
"""

from __future__ import annotations

import re
from typing import Final

# intent -> (English, Chinese). The intents missing here (handler.UNSHARED_INTENTS: complaint,
# contact_human_agent, other, and those about the asker's own orders) are never answered by
# intent.
CANONICAL_QUESTIONS: Final[dict[str, tuple[str, str]]] = {
    "check_cancellation_fee": ("Is there a fee for cancelling an order?", "取消订单要收费吗？"),
    "check_payment_methods": ("Which payment methods do you accept?", "你们支持哪些付款方式？"),
    "check_refund_policy": ("What is your refund policy?", "你们的退款政策是什么？"),
    "contact_customer_service": ("How can I contact customer service?", "如何联系客服？"),
    "create_account": ("How do I create an account?", "如何注册账户？"),
    "delete_account": ("How do I delete my account?", "如何注销我的账户？"),
    "delivery_options": ("Which delivery options do you offer?", "你们提供哪些配送方式？"),
    "delivery_period": ("How long does delivery take?", "配送需要多长时间？"),
    "edit_account": ("How do I change the details of my account?", "如何修改我的账户信息？"),
    "get_refund": ("How do I get a refund?", "如何申请退款？"),
    "newsletter_subscription": (
        "How do I subscribe to or unsubscribe from the newsletter?",
        "如何订阅或退订新闻邮件？",
    ),
    "place_order": ("How do I place an order?", "如何下单？"),
    "recover_password": ("How do I reset my password?", "如何重置密码？"),
    "registration_problems": ("What can I do when I cannot sign up?", "注册遇到问题怎么办？"),
    "review": ("How can I leave a review?", "如何发表评价？"),
    "set_up_shipping_address": ("How do I add a shipping address?", "如何添加收货地址？"),
    "switch_account": ("How do I switch to another account?", "如何切换账户？"),
}

# Said with every canonical question: the model knows the asker is nobody in particular.
CANONICAL_NOTE: Final = (
    "This question stands for many customers who asked it in their own words: answer it for any "
    "of them. You know nothing about the customer and cannot see their orders or account; where "
    "an answer needs them, say what the customer should tell us."
)
SHOP_TOOLS_NOTE: Final = (
    "You can look up the shop's products and its policies with the tools: use them instead of "
    "guessing."
)
_LANGUAGE_CODE: Final = re.compile(r"[a-z]{2,3}")


def canonical_question(intent: str, lang: str) -> str | None:
    """The question asked for everyone asking about ``intent`` in language ``lang`` (an ISO
    639 code, lower case), or None: the intent is not shared, or ``lang`` is no code."""
    questions = CANONICAL_QUESTIONS.get(intent)
    if questions is None or not _LANGUAGE_CODE.fullmatch(lang):
        return None
    return questions[1] if lang == "zh" else questions[0]


def canonical_prompt(
    system_prompt: str, intent: str, lang: str, *, shop_tools: bool
) -> list[dict[str, str]] | None:
    """The whole prompt of the answer everyone asking about ``intent`` in ``lang`` shares (see
    the module doc): the system prompt with the notes, then the canonical question. None when
    the intent has no canonical question or ``lang`` is no language code."""
    question = canonical_question(intent, lang)
    if question is None:
        return None
    notes = [CANONICAL_NOTE, SHOP_TOOLS_NOTE] if shop_tools else [CANONICAL_NOTE]
    if lang not in ("en", "zh"):
        notes.append(f'Answer in the language whose ISO 639 code is "{lang}".')
    return [
        {"role": "system", "content": "\n\n".join([system_prompt, *notes])},
        {"role": "user", "content": question},
    ]
