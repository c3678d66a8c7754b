"""Both simulated venues in one process: one market, a Backpack and a Lighter server, keys.

Used by `runbot.py sim` (venues alone, for a bot in another process), by `demo` (venues and bot
in one process) and by the end-to-end tests. Keys are generated fresh per start: an ED25519 pair
for Backpack and a Lighter API key from the bundled signer.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from exchanges.sim.backpack_server import BackpackServer, generate_keypair
from exchanges.sim.faults import FaultPlan
from exchanges.sim.lighter_server import LighterServer
from exchanges.sim.market import MarketParams, SimMarket

BACKPACK_ACCOUNT = 1
LIGHTER_ACCOUNT = 7
# 0-2 are reserved for the venue's web and mobile apps; ccxt signs only with 4..254.
LIGHTER_API_KEY_INDEX = 4


class _ApiKeyResponse(ctypes.Structure):
    _fields_ = [
        ("privateKey", ctypes.c_void_p),
        ("publicKey", ctypes.c_void_p),
        ("err", ctypes.c_void_p),
    ]


def generate_lighter_key() -> tuple[str, str]:
    """(private hex, public hex) from lighter-sdk's bundled signer library.

    The library is loaded directly: importing the `lighter` package costs ~4 s of model imports
    here, which would make `sim` slow to start for nothing.
    """
    spec = importlib.util.find_spec("lighter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("lighter-sdk is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / "signers"
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "amd64"
    if platform.system() == "Darwin":
        name = f"lighter-signer-darwin-{arch}.dylib"
    elif platform.system() == "Windows":
        name = "lighter-signer-windows-amd64.dll"
    else:
        name = f"lighter-signer-linux-{arch}.so"
    library = ctypes.CDLL(os.fspath(folder / name))
    library.GenerateAPIKey.argtypes = []
    library.GenerateAPIKey.restype = _ApiKeyResponse
    library.Free.argtypes = [ctypes.c_void_p]
    library.Free.restype = None
    result = library.GenerateAPIKey()
    values: list[str | None] = []
    for pointer in (result.privateKey, result.publicKey, result.err):
        if not pointer:
            values.append(None)
            continue
        raw = ctypes.cast(pointer, ctypes.c_char_p).value
        library.Free(pointer)
        values.append(raw.decode() if raw is not None else None)
    private_key, public_key, error = values
    if error or not private_key or not public_key:
        raise RuntimeError(f"lighter signer could not generate a key: {error}")
    return private_key, public_key


@dataclass(frozen=True)
class SimKeys:
    backpack_public: str
    backpack_secret: str
    lighter_private: str
    lighter_public: str


LIGHTER_TIERS = ("standard", "premium", "unlimited")


class SimCluster:
    """One SimMarket behind a Backpack and a Lighter server on free loopback ports.

    The venues are as strict as the real ones by default: Lighter's Standard tier (taker orders
    executed 300 ms after they are accepted, 60 requests a minute) and Backpack's rate limit and
    history lag. `lighter_tier="unlimited"`, `backpack_rate_limit=None` and
    `backpack_history_lag_s=0` give the kind venues of the first round, for the tests of code
    that cannot yet live within the real budgets. `market_params` is the market model
    (volatility, basis, taker flow; default `MarketParams()`).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        faults: str = "none",
        fill_rate: float = 1.0,
        tick_interval: float = 0.1,
        keys: SimKeys | None = None,
        backpack_port: int = 0,
        lighter_port: int = 0,
        lighter_tier: str = "standard",
        backpack_rate_limit: int | None = 2000,
        backpack_history_lag_s: float = 0.5,
        lighter_connection_max_age_s: float = 24 * 3600,
        market_params: MarketParams | None = None,
    ) -> None:
        self.fault_plan = FaultPlan(faults, seed=seed)
        self.market = SimMarket(
            seed=seed,
            faults=self.fault_plan,
            fill_rate=fill_rate,
            tick_interval=tick_interval,
            params=market_params,
        )
        if keys is None:
            bp_public, bp_secret = generate_keypair()
            lt_private, lt_public = generate_lighter_key()
            keys = SimKeys(bp_public, bp_secret, lt_private, lt_public)
        self.keys = keys
        self.lighter_tier = lighter_tier
        self.backpack = BackpackServer(
            self.market,
            api_keys={keys.backpack_public: BACKPACK_ACCOUNT},
            port=backpack_port,
            rate_limit=backpack_rate_limit,
            history_lag_s=backpack_history_lag_s,
        )
        self.lighter = LighterServer(
            self.market,
            accounts={LIGHTER_ACCOUNT: {LIGHTER_API_KEY_INDEX: keys.lighter_public}},
            port=lighter_port,
            tier=lighter_tier,
            connection_max_age_s=lighter_connection_max_age_s,
        )

    async def start(self) -> None:
        await self.backpack.start()
        await self.lighter.start()
        await self.market.start()

    async def stop(self) -> None:
        await self.market.stop()
        await self.backpack.stop()
        await self.lighter.stop()

    def env(self) -> dict[str, str]:
        """The variables `run --env-file` needs to trade against this cluster."""
        return {
            "BACKPACK_API_URL": self.backpack.api_url,
            "BACKPACK_WS_URL": self.backpack.ws_url,
            "LIGHTER_API_URL": self.lighter.api_url,
            "LIGHTER_WS_URL": self.lighter.ws_url,
            "BACKPACK_PUBLIC_KEY": self.keys.backpack_public,
            "BACKPACK_SECRET_KEY": self.keys.backpack_secret,
            "LIGHTER_API_PRIVATE_KEY": self.keys.lighter_private,
            "LIGHTER_ACCOUNT_INDEX": str(LIGHTER_ACCOUNT),
            "LIGHTER_API_KEY_INDEX": str(LIGHTER_API_KEY_INDEX),
            # The bot budgets for the account's tier; an unlimited sim has none, so Premium's.
            "LIGHTER_ACCOUNT_TIER": "standard" if self.lighter_tier == "standard" else "premium",
        }

    def write_env(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# Written by `runbot.py sim`: simulated venues on loopback, generated keys."]
        lines += [f"{name}={value}" for name, value in self.env().items()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)

    def truth(self) -> dict[str, object]:
        return self.market.truth()

    def requests(self) -> dict[str, dict[str, object]]:
        """What each venue received from the bot's account (the simulators' own ledgers)."""
        return {
            "backpack": self.backpack.ledger.account(str(BACKPACK_ACCOUNT)),
            "lighter": self.lighter.ledger.account(str(LIGHTER_ACCOUNT)),
        }

    def requests_summary(self) -> str:
        parts = []
        for venue, counts in self.requests().items():
            ledger = self.backpack.ledger if venue == "backpack" else self.lighter.ledger
            sockets = ledger.websockets()
            parts.append(
                f"{venue} {counts['requests_total']} requests ({counts['send_tx']} orders/txs, "
                f"{counts['http_429']} answered 429), {sockets['opened']} WebSocket "
                f"connection(s), at most {sockets['most_open']} at once"
            )
        return "; ".join(parts)

    def bot_positions(self, ticker: str) -> str:
        """The bot accounts' positions and open orders as the venues themselves hold them."""
        maker = self.market.account("backpack", BACKPACK_ACCOUNT).position(ticker).qty
        hedge = self.market.account("lighter", LIGHTER_ACCOUNT).position(ticker).qty
        open_orders = len(self.market.book("backpack", ticker).open_orders(BACKPACK_ACCOUNT))
        open_orders += len(self.market.book("lighter", ticker).open_orders(LIGHTER_ACCOUNT))
        return (
            f"backpack position {maker}, lighter position {hedge}, net {maker + hedge}, "
            f"open orders {open_orders}"
        )
