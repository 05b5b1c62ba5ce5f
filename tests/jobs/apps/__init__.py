"""Importable apps and helpers for the jobs runtime tests (worker subprocesses import them)."""
