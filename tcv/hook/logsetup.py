"""Where the hook reports: syslog when ``/dev/log`` exists (or ``$TCV_HOOK_LOG``
says ``syslog``), else a bounded file (``$TCV_HOOK_LOG``, else
``<store>/hook.log``, :mod:`tcv.hook.logfile`). Imported only once the hook has
something to do: ``logging`` is not cheap to load."""

from __future__ import annotations

import os

from tcv.hook.settings import HookSettings

LOGGER = "tcv"
SYSLOG_SOCKET = "/dev/log"  # syslog and journald both listen here when present


def setup_logging(settings: HookSettings):
    """The logger the hook reports to, and where it writes."""
    import logging

    logger = logging.getLogger(LOGGER)
    logger.setLevel(getattr(logging, settings.log_level, logging.INFO))
    logger.propagate = False
    for old in list(logger.handlers):  # the hook is its own program: only its log
        logger.removeHandler(old)
        if getattr(old, "_tcv_hook", False):
            old.close()
    target = settings.log_target
    handler: logging.Handler | None = None
    if target in ("syslog", "") and os.path.exists(SYSLOG_SOCKET):
        import logging.handlers  # only here: it loads socket, pickle and queue

        try:
            handler = logging.handlers.SysLogHandler(
                address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
            handler.ident = f"tcv-hook[{os.getpid()}]: "
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        except OSError:
            handler = None
    if handler is None:  # no syslog here: the file under the store
        path = target if target not in ("", "syslog") else str(settings.store_root / "hook.log")
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        from tcv.hook.logfile import BoundedFileHandler

        handler = BoundedFileHandler(path, max_bytes=settings.log_max_bytes)
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s tcv-hook[{os.getpid()}] %(levelname)s %(message)s",
                "%Y-%m-%dT%H:%M:%S%z",
            )
        )
    handler._tcv_hook = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    return logger
