"""Helpers that start and drive the real tools in integration tests."""
