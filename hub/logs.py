"""How every CityHub process logs: one format, one handler on the root logger (so the hub's loggers, the
connectors', nats-py's and uvicorn's all go through it), and no value from outside able to forge a log line.

Log messages carry values that came from outside (subjects, incident ids, reasons, exception messages about
input). :class:`EscapingFormatter` escapes the control characters in each record's line
(:func:`hub.control_characters.escaped`: CR, LF, the other C0 and C1 characters, the Unicode line separators),
so a record is always exactly one line that starts with its own time stamp. A traceback (``log.exception``)
keeps its own line breaks, and the messages of its exceptions are escaped like the record's (except inside an
exception group, whose lines Python prints behind the group's ``|`` margin, line breaks included).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator
from types import TracebackType

from hub.control_characters import escaped

LOG_FILE_VARIABLE = "CITYHUB_LOG_FILE"
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def configure_logging(level: int, *, process: str = "") -> None:
    """Send every logger's records at ``level`` and above through :class:`EscapingFormatter` to stderr, or
    appended to the file named by ``CITYHUB_LOG_FILE`` when it is set (the demo sets it, so its connector
    processes log there too and the terminal keeps the stream); ``process`` (e.g. a connector's source) is
    shown in each line. Replaces any handler set up before."""
    tag = f"[{process}] " if process else ""
    log_file = os.environ.get(LOG_FILE_VARIABLE)
    handler = logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class EscapingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose records cannot be split or forged by the values in them."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the logging API's name
        return escaped(super().formatMessage(record))

    def formatException(self, ei: ExcInfo) -> str:  # noqa: N802
        if ei[1] is None:  # exc_info=True outside an except block
            return super().formatException(ei)
        exception = traceback.TracebackException.from_exception(ei[1], compact=True)
        return "".join(_escaped_traceback(exception)).removesuffix("\n")


def _escaped_traceback(exception: traceback.TracebackException) -> Iterator[str]:
    """The traceback's text: each exception's own text (type, message, notes) fully escaped, ending in its
    line break; the frames with their line breaks kept and any other control character escaped."""
    own_texts = {text for each in _chain(exception) for text in each.format_exception_only()}
    for text in exception.format():
        if text in own_texts:
            yield escaped(text.removesuffix("\n")) + "\n"
        else:
            yield escaped(text, keep="\n")


def _chain(exception: traceback.TracebackException) -> Iterator[traceback.TracebackException]:
    """``exception`` and every exception it carries: causes, contexts, members of a group."""
    pending: list[traceback.TracebackException | None] = [exception]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, *(current.exceptions or [])]
