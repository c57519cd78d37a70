"""``provision server``: run the relay server (§4) under uvicorn.

Only click is imported at module level; Starlette, uvicorn and the server
package load inside the command. Every option can also come from the
environment as ``PROVISION_SERVER_<OPTION>`` (e.g. ``PROVISION_SERVER_PORT``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import click

from textsecure_provision.errors import InvalidInputError

if TYPE_CHECKING:
    from textsecure_provision.server.config import ServerConfig

_RATE_LIMIT_HELP = (
    "Set one rate limit, NAME=COUNT/SECONDS or NAME=off (repeatable). Names: sms_code_number, "
    "sms_code_address, registration_guess_address, provisioning_code_number, "
    "code_guess_number, code_guess_address, channel_create_address, message_send_device, "
    "key_fetch_pair, auth_failure_address. See docs/server.md for the defaults."
)


@click.command(context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, help="Port; 0 picks a free one."
)
@click.option(
    "--db",
    "db_url",
    default="",
    show_default=False,
    help="Database URL: sqlite:///relative.db, sqlite:////absolute.db, a file path, or "
    "postgresql://user@host:5432/db[?schema=NAME&pool_size=N] for several nodes "
    "[default: relay.sqlite3 in --data-dir if given, else in the user data folder].",
)
@click.option(
    "--data-dir",
    "local_data_dir",
    type=click.Path(file_okay=False),
    allow_from_autoenv=False,
    help="Same as the global --data-dir: the folder of the default SQLite database (a folder "
    "of its own, not a device's).",
)
@click.option(
    "--redis",
    "redis_url",
    metavar="URL",
    default=None,
    help="Redis URL (redis://host:6379/0) for channels, long-poll wake-ups and rate limits "
    "shared by several nodes [default: none, everything within this process].",
)
@click.option(
    "--redis-prefix",
    default="provision:",
    help="Prefix of every Redis key and pub/sub topic (deployments sharing one Redis).",
)
@click.option(
    "--channel-ttl",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    help="Seconds a temp channel stays open (§4.1).",
)
@click.option(
    "--short-codes/--no-short-codes",
    default=True,
    help="Offer links by short code (`provision master --code`; GET /v1/capabilities).",
)
@click.option(
    "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM)."
)
@click.option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM)."
)
@click.option(
    "--registration-codes",
    type=click.Choice(["log", "test"]),
    default=None,
    show_default=False,
    help="How registration codes are delivered: 'log' writes each to the server log (the "
    "operator passes it on); 'test' accepts the fixed --test-registration-code "
    "[default: log, or test when --test-registration-code is given].",
)
@click.option(
    "--test-registration-code",
    metavar="CODE",
    help="Accept this fixed registration code for every number (tests, CI). Refused on a "
    "non-loopback address unless --allow-test-code-on-public-bind.",
)
@click.option(
    "--allow-test-code-on-public-bind",
    is_flag=True,
    help="Allow --test-registration-code on a non-loopback address (anyone could register).",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False),
    help="Once listening, write the base URL (http(s)://127.0.0.1:PORT) and a newline here.",
)
@click.option("--max-devices", type=click.IntRange(1, 1000), default=6, help="Devices per account.")
@click.option(
    "--rate-limit", "rate_limits", multiple=True, metavar="NAME=N/S", help=_RATE_LIMIT_HELP
)
@click.option(
    "--registration-lockout",
    metavar="FREE/FIRST/MAX",
    default="5/60/86400",
    help="Wrong registration codes per number before a lockout, the first lockout in "
    "seconds (doubling per further wrong code) and its maximum; 'off' for none.",
)
@click.option(
    "--max-queue-messages",
    type=click.IntRange(min=1),
    default=1000,
    help="Messages one device's queue holds until acknowledged; past it a sender gets 429.",
)
@click.option(
    "--max-queue-bytes",
    type=click.IntRange(min=1024),
    default=10 * 1024 * 1024,
    help="Body bytes one device's queue holds until acknowledged; past it a sender gets 429.",
)
@click.option(
    "--max-fetch-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    help="Body bytes in one GET /v1/messages/ page (after its first message).",
)
@click.option("--no-rate-limits", is_flag=True, help="Turn every rate limit off (benchmarks only).")
@click.option(
    "--max-sockets-per-address",
    metavar="N|off",
    default="256",
    help="Open connections one client address may hold (IPv6: per /64); over it: 503.",
)
@click.option(
    "--head-timeout",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    default=10.0,
    help="Seconds from connect to a complete request head and websocket handshake (408).",
)
@click.option(
    "--max-head-bytes",
    type=click.IntRange(1024, 1024 * 1024),
    default=16384,
    help="Largest request line plus headers, on every path (431).",
)
@click.option(
    "--max-write-buffer",
    type=click.IntRange(4096, 64 * 1024 * 1024),
    default=65536,
    help="Unsent bytes per socket: reading stops at half of it, the socket is dropped at it.",
)
@click.option(
    "--control-frames",
    metavar="N/S|off",
    default="10/10",
    help="Pings and pongs a channel socket may send: N at once, N per S seconds; past it "
    "the socket is closed (1008).",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    help="Trust X-Forwarded-For/-Proto from these proxy addresses (comma-separated); needed "
    "behind a reverse proxy so per-address limits see the real client.",
)
@click.option("--access-log/--no-access-log", default=True, help="One log line per request.")
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    help="Server log level.",
)
def server(
    host: str,
    port: int,
    db_url: str,
    redis_url: str | None,
    redis_prefix: str,
    channel_ttl: float,
    short_codes: bool,
    tls_cert: str | None,
    tls_key: str | None,
    registration_codes: str | None,
    test_registration_code: str | None,
    allow_test_code_on_public_bind: bool,
    port_file: str | None,
    max_devices: int,
    rate_limits: tuple[str, ...],
    registration_lockout: str,
    max_queue_messages: int,
    max_queue_bytes: int,
    max_fetch_bytes: int,
    no_rate_limits: bool,
    max_sockets_per_address: str,
    head_timeout: float,
    max_head_bytes: int,
    max_write_buffer: int,
    control_frames: str,
    forwarded_allow_ips: str | None,
    access_log: bool,
    log_level: str,
    local_data_dir: str | None,
) -> None:
    """Run the relay server: accounts, devices, keys, messages and temp channels (§4).

    With no option it listens on http://127.0.0.1:8080 and keeps its data in a
    SQLite file in the user data folder (in --data-dir when given). Stop it
    with Ctrl-C.
    """
    from textsecure_provision.cli.context import Settings
    from textsecure_provision.server.config import (
        RateLimits,
        ServerConfig,
        SocketBudgets,
        parse_budget_count,
        parse_lockout,
        parse_rate_limit,
    )

    settings = click.get_current_context().find_object(Settings) or Settings()
    data_dir = local_data_dir or settings.data_dir
    if not db_url and data_dir:
        db_url = _db_in(data_dir)

    if registration_codes == "log" and test_registration_code is not None:
        raise click.UsageError("--registration-codes log and --test-registration-code conflict")
    mode: Literal["log", "test"] = (
        "test" if test_registration_code is not None or registration_codes == "test" else "log"
    )
    limits = RateLimits.off() if no_rate_limits else RateLimits()
    try:
        for text in _split(rate_limits):
            name, rule = parse_rate_limit(text)
            limits = limits.with_rule(name, rule)
        off = no_rate_limits or registration_lockout.strip() == "off"
        lockout = None if off else parse_lockout(registration_lockout)
        sockets = SocketBudgets(
            max_sockets_per_address=parse_budget_count(
                "--max-sockets-per-address", max_sockets_per_address
            ),
            head_timeout_s=head_timeout,
            max_head_bytes=max_head_bytes,
            max_write_buffer_bytes=max_write_buffer,
            control_frames=parse_rate_limit(f"control_frames={control_frames}", known=False)[1],
        )
        config = ServerConfig(
            host=host,
            port=port,
            db_url=db_url,
            redis_url=redis_url or None,
            redis_prefix=redis_prefix,
            channel_ttl_s=channel_ttl,
            short_codes=short_codes,
            registration_codes=mode,
            test_registration_code=test_registration_code,
            allow_test_code_on_public_bind=allow_test_code_on_public_bind,
            max_devices=max_devices,
            rate_limits=limits,
            registration_lockout=lockout,
            max_queue_messages=max_queue_messages,
            max_queue_bytes=max_queue_bytes,
            max_fetch_bytes=max_fetch_bytes,
            sockets=sockets,
            tls_cert=tls_cert,
            tls_key=tls_key,
            forwarded_allow_ips=forwarded_allow_ips,
            log_level=log_level,
            access_log=access_log,
        )
    except InvalidInputError as exc:
        raise click.UsageError(exc.message) from None
    _run(config, port_file, no_rate_limits)


def _db_in(data_dir: str) -> str:
    from pathlib import Path

    from textsecure_provision.server.config import default_db_path

    try:
        return str(default_db_path(Path(data_dir)))
    except OSError as exc:
        raise click.UsageError(
            f"cannot use --data-dir {data_dir} for the database: {exc.strerror or exc}"
        ) from None


def _split(values: tuple[str, ...]) -> list[str]:
    # PROVISION_SERVER_RATE_LIMIT may hold several rules separated by spaces or commas.
    return [v for value in values for v in value.replace(",", " ").split() if v]


def _run(config: ServerConfig, port_file: str | None, no_rate_limits: bool) -> None:
    import logging
    import sys

    from textsecure_provision.server.app import create_app
    from textsecure_provision.server.runner import ProvisionServer, uvicorn_config

    logging.basicConfig(
        level=config.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("textsecure_provision.server")
    if no_rate_limits:
        log.warning("every rate limit is OFF (--no-rate-limits): do not expose this server")
    if config.registration_codes == "test":
        log.warning("registration accepts the fixed --test-registration-code for every number")
    app = create_app(config)
    srv = ProvisionServer(uvicorn_config(app, config), config, port_file=port_file)
    srv.run()
    if not srv.started:
        raise click.ClickException("the server did not start (see the log above)")
