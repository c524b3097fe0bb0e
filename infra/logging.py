"""Logging set-up: every line a process writes to stderr is one structlog event.

structlog's own loggers and the standard library's (aiormq, aio_pika, faststream, uvicorn,
asyncpg, alembic, asyncio, `warnings`: any logger, through the root handler) meet in one
handler whose `ProcessorFormatter` renders them alike: one JSON object per line when stderr is
not a terminal, a readable console format on a terminal (`HISHO_LOG_FORMAT` decides). A
traceback is the `exception` field of its event, never lines of its own. Uncaught exceptions
(main thread, other threads, "exception ignored" ones) are logged the same way.

Other libraries log at WARNING and above (their INFO chatter stays out) unless
`HISHO_LOG_LEVEL=debug`; hisho's own events honour `HISHO_LOG_LEVEL`.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, TextIO

import structlog

if TYPE_CHECKING:
    from types import TracebackType

    from infra.settings import Settings

LIBRARY_LEVEL = logging.WARNING


def renders_json(settings: Settings) -> bool:
    """True when log lines are JSON objects (`json`, or `auto` with stderr not a terminal)."""
    return settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )


class _LibraryFloor(logging.Filter):
    """Lets structlog's events through; other libraries' records only from `level` up."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return isinstance(record.msg, dict) or record.levelno >= self.level


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Route structlog and every stdlib logger to one handler on `stream` (default stderr)."""
    level = getattr(logging, settings.log_level.upper())
    as_json = renders_json(settings)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        *(
            [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
            if as_json
            else [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
        ),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=rendering)
    )
    handler.addFilter(_LibraryFloor(level if level <= logging.DEBUG else max(level, LIBRARY_LEVEL)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    adopt_library_loggers()
    logging.captureWarnings(capture=True)
    _log_uncaught_exceptions()


def adopt_library_loggers() -> None:
    """Make loggers that brought a handler of their own (faststream's) use the root's."""
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.handlers:
            logger.handlers.clear()
            logger.propagate = True


def _log_uncaught_exceptions() -> None:
    log = structlog.get_logger("hisho")

    def on_uncaught(
        kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, tb)
            return
        log.critical("uncaught exception", exc_info=(kind, error, tb))

    def on_thread(args: threading.ExceptHookArgs) -> None:
        error = args.exc_value or args.exc_type()
        thread = args.thread.name if args.thread is not None else None
        log.error("uncaught exception in a thread", thread=thread, exc_info=error)

    def on_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
        error = unraisable.exc_value or unraisable.exc_type()
        message = unraisable.err_msg or "exception ignored"
        log.error(message, object=repr(unraisable.object), exc_info=error)

    sys.excepthook = on_uncaught
    threading.excepthook = on_thread
    sys.unraisablehook = on_unraisable
