"""ED25519 signing of Backpack requests and of the private WebSocket subscribe.

bpx-py's `Account` holds the key and signs (the string to sign: `instruction=<instr>` + the
parameters sorted by key + `&timestamp=<ms>&window=<window>`, protocols/backpack.md); this
module builds that account from the keys, and signs what bpx-py does not send for us: the
private subscribe and our own cancel request.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping

from bpx.async_.account import Account as BpxAccount

from exchanges.backpack.constants import SUBSCRIBE_WINDOW_MS
from exchanges.base import ConfigError
from exchanges.common.http import KeepAliveHttpClient


def make_account(
    public_key: str, secret_key: str, http: KeepAliveHttpClient, api_url: str
) -> BpxAccount:
    """bpx-py's signing account over our HTTP client. ConfigError for a secret that is not a
    base64 ED25519 seed; the message never includes the key itself."""
    try:
        raw = base64.b64decode(secret_key, validate=True)
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        account = BpxAccount(public_key, secret_key, http_client=http)
    except (ValueError, binascii.Error) as exc:
        raise ConfigError("BACKPACK_SECRET_KEY is not a base64 ED25519 seed") from exc
    account.BPX_API_URL = api_url
    return account


def subscribe_message(account: BpxAccount, streams: list[str]) -> dict[str, object]:
    """The signed `SUBSCRIBE` of private streams: bpx-py's own signer over exactly
    `instruction=subscribe&timestamp=<ts>&window=<window>`."""
    timestamp = time.time_ns() // 1_000_000
    window = SUBSCRIBE_WINDOW_MS
    signature = account._sign({}, "subscribe", timestamp, window)
    return {
        "method": "SUBSCRIBE",
        "params": streams,
        "signature": [account.public_key, signature, str(timestamp), str(window)],
    }


def signed_headers(
    account: BpxAccount, params: Mapping[str, object], instruction: str
) -> dict[str, str]:
    """Headers (`X-API-Key`, `X-Signature`, `X-Timestamp`, `X-Window`) of a request we send
    ourselves, signed over `params` as bpx-py would (`str` of each value)."""
    headers: dict[str, str] = account._headers(dict(params), instruction, window=None)
    return headers
