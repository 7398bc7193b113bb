"""Readers for checkpoints written by other code (read as data, never executed)."""
