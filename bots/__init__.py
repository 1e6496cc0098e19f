"""Composition roots: read settings once, wire core and adapters together, run them (CLI)."""
