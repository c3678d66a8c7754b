"""What every pair on one Lighter account and API key shares.

The venue limits requests per account, counts nonces per API key and connections per IP: a
process trading ten pairs must look like one client, not ten. One `SharedAccount` holds

* the REST client and the account's one `RequestBudget`,
* the one `NonceSequencer` of the API key (two pairs never draw the same nonce: a hedge holds
  it from signing until the venue answers) and the `SignerKeys` (one signer, one pool of
  signing threads, one auth token),
* the one keep-alive sendTx connection, kept warm without requests,
* the one WebSocket (`SharedSocket`), on which each pair subscribes its market's book and
  orders; the account-wide `account_all` channel is subscribed once per connection.

Each `LighterVenue` takes its parts from here; a venue built without one makes its own. The
first pair to connect opens what is shared, the last to close closes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

from exchanges.base import VenueError
from exchanges.common.budget import LIGHTER_TIERS, RequestBudget
from exchanges.common.retry import with_retries
from exchanges.common.shared_ws import ANY, SharedSocket
from exchanges.common.ws import Frame
from exchanges.lighter.nonce import NonceSequencer
from exchanges.lighter.rest import LighterRest
from exchanges.lighter.signing import Signer, SignerKeys
from exchanges.lighter.transport import TxSender

if TYPE_CHECKING:
    from exchanges.lighter.session import Session

log = logging.getLogger(__name__)

# Lighter closes sockets that stay silent for 2 minutes.
# Lighter takes 200 client messages a minute per connection (30009 past that): ours stay under.
WS_MESSAGES_PER_MINUTE = 180
_WS_OPTIONS = {
    "app_ping_text": json.dumps({"type": "pong"}),
    "app_ping_interval": 60.0,
    "messages_per_minute": WS_MESSAGES_PER_MINUTE,
}


def route(frame: Frame) -> str | None:
    """The market a frame belongs to (`order_book:1`, `account_orders:1` -> "1"); None for
    account-wide channels and error frames (every pair reads them); ANY for a ping."""
    try:
        message = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    channel = message.get("channel")
    if not isinstance(channel, str):
        return ANY if message.get("type") == "ping" else None
    kind, _, rest = channel.replace("/", ":").partition(":")
    if kind in ("order_book", "account_orders"):
        return rest.split(":", 1)[0]
    return None


class SharedAccount:
    """One Lighter account and API key, as every pair traded on it uses it."""

    keep_warm_s = 20.0  # an idle sendTx connection is replaced (no request) this often
    key_watch_s = 2.0  # after the first nonce, its second reading: moved = another process

    def __init__(self, api_url: str, ws_url: str, budget: RequestBudget | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.ws_url = ws_url
        self.budget = budget or RequestBudget(LIGHTER_TIERS["standard"])
        self.keys = SignerKeys()
        self.socket = SharedSocket(ws_url, name="lighter", route=route, **_WS_OPTIONS)
        self._rest: LighterRest | None = None
        self.nonces: NonceSequencer | None = None
        self.sender: TxSender | None = None
        self._users = 0
        self._opened = False
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []  # keep-warm, key watch

    def rest_for(self, session: Session) -> LighterRest:
        """The account's REST client (account-level settings come from the first pair)."""
        if self._rest is None:
            self._rest = LighterRest(session)
            self.nonces = NonceSequencer(self._rest.next_nonce)
        return self._rest

    def join(self) -> None:
        self._users += 1

    async def open(self, session: Session, signer: Signer, private_key: str | None) -> None:
        """Once for all pairs: the REST client, the sendTx connection and, with keys, the
        checked signer, the nonce, a token and the warm connection."""
        async with self._lock:
            if self._opened:
                return
            rest = self.rest_for(session)
            rest.open(self.api_url)
            self.sender = TxSender(self.api_url, session.send_timeout, session.request_timeout)
            if private_key is not None:
                # The key check is one request of the Go signer's own (no retry of ours
                # around it otherwise): a 5xx burst at start must not fail the start.
                await with_retries(
                    lambda: signer.start(self.api_url, private_key),
                    attempts=session.retry_attempts + 1,
                    venue="lighter",
                    logger=log,
                )
                assert self.nonces is not None
                async with self.nonces.holding() as hold:
                    await hold.refresh()
                await signer.auth_token()
                # Open the sendTx connection ahead, so that a hedge never pays for a TCP/TLS
                # handshake. Nothing is sent: a connection costs no request of the budget.
                await self.sender.preconnect()
                loop = asyncio.get_running_loop()
                self._tasks = [
                    loop.create_task(self._keep_warm_loop(), name="lighter-keep-warm"),
                    loop.create_task(self._watch_key(), name="lighter-key-watch"),
                ]
            self._opened = True

    async def leave(self, *, joined: bool = True) -> None:
        """A pair is done with the account (`joined`: it had joined); the last one closes
        what is shared."""
        self._users -= int(joined)
        if self._users > 0:
            return
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.sender is not None:
            await self.sender.close()
            self.sender = None
        await self.keys.close()
        if self._rest is not None:
            await self._rest.close()
        self._opened = False

    async def _keep_warm_loop(self) -> None:
        """Owned task: replace the idle sendTx connection by a fresh one before servers drop
        it (~60 s idle), without a request."""
        while True:
            await asyncio.sleep(self.keep_warm_s / 2)
            sender = self.sender
            if sender is not None and time.monotonic() - sender.last_used >= self.keep_warm_s:
                await sender.refresh()

    async def _watch_key(self) -> None:
        """Owned task, once at start: read the nonce again a moment after the first reading.
        If it moved while we sent nothing, another process sends with this API key: say so
        (`NonceSequencer.contest`) rather than fight it over every nonce. One request."""
        await asyncio.sleep(self.key_watch_s)
        nonces, rest = self.nonces, self._rest
        assert nonces is not None and rest is not None
        async with nonces.holding():  # a transaction of ours is out: wait for its answer
            expected = nonces.next
        if expected is None:
            return  # an outcome of ours is unknown: the reading would prove nothing
        try:
            venue = await rest.next_nonce()
        except VenueError as exc:
            log.info("lighter key watch: nextNonce not read (%s); skipped", exc)
            return
        if nonces.lock.locked() or nonces.next != expected:
            return  # we sent meanwhile: no verdict
        if venue > expected:
            session = rest.session
            nonces.contest(
                f"another process is sending with Lighter account {session.account_index} "
                f"API key {session.api_key_index}: its nonce moved from {expected} to {venue} "
                f"within {self.key_watch_s:g} s while this bot sent nothing. Stopping instead "
                "of fighting over nonces: stop the other process, or give each bot its own "
                "API key"
            )
