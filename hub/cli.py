"""``cityhub``: run the hub, check a config, control plugins, watch and replay the unified stream, and
start a new connector.

    cityhub run [-c cityhub.toml]        run the hub (embedded nats-server when no servers are configured)
    cityhub demo                         everything, with simulators and sample grids
    cityhub validate FILE                every config error as file:line: key: message (exit 1), else a summary
    cityhub plugins list|enable|disable  through the admin API, with the admin token
    cityhub tap [--district ...]         live tail of the unified stream
    cityhub replay --since 1h            re-read the unified stream from JetStream
    cityhub new-connector NAME           a working connector skeleton with its simulator, test and docs page
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hub.config import HubConfig, load_config
from hub.errors import ConfigError, HubError
from hub.plugins import build_plugin_host

DEFAULT_CONFIG = "cityhub.toml"


def _summary(path: str, config: HubConfig, enabled: list[str]) -> str:
    nats = ", ".join(config.nats.servers) if config.nats.servers else "embedded nats-server"
    return (
        f"{path}: valid. NATS: {nats}; admin API on {config.admin.host}:{config.admin.port}; "
        f"{len(config.geo.layers)} geo layer(s); {len(config.all_rules())} rule(s); "
        f"plugins enabled: {', '.join(enabled) or 'none'}"
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
    print(_summary(args.file, config, enabled))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cityhub", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a config file and report every error")
    validate.add_argument("file", nargs="?", default=DEFAULT_CONFIG, help="config file (default: cityhub.toml)")
    validate.set_defaults(handler=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except HubError as exc:
        print(f"cityhub {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
