"""What the bot answers by itself, without the LLM: commands and content it cannot read yet.

English, and Chinese for customers whose Telegram language is Chinese (as the core apology).
"""

from __future__ import annotations

from typing import Final

from core.models import language

_HELP_EN = (
    "I can help you with:\n"
    "• order status and tracking\n"
    "• products and availability\n"
    "• returns and refunds\n"
    "• payments and billing\n\n"
    "Just write your question in a message. Type /human to reach a person, "
    "or /forget to make me forget this conversation."
)
_HELP_ZH = (
    "我可以帮您：\n"
    "• 查询订单状态和物流\n"
    "• 了解商品和库存\n"
    "• 办理退货和退款\n"
    "• 处理支付和账单问题\n\n"
    "直接发送文字消息提问即可。输入 /human 联系人工客服，输入 /forget 清除本次对话记录。"
)

TEMPLATES: Final[dict[str, dict[str, str]]] = {
    "start": {
        "en": "Hello! I am the shop's assistant. " + _HELP_EN,
        "zh": "您好！我是商店的智能客服。" + _HELP_ZH,
    },
    "help": {"en": _HELP_EN, "zh": _HELP_ZH},
    "human": {
        "en": "A member of our support team will answer you here as soon as possible.",
        "zh": "已为您转接人工客服，客服人员会尽快在此回复您。",
    },
    "forget": {
        "en": "Done: I have forgotten our conversation so far. How can I help you?",
        "zh": "已清除之前的对话记录。请问有什么可以帮您？",
    },
    "text_only": {
        "en": (
            "Sorry, I can only read text messages for now. "
            "Please write your question in words and I will gladly help."
        ),
        "zh": "抱歉，我目前只能读懂文字消息。请用文字描述您的问题，我很乐意为您解答。",
    },
}


def template(name: str, locale: str | None) -> str:
    """The text of one template in the customer's language (English by default)."""
    return TEMPLATES[name][language(locale)]
