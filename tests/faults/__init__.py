"""Fault tests: several real peakdesk processes on a real Redis server of their own, under
steady load, while workers are killed, Redis restarts, the provider or Telegram fails."""
