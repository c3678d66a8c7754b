"""The book throughput benchmark runs end to end and prints one JSON line of figures."""

from __future__ import annotations

import json

import pytest

from bench.book_throughput import main


def test_benchmark_prints_one_json_line_with_both_venue_rates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--messages", "200"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["bench"] == "book_throughput"
    assert figures["messages"] == 200
    assert figures["backpack_msgs_per_s"] > 0
    assert figures["lighter_msgs_per_s"] > 0
    assert figures["gaps"] == 0
    assert figures["top_matches_model"] is True


def test_benchmark_refuses_a_non_positive_message_count() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--messages", "0"])
    assert exit_info.value.code == 2
