"""The generic signed webhook channel for third-party messaging gateways."""
