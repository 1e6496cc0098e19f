"""The Telegram channel (aiogram 3): customers chat with the shop's bot.

Inbound, by webhook (:mod:`.ingress`) or long polling (:mod:`.polling`), both through
:meth:`.ingress.TelegramIngress.accept`: update JSON → :func:`.convert.classify_update` → the
core priority queue (text for the LLM) or a direct answer (commands, unsupported content).
Outbound, :class:`.sender.TelegramReplySender` sends each reply once, split to Telegram's
length limit (:mod:`.split`), within its sending limits. :mod:`.bot` builds the aiogram ``Bot``
and registers the webhook.
"""
