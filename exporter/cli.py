"""Command line, in the style of Prometheus exporters (``--web.listen-address`` ...).

Exit codes: 0 success, 1 runtime failure (e.g. port in use), 2 invalid
configuration or usage (for ``--check-config`` also a configuration error
that is valid YAML but cannot work, such as a missing interpreter).

Each mode imports the parts it uses when it runs (the demo farm, the web
config, the daemon and its HTTP server): ``--once`` and ``--check-config``
do not pay for the rest, which is most of the start-up time of a one-shot
read (BENCHMARKS.md, cold ingest).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from typing import List, Optional, Sequence, Tuple

from exporter import __version__, logs, sandbox
from exporter.config import ConfigError, Notice, load, log_notices, notices
from exporter.sources import registered_sources
from exporter.web.addresses import DEFAULT_LISTEN_ADDRESS, parse_listen_address

log = logging.getLogger("exporter.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


def _listen_address(value: str) -> str:
    try:
        parse_listen_address(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _telemetry_path(value: str) -> str:
    if not value.startswith("/") or value in ("/", "/-/healthy", "/-/ready"):
        raise argparse.ArgumentTypeError("must start with / and not be /, /-/healthy or /-/ready")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renderfarm-exporter",
        description="Prometheus exporter for render farm statistics files (Rush cpu.acct, Royal Render).",
        epilog="Subcommands: 'probe --source NAME --config.file PATH' (or 'rr-probe --config.file PATH' for "
               "Royal Render) reports what the exporter sees of a real installation; 'backfill --config.file "
               "PATH --output FILE' writes the files' history for promtool. Each has --help.",
    )
    parser.add_argument("--config.file", "--config", dest="config", metavar="PATH",
                        help="YAML configuration file (--config is an alias)")
    parser.add_argument("--web.listen-address", dest="listen_addresses", type=_listen_address, action="append",
                        metavar="HOST:PORT",
                        help="address to serve metrics on; repeat it to serve on several (default %s: every "
                             "address, port 19100)" % DEFAULT_LISTEN_ADDRESS)
    parser.add_argument("--web.systemd-socket", dest="systemd_socket", action="store_true",
                        help="serve on the sockets systemd passes (socket activation) instead of "
                             "--web.listen-address")
    parser.add_argument("--web.telemetry-path", dest="telemetry_path", type=_telemetry_path, default="/metrics",
                        metavar="PATH", help="path of the metrics (default %(default)s)")
    parser.add_argument("--web.config.file", dest="web_config_file", metavar="PATH",
                        help="exporter-toolkit web config (TLS, basic auth, headers); re-read when it changes")
    parser.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                        help="accept POST /-/reload to reload the configuration (SIGHUP always does)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true",
                      help="read every configured file once, print the exposition to stdout and exit")
    mode.add_argument("--check-config", action="store_true",
                      help="validate the configuration and exit: 0 valid, 2 invalid or cannot work (every problem "
                           "listed: an error such as a missing or too old royalrender.python); warnings (a missing "
                           "folder, a kind without a path) go to stderr")
    parser.add_argument("--strict", action="store_true",
                        help="treat configuration warnings as errors: --check-config and start-up exit 2")
    parser.add_argument("--systemd.unit", dest="systemd_unit", metavar="PATH", default=sandbox.UNIT_FILE,
                        help="the systemd unit the service runs under: paths its sandbox hides (PrivateTmp=, "
                             "ProtectHome=, with its drop-ins) are warned about; nothing when it does not exist "
                             "(default %(default)s; '' for none)")
    parser.add_argument("--demo", action="store_true",
                        help="run on a built-in demo farm that writes live statistics to a temporary folder")
    parser.add_argument("--storage.path", dest="storage_path", metavar="DIR", default=None,
                        help="folder for checkpoints of what was read, so a restart reads only new bytes (default "
                             "$STATE_DIRECTORY when set, as systemd's StateDirectory= sets it, else none; none with "
                             "--demo; '' for none)")
    parser.add_argument("--log.level", dest="log_level", choices=logs.LEVELS, default="info",
                        help="least severe level logged (default %(default)s)")
    parser.add_argument("--log.format", dest="log_format", choices=logs.FORMATS, default="logfmt",
                        help="log line format on stderr (default %(default)s)")
    parser.add_argument("--version", action="version",
                        version="renderfarm-exporter %s (Python %s)" % (__version__, platform.python_version()))
    return parser


def _subcommand_parser(name: str, description: str) -> argparse.ArgumentParser:
    """A subcommand's parser with the flags every subcommand has: --config and --log.level."""
    parser = argparse.ArgumentParser(prog="renderfarm-exporter " + name, description=description)
    parser.add_argument("--config.file", "--config", dest="config", metavar="PATH", required=True,
                        help="YAML configuration file (--config is an alias)")
    parser.add_argument("--log.level", dest="log_level", choices=logs.LEVELS, default="warn",
                        help="least severe level logged (default %(default)s)")
    return parser


def _subcommand_setup(parser: argparse.ArgumentParser, argv: List[str]):
    """(arguments, configuration), or (arguments, None) after printing why the configuration is invalid."""
    args = parser.parse_args(argv)
    logs.setup(args.log_level, "logfmt")
    try:
        return args, load(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return args, None


#: ``rr-probe`` is kept as the name of ``probe --source royalrender``.
PROBE_ALIASES = {"rr-probe": "royalrender"}


def _probing() -> List[str]:
    return [source.name for source in registered_sources() if source.probe is not None]


def build_probe_parser(source: Optional[str] = None) -> argparse.ArgumentParser:
    parser = _subcommand_parser("probe", "Read a source's files as the daemon would and report what it sees, "
                                         "for a bug report ('rr-probe' is 'probe --source royalrender').")
    parser.add_argument("--source", choices=_probing(), default=source, required=source is None,
                        help="the source to probe")
    return parser


def probe(argv: List[str], source: Optional[str] = None) -> int:
    """``renderfarm-exporter probe --source NAME --config.file PATH``: the source's own diagnosis."""
    args, config = _subcommand_setup(build_probe_parser(source), argv)
    if config is None:
        return EXIT_INVALID
    section = config.sources.get(args.source)
    if section is None:
        print("The configuration has no %s section: nothing to probe." % args.source)
        return EXIT_INVALID
    # The parser offers only the sources that have a probe.
    chosen = next(s.probe for s in registered_sources() if s.name == args.source and s.probe is not None)
    return chosen(section, sys.stdout)


def _time(value: str) -> float:
    from exporter.backfill import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(value: str) -> float:
    from exporter.schema import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sources(value: str) -> List[str]:
    from exporter.backfill import with_history

    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in with_history()]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError("choose from %s" % ", ".join(with_history()))
    return chosen


def build_backfill_parser() -> argparse.ArgumentParser:
    from exporter.backfill import with_history

    parser = _subcommand_parser("backfill", "Write the statistics files' history as OpenMetrics with timestamps, "
                                            "for 'promtool tsdb create-blocks-from openmetrics FILE DIR'.")
    parser.add_argument("--output", metavar="FILE", required=True, help="OpenMetrics file to write")
    parser.add_argument("--since", type=_time, default=0.0, metavar="TIME",
                        help="first time to write: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, Unix seconds or an age (30d)")
    parser.add_argument("--until", type=_time, default=None, metavar="TIME", help="last time to write (default now)")
    parser.add_argument("--sources", type=_sources, default=with_history(), metavar="LIST",
                        help="comma-separated: %s (default: all)" % ", ".join(with_history()))
    parser.add_argument("--step", type=_duration, default=60.0, metavar="DURATION",
                        help="resolution of rebuilt Rush counters (default 1m)")
    parser.add_argument("--strict", action="store_true", help="stop at the first unreadable input")
    return parser


def backfill(argv: List[str]) -> int:
    """``renderfarm-exporter backfill --config PATH --output FILE ...``."""
    import time

    from exporter import backfill as history

    args, config = _subcommand_setup(build_backfill_parser(), argv)
    if config is None:
        return EXIT_INVALID
    until = time.time() if args.until is None else args.until
    return history.run(config, args.output, args.since, until, args.sources, args.step, args.strict)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe"]:
        return probe(argv[1:])
    if argv[:1] and argv[0] in PROBE_ALIASES:
        return probe(argv[1:], PROBE_ALIASES[argv[0]])
    if argv[:1] == ["backfill"]:
        return backfill(argv[1:])
    args = build_parser().parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    if args.demo:
        from exporter.simulation.demo import demo_farm

        with demo_farm() as config:
            return run(config, args)
    if not args.config:
        print("renderfarm-exporter: --config PATH is required (or --demo)", file=sys.stderr)
        return EXIT_INVALID
    try:
        config = load(args.config)
        if args.web_config_file:
            from exporter.web import webconfig

            webconfig.load(args.web_config_file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    found = notices(config, sandbox.read(args.systemd_unit))
    errors, warnings = _reported(found, args.check_config)
    if args.check_config and errors:
        print("renderfarm-exporter: the configuration cannot work as written (errors above): exiting",
              file=sys.stderr)
        return EXIT_INVALID
    if (errors or warnings) and args.strict:
        print("renderfarm-exporter: configuration warnings and --strict: exiting", file=sys.stderr)
        return EXIT_INVALID
    if args.check_config:
        print("%s is valid" % " and ".join(filter(None, (args.config, args.web_config_file))))
        return EXIT_OK
    return run(config, args, found)


def _reported(found: List[Notice], to_stderr: bool) -> Tuple[int, int]:
    """Says what in the configuration will not work (stderr for --check-config, the log at start-up); returns
    how many errors and warnings. Start-up runs on after errors: the rest of the configuration still works."""
    if to_stderr:
        for notice in found:
            print(("error: " if notice.error else "warning: ") + notice.text, file=sys.stderr)
    else:
        log_notices(found, log)
    errors = sum(1 for notice in found if notice.error)
    return errors, len(found) - errors


def listen_addresses(args) -> List[str]:
    """Every --web.listen-address given (the default when none is)."""
    return args.listen_addresses or [DEFAULT_LISTEN_ADDRESS]


def storage_path(args, default: str) -> str:
    """``--storage.path``; else ``default`` ($STATE_DIRECTORY), except with ``--demo``: a demo farm lives in a
    temporary folder, so its checkpoints would only fill a real state directory (the container sets it)."""
    if args.storage_path is not None:
        return args.storage_path
    return "" if args.demo else default


def run(config, args, found: Sequence[Notice] = ()) -> int:
    """``--once`` or the daemon, for a loaded configuration and its notices (``found``, said already)."""
    if args.once:
        from exporter import core

        sys.stdout.buffer.write(core.render_once(config))
        sys.stdout.flush()
        return EXIT_OK
    from exporter import checkpoint, daemon

    try:
        return daemon.serve(config, listen_addresses(args), args.telemetry_path, config_path=args.config,
                            web_config_file=args.web_config_file, enable_lifecycle=args.enable_lifecycle,
                            systemd_socket=args.systemd_socket,
                            storage_path=storage_path(args, checkpoint.default_path()),
                            sandbox=sandbox.read(args.systemd_unit), config_notices=tuple(n.text for n in found))
    except ConfigError as exc:  # the web config file changed between the check above and now
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        log.error("cannot serve", extra=logs.fields(address=",".join(listen_addresses(args)), error=exc))
        return EXIT_FAILURE
