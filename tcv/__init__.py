"""Triton Cache Vault: ship compiled Triton kernel caches as OCI images."""

__version__ = "0.1.0"
