"""Command line: ``tcv`` and ``tcv-build`` on ``plumbum.cli``."""
