"""What the parts of one LighterVenue share: its settings, the market once loaded, the
connections once open, and the counters tests, benchmarks and the dashboard read."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from exchanges.base import ConfigError, FeeRates, Market, VenueError
from exchanges.common.budget import LIGHTER_TIERS, RequestBudget
from exchanges.common.ws import ReconnectingWebSocket
from exchanges.lighter.scaling import Scales
from exchanges.lighter.transport import TxSender


@dataclass(slots=True)
class Stats:
    sign_calls: int = 0  # transactions signed (any path)
    presign_signs: int = 0  # of which by the background pre-signer
    token_calls: int = 0
    presigned_used: int = 0
    signed_on_spot: int = 0
    last_hedge_path: str = ""  # "presigned" | "signed"
    last_send_ns: int = 0  # perf_counter_ns() right before the last sendTx was posted
    # client id -> perf_counter_ns() right after its (first) sendTx request was written, either
    # path; benchmarks pair it with the maker fill that triggered the hedge.
    write_ns_by_client: OrderedDict[int, int] = field(default_factory=OrderedDict)
    fast_sends: int = 0  # hedges written by try_send_now
    fills_delivered: int = 0
    duplicates_dropped: int = 0
    malformed: int = 0
    resubscribes: int = 0
    reconciles: int = 0
    invalid_nonces: int = 0
    client_id_refusals: int = 0  # re-sends refused 21728: the first copy exists


@dataclass(slots=True)
class Session:
    """Settings (fixed), plus what connect() sets up and close() clears."""

    ticker: str
    account_index: int | None
    api_key_index: int | None
    keyed: bool
    request_timeout: float
    confirm_timeout: float
    send_timeout: float
    retry_attempts: int
    max_remembered: int
    stats: Stats = field(default_factory=Stats)
    # The account's one request budget: every REST read and every sendTx passes it.
    budget: RequestBudget = field(default_factory=lambda: RequestBudget(LIGHTER_TIERS["standard"]))
    fees: FeeRates = field(default_factory=FeeRates)  # the account tier's trading fees
    market: Market | None = None
    scales: Scales | None = None
    sender: TxSender | None = None
    ws: ReconnectingWebSocket | None = None

    def require_market(self) -> Market:
        if self.market is None:
            raise VenueError("lighter: market rules not loaded; call connect() first")
        return self.market

    @property
    def market_id(self) -> int:
        market_id = self.require_market().market_id
        assert market_id is not None
        return market_id

    @property
    def symbol(self) -> str:
        return self.require_market().symbol

    def require_scales(self) -> Scales:
        if self.scales is None:
            raise VenueError("lighter: market rules not loaded; call connect() first")
        return self.scales

    def require_sender(self) -> TxSender:
        if self.sender is None:
            raise VenueError("lighter: not connected; call connect() first")
        return self.sender

    def account(self) -> int:
        if self.account_index is None:
            raise ConfigError("LIGHTER_ACCOUNT_INDEX is required for account data")
        return self.account_index

    def record_write(self, client_id: int, write_ns: int) -> None:
        # The first write is the hedge's latency; a re-send (5xx, invalid nonce) keeps it.
        written = self.stats.write_ns_by_client
        if client_id not in written:
            written[client_id] = write_ns
            if len(written) > self.max_remembered:
                written.popitem(last=False)
