"""`account.positionUpdate` frames -> PositionUpdate, on recorded frames (no socket).

The frames are literals in the venue's wire format, never ones written by the simulator (a test
double that shares the code under test shares its mistakes). /work/shared/protocols/backpack.md
documents the kinds (`e` positionOpened / positionAdjusted / positionClosed, and a snapshot
without `e` on subscribe), `q` the signed net quantity, `B` entry price, `M` mark price, `P`/`p`
PnL, and `E`/`T` in microseconds on every account event. The other fields (`b` break-even
price, `l` liquidation price, `f`/`m` margin fractions, `Q`/`n` net exposure, `i` position id)
fill the payload out as Backpack's API docs list it; the notes do not confirm them and the
parser reads none of them.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchanges.backpack.parsing import PARSE_ERRORS, frame_parts, parse_position_update

# A short of 0.004 BTC after a fill.
ADJUSTED = (
    '{"stream":"account.positionUpdate.BTC_USDC_PERP","data":{"e":"positionAdjusted",'
    '"E":1764468000123456,"s":"BTC_USDC_PERP","b":"65000.2","B":"65000.2","l":"0",'
    '"f":"0.02","M":"65001.05","m":"0.0125","q":"-0.004","Q":"0.004","n":"260.0042",'
    '"i":"1111343026172067","p":"0.0012","P":"-0.0034","T":1764468000123400}}'
)
# Sent on subscribe: the same fields without `e`.
SNAPSHOT = (
    '{"stream":"account.positionUpdate.BTC_USDC_PERP","data":{"E":1764468000000000,'
    '"s":"BTC_USDC_PERP","b":"65000","B":"65000","l":"0","f":"0.02","M":"65000",'
    '"m":"0.0125","q":"0.002","Q":"0.002","n":"130","i":"1111343026172067","p":"0",'
    '"P":"0","T":1764468000000000}}'
)
CLOSED = (
    '{"stream":"account.positionUpdate.BTC_USDC_PERP","data":{"e":"positionClosed",'
    '"E":1764468001000000,"s":"BTC_USDC_PERP","b":"0","B":"0","l":"0","f":"0.02",'
    '"M":"65002","m":"0.0125","q":"0","Q":"0","n":"0","i":"1111343026172067","p":"-0.0022",'
    '"P":"0","T":1764468001000000}}'
)


def test_position_adjusted_gives_the_signed_net_quantity() -> None:
    _, stream, data = frame_parts(ADJUSTED)
    assert stream == "account.positionUpdate.BTC_USDC_PERP" and isinstance(data, dict)

    update = parse_position_update(data)

    assert update.symbol == "BTC_USDC_PERP"
    assert update.net_qty == Decimal("-0.004")
    assert update.engine_ms == 1764468000123


def test_the_snapshot_on_subscribe_has_no_event_kind_and_still_parses() -> None:
    _, _, data = frame_parts(SNAPSHOT)
    assert isinstance(data, dict)

    assert parse_position_update(data).net_qty == Decimal("0.002")


def test_position_closed_is_zero() -> None:
    _, _, data = frame_parts(CLOSED)
    assert isinstance(data, dict)

    assert parse_position_update(data).net_qty == 0


@pytest.mark.parametrize(
    "data",
    [
        {"s": "BTC_USDC_PERP"},
        {"s": "BTC_USDC_PERP", "q": "NaN"},
        {"s": "BTC_USDC_PERP", "q": None},
        {"q": "1"},
    ],
)
def test_a_malformed_position_update_raises_a_parse_error(data: dict[str, object]) -> None:
    with pytest.raises(PARSE_ERRORS):
        parse_position_update(data)
