"""Logging for operators: one line per decision, to a per-run file and (optionally) the terminal.

A redacting filter is installed on every handler: any registered secret value that reaches a
log record (message, arguments or traceback text) is replaced by `***`. Code never logs
secrets on purpose; this is the belt to that pair of braces.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"


class SecretRedactor(logging.Filter):
    """Replaces registered secret strings in every record with `***`."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if len(secret) >= 8:  # short strings would redact innocent text
            self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(formatted)
            record.exc_info = None
        return True


REDACTOR = SecretRedactor()


def setup_logging(
    log_dir: Path | None, *, name: str, level: str = "INFO", console: bool = False
) -> Path | None:
    """Configure the root logger: a file in `log_dir` (returned) and, if asked, stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    formatter = logging.Formatter(_FORMAT, _DATEFMT)
    path: Path | None = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(formatter)
        file_handler.addFilter(REDACTOR)
        root.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(level.upper())
        stream.setFormatter(formatter)
        stream.addFilter(REDACTOR)
        root.addHandler(stream)
    for noisy in ("websockets", "aiohttp", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
