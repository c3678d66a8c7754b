"""The run and demo commands: their settings and `Outputs` from the flags and profile
(`chosen`), then `execute`: logs, the start checks (hedge/ops.py), one pair (with its
dashboard) or several (with theirs), and what the operator gets on the side — alerts
(`--notify`), Prometheus metrics (`--metrics-port`) — then the summaries and the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from hedge.config import Mode, Settings, TradingFlags, load_settings, read_env, with_endpoints
from hedge.ops import (
    check_paths,
    err,
    fit_budget,
    market_params,
    out,
    preflight_pairs,
    print_summary,
    print_totals,
    quiet_console,
    sim_options,
)

if TYPE_CHECKING:
    import typer

    from exchanges.sim.runner import SimCluster
    from hedge.app import Accounts, BotRun
    from hedge.engine import HedgeEngine
    from hedge.profile import Resolved
    from hedge.watch import RunWatch


@dataclass(frozen=True)
class Outputs:
    """What a run tells the operator besides its screen and logs."""

    notify: tuple[str, ...] = ()  # apprise URLs
    metrics_port: int | None = None
    summary_every_s: float = 0.0  # a periodic summary alert (0: none)

    @staticmethod
    def from_flags(
        notify: list[str] | None,
        metrics_port: str | None,
        summary_minutes: str | None,
        env: Mapping[str, str],
    ) -> Outputs:
        """Validated before anything starts: ConfigError naming the flag."""
        from exchanges.base import ConfigError
        from hedge.alerts import urls_from

        urls = urls_from(notify, env)
        port = None
        if metrics_port is not None:
            from hedge.metrics import parse_port

            port = parse_port(metrics_port)
        every = 0.0
        if summary_minutes is not None:
            try:
                every = float(summary_minutes) * 60
            except ValueError:
                every = -1.0
            if not 0 < every <= 7 * 86_400 or not urls:
                raise ConfigError(
                    f"--notify-summary {summary_minutes!r}: expected minutes between summary "
                    "alerts (more than 0, at most a week), with --notify"
                )
        return Outputs(tuple(urls), port, every)


@dataclass
class _Run:
    """The engines of the run as they start, and what watches them."""

    engines: list[HedgeEngine] = field(default_factory=list)
    watch: RunWatch | None = None

    def started(self, engine: HedgeEngine) -> None:
        self.engines.append(engine)

    def finished(self, settings: Settings, bot: BotRun) -> None:
        if self.watch is not None:
            self.watch.finished(settings.ticker, bot.result)


def execute(
    pairs: list[Settings],
    *,
    plain: bool,
    cluster_factory: Callable[[], SimCluster] | None = None,
    max_net_usd: Decimal | None = None,
    yes: bool = False,
    outputs: Outputs | None = None,
) -> int:
    """Run the bot on each pair (and, for the demo, the simulated venues first); returns the
    exit code that most needs a human."""
    from hedge.logsetup import setup_logging

    fit_budget(pairs, yes=yes)
    first = pairs[0]
    plain = plain or not out.is_terminal
    names = "+".join(s.ticker for s in pairs)
    log_path = setup_logging(
        first.log_dir,
        name=f"{names}-{first.mode.tag}",
        console=plain,
        pairs=tuple(s.ticker for s in pairs),
    )
    out.print(f"log file: {log_path}")
    job = _execute(pairs, plain, cluster_factory, max_net_usd, outputs or Outputs())
    return asyncio.run(job)


async def _execute(
    pairs: list[Settings],
    plain: bool,
    cluster_factory: Callable[[], SimCluster] | None,
    max_net_usd: Decimal | None,
    outputs: Outputs,
) -> int:
    from hedge.app import shared_accounts
    from hedge.pairs import key_lock

    cluster = None
    run_pairs = pairs
    with quiet_console():
        if cluster_factory is not None:
            cluster = cluster_factory()
            await cluster.start()
            run_pairs = [with_endpoints(s, cluster.env()) for s in pairs]
    try:
        with key_lock(run_pairs[0]):
            accounts = shared_accounts(run_pairs[0])
            with quiet_console():
                await preflight_pairs(run_pairs, accounts)
            run = _Run()
            async with _operator_outputs(outputs, run):
                code = await _run_all(run_pairs, accounts, plain, cluster, max_net_usd, run)
    finally:
        venue_truth = ""
        if cluster is not None:
            venue_truth = "; ".join(
                f"{s.ticker}: {cluster.bot_positions(s.ticker)}" for s in run_pairs
            )
            venue_truth += f"; {cluster.requests_summary()}"
            await cluster.stop()
    if cluster is not None:
        out.print(f"simulated venues' own records: {venue_truth}", soft_wrap=True)
    return code


@contextlib.asynccontextmanager
async def _operator_outputs(outputs: Outputs, run: _Run) -> AsyncIterator[None]:
    """Alerts and the watch that feeds them, and the metrics server, for the run's length."""
    alerts = metrics = watching = None
    try:
        if outputs.metrics_port is not None:
            from hedge.metrics import serve

            metrics = serve(outputs.metrics_port, lambda: list(run.engines))
            out.print(f"metrics: {metrics.url}")
        if outputs.notify:
            from hedge.alerts import Alerts
            from hedge.watch import RunWatch

            alerts = Alerts(list(outputs.notify))
            alerts.start()
            run.watch = RunWatch(
                alerts, lambda: list(run.engines), summary_every_s=outputs.summary_every_s
            )
            watching = asyncio.create_task(run.watch.run(), name="alert-watch")
            out.print(f"alerts to: {', '.join(alerts.targets)}")
        yield
    finally:
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            if run.watch is not None:
                run.watch.look()  # what happened since the last look, before closing
        if alerts is not None:
            await alerts.close()
        if metrics is not None:
            await metrics.aclose()


async def _run_all(
    pairs: list[Settings],
    accounts: Accounts,
    plain: bool,
    cluster: SimCluster | None,
    max_net_usd: Decimal | None,
    run: _Run,
) -> int:
    """One pair with its dashboard (unless plain), or several with theirs; summaries printed;
    the exit code."""
    from hedge.app import build_venues, run_bot, run_pairs, worst_exit
    from hedge.dashboard import Dashboard, PairsDashboard
    from hedge.pairs import account_totals

    several = len(pairs) > 1 or max_net_usd is not None
    screen = None if plain else (PairsDashboard(out) if several else Dashboard(out))
    if screen is not None and cluster is not None:
        sim = cluster
        screen.faults_seen = lambda: dict(sim.fault_plan.fired)
    hooks = [run.started] + ([screen.attach] if screen is not None else [])

    def started(engine: HedgeEngine) -> None:
        for hook in hooks:
            hook(engine)

    try:
        if several:
            bots = await run_pairs(
                pairs,
                accounts=accounts,
                max_net_usd=max_net_usd,
                on_started=started,
                on_finished=run.finished,
            )
        else:
            maker, hedge = build_venues(pairs[0], accounts=accounts)
            status = None if screen is None else screen.status
            bot = await run_bot(
                pairs[0],
                maker=maker,
                hedge=hedge,
                ids=accounts.ids,
                status=status,
                on_started=started,
            )
            run.finished(pairs[0], bot)
            bots = [bot]
    finally:
        if screen is not None:
            await screen.stop()
    for settings, bot in zip(pairs, bots, strict=True):
        if several:
            out.print(f"[bold]{settings.ticker}[/]", markup=True)
        print_summary(bot.summary, bot.journal_path, bot.result.reason)
    if several:
        print_totals(
            account_totals({s.ticker: b.summary for s, b in zip(pairs, bots, strict=True)})
        )
    return worst_exit([b.result.exit_code for b in bots])


# -- the run and demo commands ---------------------------------------------------------------


def chosen(
    ctx: typer.Context, params: dict[str, object]
) -> tuple[Resolved, Decimal | None, Outputs]:
    """A run/demo/check command's settings: its flags over its `--config` profile over its
    defaults, per pair (hedge/profile.py), and the account-wide ones: `--max-net-usd` and what
    the operator gets (`Outputs`). A bad value set in the profile is blamed on it."""
    from hedge.pairs import max_net_usd
    from hedge.profile import from_command

    resolved = from_command(ctx, params)
    extra = resolved.extras
    env_file = params.get("env_file")
    # HEDGEBOT_NOTIFY may sit in .env beside the keys (an alert URL carries a token).
    env, _ = read_env(
        Path(str(env_file)) if env_file else Path(".env"), explicit=env_file is not None
    )
    with resolved.blamed():
        cap = max_net_usd(extra["max_net_usd"])  # type: ignore[arg-type]
        outputs = Outputs.from_flags(
            extra["notify"],  # type: ignore[arg-type]
            extra["metrics_port"],  # type: ignore[arg-type]
            extra["notify_summary"],  # type: ignore[arg-type]
            env,
        )
    return resolved, cap, outputs


def run(
    pairs: list[Settings],
    *,
    plain: bool,
    max_net_usd: Decimal | None = None,
    yes: bool = False,
    outputs: Outputs | None = None,
) -> int:
    """A live or paper run of one pair or several, after pointing at an unfinished run of
    another journal."""
    from hedge.app import unfinished_elsewhere

    for settings in pairs:
        check_paths(settings)
        unfinished = unfinished_elsewhere(settings.journal)
        if unfinished is not None:
            err.print(
                f"note: {unfinished} has an unfinished run; to resume its state use "
                f"--journal {unfinished}",
                soft_wrap=True,
            )
    return execute(pairs, plain=plain, max_net_usd=max_net_usd, yes=yes, outputs=outputs)


def demo(
    pair_flags: list[TradingFlags],
    *,
    market: list[str] | None,
    seed: str,
    faults: str,
    lighter_tier: str,
    plain: bool,
    max_net_usd: Decimal | None = None,
    yes: bool = False,
    outputs: Outputs | None = None,
) -> int:
    """The demo: simulated venues in-process, the real bot against them; the exit code.
    Several `pair_flags` trade several pairs at once on the one simulated account."""
    from exchanges.sim.market import DEFAULT_TICKERS
    from exchanges.sim.runner import SimCluster

    pairs: list[Settings] = []
    for flags in pair_flags:
        ticker, seed_value, faults = sim_options(flags.ticker, seed, faults, lighter_tier)
        spec = DEFAULT_TICKERS[ticker]
        default_size = max(spec.backpack.min_qty, spec.lighter.min_qty) * 10
        # The journal defaults to <log-dir>/<PAIR>-demo-<time>.sqlite (load_settings).
        flags = replace(flags, ticker=ticker, size=flags.size or str(default_size))
        # The bot knows its simulated account's tier as it would a real one's (budget, fees).
        tier = {"LIGHTER_ACCOUNT_TIER": "premium" if lighter_tier == "premium" else "standard"}
        pairs.append(load_settings(flags, mode=Mode.DEMO, env=tier))
    for settings in pairs:
        check_paths(settings)
    model = market_params(market)

    def cluster_factory() -> SimCluster:
        return SimCluster(
            seed=seed_value, faults=faults, lighter_tier=lighter_tier, market_params=model
        )

    what = ", ".join(f"{s.size} {s.ticker}" for s in pairs)
    out.print(
        f"demo: simulated venues on loopback (seed {seed_value}, faults {faults}, "
        f"Lighter tier {lighter_tier}); {pairs[0].iterations} iteration(s) of {what}"
    )
    return execute(
        pairs,
        plain=plain,
        cluster_factory=cluster_factory,
        max_net_usd=max_net_usd,
        yes=yes,
        outputs=outputs,
    )
