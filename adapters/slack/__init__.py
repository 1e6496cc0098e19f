"""Slack for support staff: hand-over threads, replies to customers, the queue dashboard."""
