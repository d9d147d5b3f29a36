"""Accelerators: what the host (or ``--gpu``) offers."""
