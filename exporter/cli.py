"""Command line: Prometheus-style flags, logging, and running the daemon until a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from exporter import __version__
from exporter.advisories.database import AdvisoryDatabase
from exporter.config import Config, ConfigError, load_config, parse_listen_address
from exporter.guard import ConnectionLimits, Guard, GuardedTCPSite
from exporter.logs import LEVELS, configure_logging
from exporter.snapshot import Sources
from exporter.web import GUARD, REFRESHER, create_app
from exporter.webconfig import WebSecurity, load_web_config

if TYPE_CHECKING:
    from exporter.oneshot import Printable

log = logging.getLogger("exporter")

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
SWITCH_INTERVAL_SECONDS = 0.001


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; argparse exits with status 2 on a bad flag."""
    parser = argparse.ArgumentParser(
        prog="status-exporter",
        description="Publish what this Python environment runs, as JSON and Prometheus metrics.",
    )
    parser.add_argument(
        "--config.file",
        dest="config_file",
        default="config.yaml",
        help="path of the YAML configuration (default: %(default)s)",
    )
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=None,
        help="host:port to listen on; overrides web.listen_address",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        default=None,
        help="exporter-toolkit web config (TLS, basic auth, headers); overrides web.config_file",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        default="info",
        choices=list(LEVELS),
        help="only log messages at or above this level (default: %(default)s)",
    )
    parser.add_argument(
        "--log.format",
        dest="log_format",
        default="logfmt",
        choices=["logfmt", "json"],
        help="log line format (default: %(default)s)",
    )
    parser.add_argument(
        "--config.check",
        dest="check_config",
        action="store_true",
        help="validate the configuration, print the result and exit",
    )
    parser.add_argument(
        "--print",
        dest="print_body",
        choices=["metrics", "status", "sbom"],
        default=None,
        help="take one snapshot, write this body to standard output and exit",
    )
    parser.add_argument(
        "--print.target",
        dest="print_target",
        default=None,
        metavar="NAME",
        help="with --print status or sbom: that target's document instead of the exporter's "
        "own environment's (--print metrics covers every target)",
    )
    parser.add_argument("--version", action="version", version=f"status-exporter {__version__}")
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    """Load the config file and apply flag overrides; raise ConfigError on any fault."""
    config = load_config(args.config_file)
    if args.listen_address is not None:
        try:
            parse_listen_address(args.listen_address)
        except ValueError as exc:
            raise ConfigError([f"--web.listen-address: {exc}"]) from None
        web_config = dataclasses.replace(config.web, listen_address=args.listen_address)
        config = dataclasses.replace(config, web=web_config)
    if args.web_config_file is not None:
        web_config = dataclasses.replace(config.web, config_file=args.web_config_file)
        config = dataclasses.replace(config, web=web_config)
    return config


def build_security(config: Config) -> WebSecurity | None:
    """Load the web config file named by the config, if any; raise ConfigError on faults."""
    return load_web_config(config.web.config_file) if config.web.config_file else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``status-exporter`` and ``python -m exporter``; returns the exit status."""
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = build_config(args)
        security = build_security(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"status-exporter: config error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        unreadable = unreadable_advisory_paths(config)
        for problem in unreadable:
            print(f"status-exporter: advisories.paths: {problem}", file=sys.stderr)
        if unreadable:
            print(
                f"status-exporter: {args.config_file}: valid, but the advisory database "
                "cannot be loaded: no module would be checked",
                file=sys.stderr,
            )
            return EXIT_RUNTIME
        print(f"status-exporter: {args.config_file}: configuration is valid")
        return EXIT_OK
    if args.print_body is not None:
        return _print_once(config, args.print_body, args.print_target)
    with asyncio.Runner(loop_factory=_loop_factory(config.web.uvloop)) as runner:
        return runner.run(serve(config, security, args))


def _print_once(config: Config, what: Printable, target: str | None) -> int:
    from exporter.oneshot import UnknownTarget, Withheld, render_once  # start-up skips it

    try:
        printed = render_once(config, what, target)
    except (Withheld, UnknownTarget) as exc:
        print(f"status-exporter: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The body is written even so (it says the findings are unknown): the exit status is
    # what tells a pipeline that nothing was checked.
    sys.stdout.buffer.write(printed.body)
    sys.stdout.flush()
    for note in printed.notes:
        print(f"status-exporter: {note}", file=sys.stderr)
    if printed.problem is not None:
        print(f"status-exporter: {printed.problem}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def unreadable_advisory_paths(config: Config) -> list[str]:
    """Each configured advisory path that does not exist or cannot be read, with why."""
    problems = []
    for path in config.advisories.paths:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:  # O_NONBLOCK: a FIFO must not hang the check
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    return problems


def _load_in_child(paths: Sequence[str]) -> AdvisoryDatabase:
    from exporter.advisories.worker import load_in_child  # only when configured

    return load_in_child(paths)


def _loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when asked for and installed (the ``uvloop`` extra), else asyncio's."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def serve(
    config: Config, security: WebSecurity | None, args: argparse.Namespace | None = None
) -> int:
    """Serve until SIGTERM or SIGINT, reloading on SIGHUP; return the exit status."""
    _raise_open_file_limit()
    # How long the event loop may wait for the GIL while a refresh runs Python (the first
    # match after an advisory database loads, rendering): p99 during reloads measured 2.5x
    # idle at 1 ms against 3.0x at the default 5 ms. With no refresh running the loop is
    # alone and the interval costs nothing.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    # The daemon parses advisory databases in a child process: see exporter.advisories.worker.
    app = create_app(config, security=security, sources=Sources(load_advisories=_load_in_child))
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=config.web.shutdown_timeout_seconds,
    )
    await runner.setup()
    address = config.web.address
    limits = ConnectionLimits(config.web)
    tls = security.tls if security else None
    site = GuardedTCPSite(
        runner, address.host or None, address.port, backlog=1024, ssl_context=tls, limits=limits
    )
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen", extra={"address": str(address), "error": str(exc)})
        await runner.cleanup()
        return EXIT_RUNTIME
    listening = " ".join(_format_address(a) for a in runner.addresses)
    event_loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    log.info(
        "listening",
        extra={
            "address": listening,
            "event_loop": event_loop,
            "tls": tls is not None,
            "basic_auth": app[GUARD].authenticating,
        },
    )

    reloader = Reloader(args, config, security, app, limits)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    summary = asyncio.create_task(_log_startup_summary(app, listening))
    await stop.wait()
    log.info("shutting down")
    summary.cancel()
    await runner.cleanup()
    return EXIT_OK


class Reloader:
    """Re-reads config.yaml and the web config on SIGHUP: all of it applies, or none does."""

    def __init__(
        self,
        args: argparse.Namespace | None,
        config: Config,
        security: WebSecurity | None,
        app: web.Application,
        limits: ConnectionLimits,
    ) -> None:
        self._args = args
        self._config = config
        self._security = security
        # The context the listening socket uses: every reload updates this one in place
        # (a reloaded web config's own freshly built context is never served).
        self._live_tls = security.tls if security else None
        self._app = app
        self._limits = limits

    def reload(self) -> None:
        """Validate both files completely, then apply them, or keep everything as it is."""
        refresher = self._app[REFRESHER]
        try:
            if self._args is None:
                raise ConfigError(["no command line to reload from"])
            config = build_config(self._args)
            security = build_security(config)
            self._refuse_what_cannot_change(config, security)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error(
                    "reload rejected; keeping the running configuration",
                    extra={"problem": problem},
                )
            refresher.record_reload(successful=False)
            return
        if security is not None and self._live_tls is not None:
            security.apply_to(self._live_tls)
        self._app[GUARD].update(security, config.web)
        self._limits.update(config.web)
        refresher.reconfigure(config)
        refresher.record_reload(successful=True)
        self._config, self._security = config, security
        log.info("configuration reloaded")

    def _refuse_what_cannot_change(self, config: Config, security: WebSecurity | None) -> None:
        problems = []
        before, after = self._config.web, config.web
        if before.address != after.address:
            problems.append(
                f"web.listen_address: changed from {before.listen_address} to "
                f"{after.listen_address}; a running daemon cannot move: restart to apply"
            )
        if before.uvloop != after.uvloop:
            problems.append("web.uvloop: the event loop is chosen at start: restart to apply")
        had_tls = self._security is not None and self._security.tls is not None
        has_tls = security is not None and security.tls is not None
        if Guard.needed(security) and not Guard.needed(self._security):
            problems.append(
                "basic_auth_users / http_server_config.headers: the daemon started without "
                "them, so its requests skip that check: restart to turn them on"
            )
        if had_tls != has_tls:
            problems.append("tls_server_config: TLS cannot be turned on or off by a reload")
        elif (
            had_tls
            and security
            and self._security
            and security.client_ca_data() != self._security.client_ca_data()
        ):
            problems.append(
                "tls_server_config: the client CA changed; a running TLS server can add "
                "trusted CAs but not drop one: restart to apply"
            )
        if problems:
            raise ConfigError(problems)


def _raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard one, for many concurrent connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _log_startup_summary(app: web.Application, listening: str) -> None:
    published = await app[REFRESHER].wait_ready()
    s = published.snapshot
    log.info(
        "status-exporter started",
        extra={
            "version": __version__,
            "platform": " ".join(s.platform.as_dict().values()),
            "python": s.python.version_string,
            "modules": len(s.modules),
            "skipped": len(s.skipped),
            "commit": s.commit.value,
            "commit_source": s.commit.source,
            "server_id": s.identity.server_id,
            "api_version": s.api_version,
            "listen": listening,
        },
    )
    if s.commit.problem:
        log.warning("commit source unreadable", extra={"problem": s.commit.problem})


def _format_address(address: object) -> str:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
