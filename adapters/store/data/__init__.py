"""The demo shop's data files (a package so that they install and load as resources)."""
