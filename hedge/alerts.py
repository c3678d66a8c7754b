"""Alerts to a phone for unattended runs, through apprise (Telegram, Lark/Feishu, Discord,
Slack, ntfy, plain webhooks: one URL scheme each, see https://github.com/caronc/apprise/wiki).

Design:

- The bot calls `halt`, `unbalanced`, `external_change`, `reconnect_storm`,
  `rate_limit_storm` and `summary` from synchronous code on the event loop. Each builds one
  short line ("hedgebot BTC halted: <reason>"), passes it through the log redactor (a
  registered secret never leaves the process), asks the rate gate and, if admitted, puts it
  on a queue: nothing is awaited and nothing blocks, so the hedge path never waits on a phone.
- One owned background task (`start()`, `await close()`) takes the queue and sends each alert
  to every URL with apprise's async API (`Apprise.async_notify`, which runs the plugins'
  blocking HTTP in apprise's own thread pool), under a time limit per send. A failed send is
  a WARNING naming the URL masked (`tgram://***`), never an exception. `close()` gives what
  is queued a bounded time to go out, then cancels the task.
- The rate gate lets one alert per (kind, pair) through per `every_s` and at most
  `per_minute` in any 60 s; the ones it holds back are counted and the next alert of the same
  kind and pair says so ("(+3 more since the last)").
- An apprise URL often embeds a bot token: errors and logs show a URL as its scheme and,
  when it is a real host name, its host (`json://127.0.0.1/***`); the URL's long pieces are
  registered with the redactor so that apprise's own log lines are masked too.
- `StormDetector` decides when reconnects or HTTP 429s come thick enough to tell someone:
  a sliding window over counts the caller feeds it, with an injectable clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import apprise

from exchanges.base import ConfigError
from exchanges.common.tasks import start_unpaired
from hedge.logsetup import FRAGMENT, REDACTOR

log = logging.getLogger(__name__)

ENV_VAR = "HEDGEBOT_NOTIFY"
FLAG = "--notify"
MAX_BODY = 400  # characters of one alert's text
MINUTE_S = 60.0

STORM_WINDOW_S = 60.0
RECONNECT_STORM = 3  # reconnects within STORM_WINDOW_S
RATE_LIMIT_STORM = 5  # HTTP 429 answers within STORM_WINDOW_S

Clock = Callable[[], float]
Key = tuple[str, str]  # (kind, pair or venue)

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,31}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_URL_START = re.compile(r"[\s,;]+(?=[A-Za-z][A-Za-z0-9+.-]{0,31}://)")
_URL_PIECES = re.compile(r"[/@?&=:#;,\s]+")


# --- URLs -----------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """What may be shown of an apprise URL: its scheme and, if it is a real host name, its
    host; never a user, password, token, path or query (`tgram://***`)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "***"
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if _is_host_name(host):
        return REDACTOR.redact(f"{scheme}://{host}/***")
    return f"{scheme}://***"


def _is_host_name(host: str) -> bool:
    """A DNS name with a dot, an IPv4 address or localhost: not a token in the host's place
    (Telegram, Discord, Lark and ntfy put their secret there)."""
    if host.lower() == "localhost":
        return True
    labels = host.split(".")
    if len(labels) == 4 and all(label.isdigit() and int(label) < 256 for label in labels):
        return True
    return (
        len(host) <= 253
        and len(labels) >= 2
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def split_urls(text: str) -> list[str]:
    """The URLs in a comma/space separated list (a comma inside a URL's query is kept)."""
    return [piece.strip(" ,;\t\n") for piece in _URL_START.split(text) if piece.strip(" ,;")]


@contextlib.contextmanager
def _apprise_quiet() -> Iterator[None]:
    """Apprise logs a URL it cannot parse at ERROR, token and all: silence it meanwhile."""
    logger = logging.getLogger("apprise")
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def _plugin(url: str, source: str) -> apprise.NotifyBase:
    """The apprise service for `url`, or a one-line ConfigError naming `source` and the URL
    masked."""
    with _apprise_quiet():
        try:
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        except Exception:  # a plugin that raises anyway: the same answer, no traceback
            plugin = None
    if plugin is None:
        raise ConfigError(
            f"{source}: {mask_url(url)} is not a usable apprise URL "
            "(see https://github.com/caronc/apprise/wiki for the URL of each service)"
        )
    return plugin


def urls_from(flags: list[str] | None, env: Mapping[str, str]) -> list[str]:
    """The notification URLs: each `--notify` flag, then `HEDGEBOT_NOTIFY` (comma or space
    separated), duplicates dropped. Each is checked with apprise; a bad one is a ConfigError
    naming where it came from and the URL masked."""
    found: list[tuple[str, str]] = []
    for flag in flags or []:
        found += [(url, FLAG) for url in split_urls(flag)]
    found += [(url, ENV_VAR) for url in split_urls(env.get(ENV_VAR, ""))]
    urls: list[str] = []
    for url, source in found:
        _plugin(url, source)
        if url not in urls:
            urls.append(url)
    return urls


def _register_secrets(url: str) -> None:
    """Every long piece of the URL (a token, a password, a webhook path) joins the redactor,
    so that no log line, apprise's included, can print it."""
    rest = url.partition("://")[2]
    for piece in _URL_PIECES.split(rest):
        if len(piece) >= FRAGMENT and not _is_host_name(piece):
            REDACTOR.add(piece)


# --- rate gate and storms -------------------------------------------------------------------


class RateGate:
    """One alert per key per `every_s`, at most `per_minute` in any minute; the ones held back
    are counted per key and handed to the next alert of that key."""

    def __init__(self, every_s: float = 60.0, per_minute: int = 20, clock: Clock = time.monotonic):
        self.every_s = every_s
        self.per_minute = per_minute
        self._clock = clock
        self._last: dict[Key, float] = {}
        self._held: dict[Key, int] = {}
        self._sent: deque[float] = deque()

    def admit(self, key: Key) -> int | None:
        """None if the alert is held back (and counted); else how many of its key were held
        back since the last one that went out."""
        now = self._clock()
        while self._sent and now - self._sent[0] >= MINUTE_S:
            self._sent.popleft()
        last = self._last.get(key)
        if (last is not None and now - last < self.every_s) or len(self._sent) >= self.per_minute:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        self._sent.append(now)
        return self._held.pop(key, 0)

    def held(self) -> dict[Key, int]:
        """What is held back and not yet told, by key."""
        return dict(self._held)


class StormDetector:
    """Events (reconnects, 429s) in a sliding window: a storm begins when `threshold` of them
    fall within `window_s`, and ends when the window holds fewer again (then a new storm can
    begin). The caller feeds counts: `add(n)` for new events, `observe(total)` for a running
    total it keeps anyway."""

    def __init__(
        self, threshold: int, window_s: float = STORM_WINDOW_S, clock: Clock = time.monotonic
    ):
        if threshold < 1 or window_s <= 0:
            raise ValueError("a storm needs a threshold of 1 or more and a positive window")
        self.threshold = threshold
        self.window_s = window_s
        self._clock = clock
        self._events: deque[tuple[float, int]] = deque()
        self._count = 0
        self._storming = False
        self._total: int | None = None

    def add(self, count: int = 1) -> int | None:
        """Record `count` events now. The number in the window when a storm begins, else None
        (also while the storm goes on: it is told once)."""
        if count < 0:
            raise ValueError("a count of events cannot be negative")
        now = self._clock()
        if count:
            self._events.append((now, count))
            self._count += count
        self._expire(now)
        if self._count < self.threshold:
            self._storming = False
            return None
        if self._storming:
            return None
        self._storming = True
        return self._count

    def observe(self, total: int) -> int | None:
        """As `add`, from a running total: the events are those since the last observation
        (a total that went down was reset: it counts from there)."""
        previous, self._total = self._total, total
        if previous is None:
            return self.add(0)
        return self.add(max(0, total - previous))

    def in_window(self) -> int:
        self._expire(self._clock())
        return self._count

    @property
    def storming(self) -> bool:
        if self.in_window() < self.threshold:
            self._storming = False
        return self._storming

    def _expire(self, now: float) -> None:
        while self._events and now - self._events[0][0] >= self.window_s:
            self._count -= self._events.popleft()[1]


def reconnect_storms(clock: Clock = time.monotonic) -> StormDetector:
    """RECONNECT_STORM reconnects of one venue within a minute."""
    return StormDetector(RECONNECT_STORM, STORM_WINDOW_S, clock)


def rate_limit_storms(clock: Clock = time.monotonic) -> StormDetector:
    """RATE_LIMIT_STORM answers 429 from one venue within a minute."""
    return StormDetector(RATE_LIMIT_STORM, STORM_WINDOW_S, clock)


# --- alerts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Alert:
    title: str
    body: str
    notify_type: apprise.NotifyType


@dataclass(frozen=True)
class _Target:
    masked: str
    service: apprise.Apprise


def _line(text: str, limit: int = MAX_BODY) -> str:
    """One redacted line of at most `limit` characters."""
    flat = REDACTOR.redact(" ".join(str(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Alerts:
    """Alerts to the URLs given (none: every method does nothing). Call the alert methods from
    the event loop's thread; `start()` inside the running loop, `await close()` at the end."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        every_s: float = 60.0,
        per_minute: int = 20,
        flush_s: float = 5.0,
        send_timeout_s: float = 10.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._targets: list[_Target] = []
        for url in urls:
            _register_secrets(url)
            service = apprise.Apprise()
            service.add(_plugin(url, f"{FLAG}/{ENV_VAR}"))
            self._targets.append(_Target(mask_url(url), service))
        if self._targets and logging.getLogger("apprise").getEffectiveLevel() < logging.WARNING:
            logging.getLogger("apprise").setLevel(logging.WARNING)  # its DEBUG shows payloads
        self.gate = RateGate(every_s, per_minute, clock)
        self._flush_s = flush_s
        self._send_timeout_s = send_timeout_s
        self._queue: asyncio.Queue[_Alert] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._sending = 0  # alerts taken off the queue and not yet sent
        self._closed = False

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    @property
    def targets(self) -> list[str]:
        """The URLs, masked: what a startup line may show."""
        return [target.masked for target in self._targets]

    # --- what the bot calls (synchronous, returns at once) ---

    def halt(self, pair: str, reason: str) -> None:
        self._post("halt", pair, f"hedgebot {pair} halted", reason, apprise.NotifyType.FAILURE)

    def unbalanced(self, pair: str, text: str) -> None:
        self._post(
            "unbalanced", pair, f"hedgebot {pair} unbalanced", text, apprise.NotifyType.FAILURE
        )

    def external_change(self, pair: str, text: str) -> None:
        self._post(
            "external",
            pair,
            f"hedgebot {pair} external change",
            text,
            apprise.NotifyType.WARNING,
        )

    def reconnect_storm(self, venue: str, count: int, window_s: float) -> None:
        what = f"{count} reconnects in {window_s:.0f} s"
        title = f"hedgebot {venue} reconnect storm"
        self._post("reconnects", venue, title, what, apprise.NotifyType.WARNING)

    def rate_limit_storm(self, venue: str, count: int, window_s: float) -> None:
        what = f"{count} answers 429 (rate limited) in {window_s:.0f} s"
        title = f"hedgebot {venue} rate-limit storm"
        self._post("rate_limits", venue, title, what, apprise.NotifyType.WARNING)

    def summary(self, text: str) -> None:
        self._post("summary", "", "hedgebot summary", text, apprise.NotifyType.INFO)

    def _post(
        self, kind: str, pair: str, title: str, text: str, notify_type: apprise.NotifyType
    ) -> None:
        """Queue one alert if the gate lets it through; never raises, never waits."""
        if not self._targets or self._closed:
            return
        try:
            held = self.gate.admit((kind, pair))
            if held is None:
                return
            more = f" (+{held} more since the last)" if held else ""
            body = _line(f"{title}: {text}", MAX_BODY - len(more)) + more
            self._queue.put_nowait(_Alert(_line(title, 120), body, notify_type))
        except Exception:  # an alert must never break the caller's path
            log.warning("alert %s for %s not queued", kind, pair or "the run", exc_info=True)

    # --- the sender ---

    def start(self) -> None:
        """Start the sender (in the running loop); does nothing without URLs or twice."""
        if self._targets and self._task is None and not self._closed:
            start_unpaired(self._spawn)
            log.info("alerts to %s", ", ".join(self.targets))

    def _spawn(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="alerts-sender")

    async def close(self) -> None:
        """Let what is queued go out for up to `flush_s`, then stop the sender."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), self._flush_s)
        except TimeoutError:
            log.warning(
                "alerts: %d not sent within %.1f s of closing",
                self._queue.qsize() + self._sending,
                self._flush_s,
            )
        finally:
            task.cancel()
            await asyncio.wait({task})
        held = sum(self.gate.held().values())
        if held:
            log.info("alerts: %d held back by the rate limit were never sent", held)

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            self._sending += 1
            try:
                await asyncio.gather(*(self._send(target, alert) for target in self._targets))
            finally:
                self._sending -= 1
                self._queue.task_done()

    async def _send(self, target: _Target, alert: _Alert) -> None:
        """One alert to one URL; a failure is a WARNING with the URL masked."""
        try:
            result = await asyncio.wait_for(
                target.service.async_notify(
                    body=alert.body,
                    title=alert.title,
                    notify_type=alert.notify_type,
                    body_format=apprise.NotifyFormat.TEXT,
                ),
                self._send_timeout_s,
            )
        except TimeoutError:
            log.warning(
                "alert to %s not sent: no answer in %g s", target.masked, self._send_timeout_s
            )
            return
        except Exception as exc:  # the type only: an exception's text may hold the URL
            log.warning("alert to %s not sent: %s", target.masked, type(exc).__name__)
            return
        if not result:
            status = getattr(result, "status", None)
            why = status.name if status is not None else "failed"
            log.warning("alert to %s not sent: %s", target.masked, why)
        else:
            log.debug("alert sent to %s: %s", target.masked, alert.title)
