"""``cityhub``: run the hub, check a config, control plugins, watch and replay the unified stream, and
start a new connector.

    cityhub run [-c cityhub.toml] [--admin-port N]   run the hub (embedded nats-server when no servers are
                                         configured); run it twice for a standby (docs/operations.md)
    cityhub demo [--for 40s] [--verbose] [--tiers]   everything, with simulators and sample grids (until Ctrl-C);
                                         --tiers: city, district and street hubs, each on its own nats-server
    cityhub validate FILE                every config error as file:line: key: message (exit 1), else a summary
    cityhub nats-config --hub SCOPE=HOST:PORT:LEAFNODE_PORT ... --out DIR
                                         nats-server configs and credentials of the tiered hubs (docs/deployment.md)
    cityhub plugins list|enable|disable  through the admin API, with the admin token
    cityhub plugins list --installed     the plugins installed here (built-in and third-party), no hub needed
    cityhub tap [--district ...]         live tail of the unified stream
    cityhub replay --since 1h            re-read the unified stream from JetStream
    cityhub new-connector NAME [--dir D] a pip-installable connector package: simulator, test, docs page
    cityhub simulate NAME                one plugin's simulators against a running hub (until Ctrl-C)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from hub.config import HubConfig, NatsConfig, load_config, parse_duration
from hub.errors import ConfigError, HubError
from hub.logs import configure_logging
from hub.nats.natsconn import connect, redacted_servers
from hub.plugins import BUILTIN_PLUGINS, build_plugin_host, installed_plugins
from hub.scaffold import write_connector
from hub.tap import events_subject, formatter, parse_since, replay, tap

DEFAULT_CONFIG = "cityhub.toml"
DEMO_DATA_DIR = Path(".cityhub/demo")


def _summary(path: str, config: HubConfig, enabled: list[str], not_configured: list[str]) -> str:
    nats = ", ".join(redacted_servers(config.nats)) if config.nats.servers else "embedded nats-server"
    unused = f"; not configured (no [plugins.<name>] section with its required keys): {', '.join(not_configured)}"
    return (
        f"{path}: valid. NATS: {nats}; admin API on {config.admin.host}:{config.admin.port}; "
        f"{len(config.geo.layers)} geo layer(s); {len(config.all_rules())} rule(s); "
        f"plugins enabled: {', '.join(enabled) or 'none'}{unused if not_configured else ''}"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """Parse, structure and environment checks, including every plugin's settings."""
    host = build_plugin_host()
    try:
        config = load_config(args.file, plugin_models=host.settings_models())
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) in {args.file}", file=sys.stderr)
        return 1
    host.configure(config)
    enabled = [name for name in host.names() if host.is_enabled(name)]
    not_configured = [name for name in host.names() if host.state(name).disabled_reason == "not configured"]
    print(_summary(args.file, config, enabled, not_configured))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hub.app import run  # the runtime: imported only when asked to run

    return run(args.config, admin_port=args.admin_port) or 0


def cmd_demo(args: argparse.Namespace) -> int:
    if args.tiers:
        from hub.federation.demo import demo_tiers

        return demo_tiers(args.duration)
    from hub.demo import demo

    return demo(args.duration, verbose=args.verbose, data_dir=args.data_dir) or 0


def _duration_seconds(text: str) -> float:
    try:
        duration = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return seconds


# --- plugins: through the admin API ----------------------------------------------------------------


def _admin_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """Admin URL and token: flags, then CITYHUB_ADMIN_URL / CITYHUB_ADMIN_TOKEN, then the config file."""
    url, token = args.admin or os.environ.get("CITYHUB_ADMIN_URL"), args.token or os.environ.get("CITYHUB_ADMIN_TOKEN")
    if (url is None or token is None) and Path(args.config).is_file():
        config = load_config(args.config)
        url = url or f"http://{config.admin.host}:{config.admin.port}"
        token = token or (config.admin.token.get_secret_value() if config.admin.token else None)
    return url or "http://127.0.0.1:8787", token


def _print_plugins(plugins: list[dict[str, Any]]) -> None:
    rows = [("PLUGIN", "STATE", "CALLS", "FAILURES", "LAST ERROR")]
    for plugin in plugins:
        state = "enabled" if plugin["enabled"] else f"disabled ({plugin['disabled_reason']})"
        rows.append((plugin["name"], state, str(plugin["calls"]), str(plugin["failures"]), plugin["last_error"] or ""))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])


def _error_detail(response: httpx.Response) -> str:
    """FastAPI's ``detail`` when the answer is JSON, else the body as text."""
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def _print_installed() -> None:
    """Every plugin installed in this environment (no hub needed), built-ins and third-party alike."""
    rows = [("PLUGIN", "KIND", "DISTRIBUTION", "MODULE")]
    for name, entry_point in sorted(installed_plugins().items()):
        distribution = f"{entry_point.dist.name} {entry_point.dist.version}" if entry_point.dist else "?"
        rows.append((name, "built-in" if name in BUILTIN_PLUGINS else "third-party", distribution, entry_point.value))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.installed:
        _print_installed()
        return 0
    url, token = _admin_target(args)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            if args.action == "list":
                response = client.get("/plugins")
            else:
                response = client.post(f"/plugins/{args.name}/{args.action}")
    except httpx.HTTPError as exc:
        raise HubError(f"cannot reach the admin API at {url}: {exc}") from None
    if response.status_code >= 400:
        print(f"cityhub plugins {args.action}: {response.status_code} {_error_detail(response)}", file=sys.stderr)
        return 1
    body = response.json()
    _print_plugins(body if isinstance(body, list) else [body])
    return 0


# --- tap and replay --------------------------------------------------------------------------------


def _nats_settings(args: argparse.Namespace) -> NatsConfig:
    if args.server:
        return NatsConfig(servers=[args.server])
    if os.environ.get("CITYHUB_NATS_URL"):
        return NatsConfig(servers=[os.environ["CITYHUB_NATS_URL"]])
    if Path(args.config).is_file():
        settings = load_config(args.config).nats
        if settings.servers:
            return settings
    raise HubError(
        "no NATS server to read from: pass --server nats://HOST:PORT (the running hub prints its URL) "
        "or set CITYHUB_NATS_URL"
    )


async def _print_stream(args: argparse.Namespace, messages: AsyncIterator[bytes], nc: Any) -> None:
    show = formatter(args.json)
    try:
        async for raw in messages:
            print(show(raw), flush=True)
    finally:
        await nc.close()


def _subject(args: argparse.Namespace) -> str:
    return events_subject(args.district, args.street, args.category, args.severity)


def cmd_tap(args: argparse.Namespace) -> int:
    async def main() -> None:
        nc = await connect(_nats_settings(args))

        def announce() -> None:
            print(f"# tapping {_subject(args)} (Ctrl-C to stop)", file=sys.stderr, flush=True)

        await _print_stream(args, tap(nc, _subject(args), limit=args.limit, on_ready=announce), nc)

    asyncio.run(main())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    since = parse_since(args.since)

    async def main() -> None:
        nc = await connect(_nats_settings(args))
        print(f"# replaying {_subject(args)} since {since.isoformat()}", file=sys.stderr, flush=True)
        await _print_stream(args, replay(nc, _subject(args), since, follow=args.follow), nc)

    asyncio.run(main())
    return 0


def cmd_nats_config(args: argparse.Namespace) -> int:
    from hub.federation.deployment import Deployment, MqttListener, Placement, write_deployment
    from hub.federation.scope import GridHierarchy

    config = load_config(args.config)
    hierarchy = GridHierarchy.from_layers(layer.spec() for layer in config.geo.layers)
    mqtt = dict(MqttListener.parse(text) for text in args.mqtt or ())
    deployment = Deployment([Placement.parse(text, hierarchy) for text in args.hub], hierarchy, mqtt)
    for path in write_deployment(deployment, Path(args.out), Path(args.store_root)):
        print(f"wrote {path}")
    creds = Path(args.out) / "creds"
    print(f"credentials (NKey seeds, one per user; passwords of MQTT devices and cluster routes): {creds}")
    return 0


def cmd_new_connector(args: argparse.Namespace) -> int:
    directory = Path(args.dir or args.name)
    for path in write_connector(directory, args.name, args.port):
        print(f"wrote {path}")
    print(
        f"next: pip install -e '{directory}[test]' && (cd {directory} && pytest); "
        f"then cityhub plugins list --installed shows {args.name}"
    )
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from hub.simulate import simulate

    return simulate(args.name, args.config, args.duration)


def _add_stream_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="NATS URL (default: CITYHUB_NATS_URL, then [nats].servers of the config)")
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: cityhub.toml)")
    parser.add_argument("--district", help="district cell id")
    parser.add_argument("--street", help="street cell id")
    parser.add_argument("--category", help="category, e.g. gas_leak")
    parser.add_argument("--severity", help="severity: info, low, medium, high or critical")
    parser.add_argument("--json", action="store_true", help="print the raw CloudEvents, one per line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cityhub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the hub")
    run.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: cityhub.toml)")
    run.add_argument(
        "--admin-port",
        type=int,
        metavar="PORT",
        help="admin API port of this process, instead of [admin].port (a second hub on the same machine)",
    )
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="run everything with simulators and sample grids")
    demo.add_argument(
        "--for",
        dest="duration",
        type=_duration_seconds,
        metavar="DURATION",
        help="stop by itself after this long (e.g. 40s, 5m), as on Ctrl-C; default: until Ctrl-C",
    )
    demo.add_argument(
        "--tiers", action="store_true", help="a city hub and district and street hubs on their own linked nats-servers"
    )
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="show the hub's and connectors' logs on the terminal too (default: only in the data folder's demo.log)",
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=DEMO_DATA_DIR,
        help=f"the demo's folder (config, NATS store, log), emptied at each start (default: {DEMO_DATA_DIR})",
    )
    demo.set_defaults(handler=cmd_demo)

    validate = commands.add_parser("validate", help="check a config file and report every error")
    validate.add_argument("file", nargs="?", default=DEFAULT_CONFIG, help="config file (default: cityhub.toml)")
    validate.set_defaults(handler=cmd_validate)

    plugins = commands.add_parser("plugins", help="list, enable or disable plugins of a running hub")
    plugins.add_argument("action", choices=["list", "enable", "disable"])
    plugins.add_argument("name", nargs="?", help="plugin name (enable, disable)")
    plugins.add_argument(
        "--installed",
        action="store_true",
        help="list: the plugins installed in this environment, without a running hub",
    )
    plugins.add_argument("--admin", help="admin API URL (default: CITYHUB_ADMIN_URL, then [admin] of the config)")
    plugins.add_argument("--token", help="admin token (default: CITYHUB_ADMIN_TOKEN, then [admin].token)")
    plugins.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: cityhub.toml)")
    plugins.set_defaults(handler=cmd_plugins)

    tap_parser = commands.add_parser("tap", help="live tail of the unified stream")
    _add_stream_filters(tap_parser)
    tap_parser.add_argument("--limit", type=int, help="stop after this many events")
    tap_parser.set_defaults(handler=cmd_tap)

    replay_parser = commands.add_parser("replay", help="re-read the unified stream from JetStream")
    _add_stream_filters(replay_parser)
    replay_parser.add_argument("--since", required=True, help="a duration back (2h, 30m) or a time with offset")
    replay_parser.add_argument("--follow", action="store_true", help="keep printing new events once caught up")
    replay_parser.set_defaults(handler=cmd_replay)

    nats_config = commands.add_parser(
        "nats-config", help="write the nats-server configs and credentials of a deployment of tiered hubs"
    )
    nats_config.add_argument(
        "--hub",
        action="append",
        required=True,
        metavar="SCOPE=HOST:PORT:LEAFNODE_PORT[:CLUSTER_PORT]",
        help="one hub: its scope (city, a district or street code) and where its server listens; "
        "a scope given three times or more is a cluster of those nodes (with their cluster ports)",
    )
    nats_config.add_argument(
        "--mqtt",
        action="append",
        metavar="SCOPE=PORT:TOPIC[,TOPIC...]",
        help="the hub's server listens for MQTT on PORT, for devices publishing under the TOPIC "
        "prefixes (e.g. 510104=1883:cityhub/raw/iot,recycling)",
    )
    nats_config.add_argument("--out", required=True, help="folder to write <scope>/nats-server.conf and creds/ into")
    nats_config.add_argument(
        "--store-root", default="/var/lib/cityhub/nats", help="JetStream store of each server: STORE_ROOT/<scope>"
    )
    nats_config.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file whose admin grids to read")
    nats_config.set_defaults(handler=cmd_nats_config)

    new = commands.add_parser("new-connector", help="write a pip-installable connector package with test and docs")
    new.add_argument("name", help="connector name: lower-case letters, digits and _")
    new.add_argument("--dir", help="folder of the new package (default: ./NAME)")
    new.add_argument("--port", type=int, default=8800, help="default webhook port of the new connector")
    new.set_defaults(handler=cmd_new_connector)

    simulate_parser = commands.add_parser("simulate", help="run one plugin's simulators against a running hub")
    simulate_parser.add_argument("name", help="plugin name, e.g. iot_mqtt")
    simulate_parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (default: cityhub.toml)")
    simulate_parser.add_argument(
        "--for",
        dest="duration",
        type=_duration_seconds,
        metavar="DURATION",
        help="stop by itself after this long (e.g. 30s); default: until Ctrl-C",
    )
    simulate_parser.set_defaults(handler=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "plugins" and args.action != "list" and not args.name:
        parser.error(f"plugins {args.action} needs a plugin name")
    configure_logging(logging.WARNING)  # run and demo set their own level
    try:
        return args.handler(args)
    except HubError as exc:
        print(f"cityhub {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
