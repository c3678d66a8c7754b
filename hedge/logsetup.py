"""Logging for operators: one line per decision, to a per-run file and (optionally) the terminal.

A redacting filter is installed on every handler, Python's last-resort stderr handler included:
any registered secret that reaches a log record (message, arguments or traceback text) is
replaced by `***`. Code never logs secrets on purpose; this is the belt to that pair of braces.
The crash log goes through the same `redact`.

A secret is recognised in every spelling of its bytes (as given, hex in either case with or
without 0x, base64) and by any 12-character piece of one: a library that prints a key's prefix
or lower-cases it still prints nothing usable.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import logging.handlers
import re
import string
import sys
from datetime import UTC, datetime
from pathlib import Path

from exchanges.common.tasks import PAIR

_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
_PAIR_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s [%(pair)s] %(name)s: %(message)s"
_DATEFMT = "%Y-%m-%d %H:%M:%S"

LOG_MAX_BYTES = 50 * 2**20  # a log file rotates at 50 MB
LOG_BACKUPS = 5  # and keeps five rotated files
FRAGMENT = 12  # the shortest piece of a secret that is redacted
_HALF = FRAGMENT // 2
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)  # keeps every offset
_HEX = re.compile(r"(?:0[xX])?((?:[0-9a-fA-F]{2})+)")


def spellings(secret: str) -> set[str]:
    """The secret as given and its bytes (read as hex, or as base64) spelled both ways."""
    text = secret.strip()
    forms = {text}
    decoded: list[bytes] = []
    hex_digits = _HEX.fullmatch(text)
    if hex_digits is not None:
        forms.add(hex_digits.group(1))
        decoded.append(bytes.fromhex(hex_digits.group(1)))
    with contextlib.suppress(binascii.Error, ValueError):  # not base64: nothing to add
        decoded.append(base64.b64decode(text, validate=True))
    for raw in decoded:
        if raw:
            forms |= {raw.hex(), base64.b64encode(raw).decode()}
    return forms


class SecretRedactor(logging.Filter):
    """Replaces every piece of a registered secret (FRAGMENT characters or longer) by `***`."""

    def __init__(self) -> None:
        super().__init__()
        self._windows: set[str] = set()  # every FRAGMENT-character piece, case-folded
        self._grams: set[str] = set()  # every half-FRAGMENT piece: a cheap first test

    def add(self, secret: str) -> None:
        """Register a secret; one shorter than FRAGMENT is not a key and is ignored (it would
        redact innocent text)."""
        for form in spellings(secret):
            folded = form.translate(_FOLD)
            if len(folded) >= FRAGMENT:
                self._windows |= _pieces(folded, FRAGMENT)
                self._grams |= _pieces(folded, _HALF)

    def redact(self, text: str) -> str:
        if not self._windows or len(text) < FRAGMENT:
            return text
        folded = text.translate(_FOLD)
        # Any FRAGMENT-long piece holds a half-piece that starts at a multiple of _HALF.
        starts = range(0, len(folded) - _HALF + 1, _HALF)
        if not any(folded[i : i + _HALF] in self._grams for i in starts):
            return text
        hidden = [False] * len(text)
        for start in range(len(folded) - FRAGMENT + 1):
            if folded[start : start + FRAGMENT] in self._windows:
                hidden[start : start + FRAGMENT] = [True] * FRAGMENT
        return _mask(text, hidden)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._windows:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad arguments: the handler reports it, unformatted
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = formatted
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _pieces(text: str, length: int) -> set[str]:
    return {text[i : i + length] for i in range(len(text) - length + 1)}


def _mask(text: str, hidden: list[bool]) -> str:
    """`text` with each run of hidden characters replaced by one `***`."""
    parts: list[str] = []
    for position, char in enumerate(text):
        if not hidden[position]:
            parts.append(char)
        elif position == 0 or not hidden[position - 1]:
            parts.append("***")
    return "".join(parts)


REDACTOR = SecretRedactor()
# Records logged before (or without) setup_logging reach stderr through this handler.
if logging.lastResort is not None:
    logging.lastResort.addFilter(REDACTOR)


def _rotating(path: Path) -> logging.Handler:
    """A log file that rotates by size (`<name>.log.1` ... `.5`): hours of unattended running
    at 1-3 KB a fill never fill the disk."""
    return logging.handlers.RotatingFileHandler(
        path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )


class PairTag(logging.Filter):
    """Tags a record with the pair whose task logged it ("account" for what pairs share);
    with `only`, passes that pair's records alone (its own log file)."""

    def __init__(self, only: str | None = None) -> None:
        super().__init__()
        self.only = only

    def filter(self, record: logging.LogRecord) -> bool:
        pair = PAIR.get() or "account"
        record.__dict__["pair"] = pair
        return self.only is None or pair == self.only


def setup_logging(
    log_dir: Path | None,
    *,
    name: str,
    level: str = "INFO",
    console: bool = False,
    pairs: tuple[str, ...] = (),
) -> Path | None:
    """Configure the root logger: a file in `log_dir` (returned) and, if asked, stderr. With
    several `pairs`, every line carries its pair and each pair also gets a file of its own
    lines, named `<PAIR>-<mode>-<time>.log` (`name` is `<PAIRS>-<mode>`)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG)
    formatter = logging.Formatter(_PAIR_FORMAT if len(pairs) > 1 else _FORMAT, _DATEFMT)
    path: Path | None = None
    handlers: list[logging.Handler] = []
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = f"{datetime.now(UTC):%Y%m%d-%H%M%S}"
        path = log_dir / f"{name}-{stamp}.log"
        handlers.append(_rotating(path))
        mode = name.rsplit("-", 1)[-1]
        for pair in pairs if len(pairs) > 1 else ():
            own = _rotating(log_dir / f"{pair}-{mode}-{stamp}.log")
            own.addFilter(PairTag(pair))
            handlers.append(own)
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(level.upper())
        handlers.append(stream)
    for handler in handlers:
        if handler.level == logging.NOTSET:
            handler.setLevel(logging.DEBUG)
        handler.setFormatter(formatter)
        if not handler.filters:
            handler.addFilter(PairTag())
        handler.addFilter(REDACTOR)
        root.addHandler(handler)
    for noisy in ("websockets", "aiohttp", "asyncio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
