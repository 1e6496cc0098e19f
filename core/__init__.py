"""Channel-agnostic heart of peakdesk: message model, priority, queue, state, LLM client, worker.

Nothing here imports a channel SDK or anything from ``adapters`` or ``bots``.
"""
