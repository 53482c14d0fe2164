"""Tiny fixtures shipped in the package for tests and plugin authors (configs, dummy inputs)."""
