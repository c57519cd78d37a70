"""Everything an operator can set on the relay server, as one frozen value.

``ServerConfig`` is built by ``provision server`` (cli/server.py) or directly by
tests, and handed to ``create_app``. It names backends by URL (``--db``,
``--redis``) so that ``build_storage``/``build_fanout``/``build_limiter``
in app.py can pick the implementation; nothing here imports Starlette, so the
CLI can build and check a config before anything heavy is loaded.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

from textsecure_provision.errors import InvalidInputError

CHANNEL_TTL_S = 120.0  # §4.1 step 3 (decided)
PROVISIONING_CODE_TTL_S = 600.0  # §4: a provisioning code expires after 10 minutes
MAX_PROVISIONING_CODES = 5  # §4: outstanding per account, one per link; the oldest go first
PROVISIONING_CODE_DIGITS = 9  # §4 (decided: default 9)
REGISTRATION_CODE_TTL_S = 600.0
REGISTRATION_CODE_DIGITS = 6
MAX_DEVICES = 6  # §4: 411 once an account holds this many devices
MAX_BODY_BYTES = 256 * 1024  # §4: bodies over 256 KiB → 413
MAX_PREKEYS_PER_UPLOAD = 200  # PUT /v1/keys with more one-time prekeys → 413
MAX_MESSAGES_PER_SEND = 64  # one PUT covers at most this many destination devices
MAX_MESSAGES_PER_FETCH = 100  # GET /v1/messages/ pages; "more" says if there are others
MAX_WAIT_S = 60.0  # GET /v1/messages/?wait=S is clamped to this
MAX_FETCH_BYTES = 1024 * 1024  # a fetch page holds at most this much body (after the first)
MAX_QUEUE_MESSAGES = 1000  # per device, until acknowledged; past it the sender gets 429
MAX_QUEUE_BYTES = 10 * 1024 * 1024
DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"

RegistrationMode = Literal["log", "test"]


@dataclass(frozen=True)
class Rule:
    """A token bucket: at most ``count`` at once, refilled at ``count`` per ``period_s``."""

    count: int
    period_s: float

    def __post_init__(self) -> None:
        if self.count < 1 or self.period_s <= 0:
            raise InvalidInputError("a rate limit needs a count >= 1 and a period > 0")

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


@dataclass(frozen=True)
class RateLimits:
    """Every rate limit of the server (§4: 429 with Retry-After); ``None`` turns one off.

    Names are what ``--rate-limit NAME=COUNT/SECONDS`` takes. Guess budgets count
    wrong guesses only, after the request passed every other check (a malformed
    request spends nothing), and are tight per address and loose per number: one
    guesser is cut off long before it can spend a number's budget, so the owner's
    own link still goes through (docs/security.md has the figures).
    """

    # Per number: what protects one account. A provisioning code: 9 digits, 10 minutes; at
    # most 100 + 17 wrong guesses in its life, odds ~1.3e-7 per code (docs/security.md).
    sms_code_number: Rule | None = Rule(40, 3600)  # GET /v1/accounts/sms/code/{number}
    provisioning_code_number: Rule | None = Rule(20, 3600)  # GET /v1/devices/provisioning_code
    code_guess_number: Rule | None = Rule(100, 3600)  # wrong PUT /v1/devices/{code}
    message_send_device: Rule | None = Rule(300, 60)  # PUT /v1/messages/{destination}
    # GET /v1/keys/{number}/{device} per (asking device, target): as Signal-Server's
    # "prekeys" limiter (6, one more per 10 minutes), so one account cannot drain another's
    # one-time prekeys.
    key_fetch_pair: Rule | None = Rule(6, 3600)
    # Per address (IPv6 by /64): what stops one client. Tight, but only wrong guesses count,
    # so many honest users behind one address (NAT, a test suite) do not meet them.
    sms_code_address: Rule | None = Rule(20, 3600)
    registration_guess_address: Rule | None = Rule(20, 3600)  # wrong PUT /v1/accounts/code
    code_guess_address: Rule | None = Rule(10, 3600)
    channel_create_address: Rule | None = Rule(120, 60)  # GET /v1/temp_websocket
    auth_failure_address: Rule | None = Rule(30, 600)  # wrong passwords, checked before hashing
    # Links by short code: a claim is one guess at a 16-bit secret (docs/security.md).
    nameplate_allocate_address: Rule | None = Rule(120, 60)  # POST /v1/nameplates
    nameplate_claim_address: Rule | None = Rule(30, 3600)  # PUT /v1/nameplates/{n}/claim
    nameplate_claim_account: Rule | None = Rule(10, 3600)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def off(cls) -> RateLimits:
        return cls(**dict.fromkeys(cls.names()))

    def with_rule(self, name: str, rule: Rule | None) -> RateLimits:
        if name not in self.names():
            raise InvalidInputError(
                f"unknown rate limit {name!r}; known: {', '.join(self.names())}"
            )
        return replace(self, **{name: rule})


@dataclass(frozen=True)
class LockoutRule:
    """Wrong guesses at one secret (the registration code of a number) before a lockout,
    the first lockout, doubling per further wrong guess up to ``max_s``, and how long after
    the last wrong guess the count is forgotten (limits/backoff.py)."""

    free: int = 5
    first_s: float = 60.0
    max_s: float = 86_400.0
    forget_s: float = 30 * 86_400.0

    def __post_init__(self) -> None:
        if self.free < 1 or not 0 < self.first_s <= self.max_s or self.forget_s < self.max_s:
            raise InvalidInputError(
                "a lockout needs FREE >= 1 and 0 < FIRST <= MAX <= the forget time"
            )

    def wait_s(self, failures: int) -> float:
        """How long after the last of ``failures`` wrong guesses the next one may come."""
        if failures < self.free:
            return 0.0
        return min(self.max_s, self.first_s * 2.0 ** min(failures - self.free, 64))

    def __str__(self) -> str:
        return f"{self.free}/{self.first_s:g}s/{self.max_s:g}s"


_LOCKOUT_RE = re.compile(r"([0-9]+)/([0-9]+(?:\.[0-9]+)?)/([0-9]+(?:\.[0-9]+)?)")


def parse_lockout(text: str) -> LockoutRule:
    """``FREE/FIRST_SECONDS/MAX_SECONDS`` (the ``--registration-lockout`` option)."""
    m = _LOCKOUT_RE.fullmatch(text.strip())
    if not m:
        raise InvalidInputError(f"a lockout reads FREE/FIRST_SECONDS/MAX_SECONDS, not {text!r}")
    max_s = float(m.group(3))
    return LockoutRule(int(m.group(1)), float(m.group(2)), max_s, max(max_s, LockoutRule.forget_s))


# Per-client connection budgets (docs/server.md, docs/security.md): what one client may hold
# of the server's sockets, memory and CPU before any request is routed.
MAX_SOCKETS_PER_ADDRESS = 256  # open connections per address (IPv6: per /64)
HEAD_TIMEOUT_S = 10.0  # connect → request head complete → websocket handshake done
MAX_HEAD_BYTES = 16 * 1024  # request line + headers, on every path; over it: 431
MAX_WRITE_BUFFER_BYTES = 64 * 1024  # unsent output per socket: reading stops at half, drop at it
CONTROL_FRAMES = Rule(10, 10)  # pings/pongs per channel socket: 10 at once, 1/s sustained


@dataclass(frozen=True)
class SocketBudgets:
    """What one client may hold at the socket level; ``None`` turns a budget off."""

    max_sockets_per_address: int | None = MAX_SOCKETS_PER_ADDRESS
    head_timeout_s: float = HEAD_TIMEOUT_S
    max_head_bytes: int = MAX_HEAD_BYTES
    max_write_buffer_bytes: int = MAX_WRITE_BUFFER_BYTES
    control_frames: Rule | None = CONTROL_FRAMES

    def __post_init__(self) -> None:
        if self.max_sockets_per_address is not None and self.max_sockets_per_address < 1:
            raise InvalidInputError("--max-sockets-per-address must be at least 1 (or off)")
        if not 0 < self.head_timeout_s <= 3600:
            raise InvalidInputError("--head-timeout must be more than 0 and at most 3600 s")
        if not 1024 <= self.max_head_bytes <= 1024 * 1024:
            raise InvalidInputError("--max-head-bytes must be 1 KiB to 1 MiB")
        if not 4096 <= self.max_write_buffer_bytes <= 64 * 1024 * 1024:
            raise InvalidInputError("--max-write-buffer must be 4 KiB to 64 MiB")


_RULE_RE = re.compile(r"([a-z_]+)=(?:(off)|([0-9]+)/([0-9]+(?:\.[0-9]+)?))")


def parse_rate_limit(text: str, *, known: bool = True) -> tuple[str, Rule | None]:
    """``NAME=COUNT/SECONDS`` or ``NAME=off`` (the ``--rate-limit`` option; ``known=False``
    for a rule that is not one of ``RateLimits``, such as ``--control-frames``)."""
    m = _RULE_RE.fullmatch(text.strip())
    if not m:
        raise InvalidInputError(f"a rate limit reads NAME=COUNT/SECONDS or NAME=off, not {text!r}")
    name = m.group(1)
    if known and name not in RateLimits.names():
        raise InvalidInputError(
            f"unknown rate limit {name!r}; known: {', '.join(RateLimits.names())}"
        )
    if m.group(2):
        return name, None
    return name, Rule(int(m.group(3)), float(m.group(4)))


def parse_budget_count(option: str, text: str) -> int | None:
    """A positive count, or ``off`` (None)."""
    value = text.strip().lower()
    if value == "off":
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidInputError(f"{option} takes a positive number or 'off', not {text!r}")
    return int(value)


@dataclass(frozen=True)
class ServerConfig:
    """One server's settings. Every field has the default ``provision server`` uses."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db_url: str = ""  # "" → a SQLite file in the user data folder (see default_db_url)
    redis_url: str | None = None  # redis://…: fan-out and rate limits shared by several nodes
    redis_prefix: str = "provision:"  # every Redis key and topic starts with it
    channel_ttl_s: float = CHANNEL_TTL_S
    short_codes: bool = True  # links by short code (GET /v1/capabilities); --no-short-codes
    registration_codes: RegistrationMode = "log"
    test_registration_code: str | None = field(default=None, repr=False)
    allow_test_code_on_public_bind: bool = False
    max_devices: int = MAX_DEVICES
    provisioning_code_ttl_s: float = PROVISIONING_CODE_TTL_S
    provisioning_code_digits: int = PROVISIONING_CODE_DIGITS
    max_provisioning_codes: int = MAX_PROVISIONING_CODES
    registration_code_ttl_s: float = REGISTRATION_CODE_TTL_S
    max_body_bytes: int = MAX_BODY_BYTES
    max_prekeys: int = MAX_PREKEYS_PER_UPLOAD
    max_messages_per_send: int = MAX_MESSAGES_PER_SEND
    max_messages_per_fetch: int = MAX_MESSAGES_PER_FETCH
    max_wait_s: float = MAX_WAIT_S
    max_fetch_bytes: int = MAX_FETCH_BYTES
    max_queue_messages: int = MAX_QUEUE_MESSAGES
    max_queue_bytes: int = MAX_QUEUE_BYTES
    rate_limits: RateLimits = field(default_factory=RateLimits)
    registration_lockout: LockoutRule | None = field(default_factory=LockoutRule)
    sockets: SocketBudgets = field(default_factory=SocketBudgets)
    tls_cert: str | None = None
    tls_key: str | None = None
    forwarded_allow_ips: str | None = None  # trust X-Forwarded-For from these proxies only
    log_level: str = "info"
    access_log: bool = True  # one line per request: method, route template, status, time
    housekeeping_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.test_registration_code is not None and self.registration_codes != "test":
            object.__setattr__(self, "registration_codes", "test")
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; each failure is an ``InvalidInputError`` naming the option."""
        if not 0 <= self.port <= 65535:
            raise InvalidInputError("--port must be 0 to 65535")
        if self.channel_ttl_s <= 0:
            raise InvalidInputError("--channel-ttl must be positive")
        if not 1 <= self.max_devices <= 1000:
            raise InvalidInputError("--max-devices must be 1 to 1000")
        if not 6 <= self.provisioning_code_digits <= 9:
            # §4: decimal, fits a uint32, 6 to 9 digits.
            raise InvalidInputError("provisioning codes have 6 to 9 digits")
        if self.registration_codes not in ("log", "test"):
            raise InvalidInputError("--registration-codes is 'log' or 'test'")
        if self.registration_codes == "test":
            code = self.test_registration_code
            if code is None or not re.fullmatch(r"[0-9]{4,12}", code):
                raise InvalidInputError(
                    "--registration-codes test needs --test-registration-code (4 to 12 digits)"
                )
            if not self.allow_test_code_on_public_bind and not is_loopback_host(self.host):
                raise InvalidInputError(
                    f"--test-registration-code lets anyone register any number; refusing it on "
                    f"the non-loopback address {self.host!r} "
                    "(add --allow-test-code-on-public-bind if you really mean it)"
                )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInputError("--tls-cert and --tls-key go together")
        if self.max_body_bytes < 1024:
            raise InvalidInputError("the body limit must be at least 1 KiB")
        if self.max_queue_messages < 1 or self.max_queue_bytes < self.max_body_bytes:
            raise InvalidInputError(
                "--max-queue-messages must be >= 1 and --max-queue-bytes at least the body limit"
            )
        if self.max_fetch_bytes < 1:
            raise InvalidInputError("--max-fetch-bytes must be positive")
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise InvalidInputError("--redis takes a redis://, rediss:// or unix:// URL")
        if not re.fullmatch(r"[A-Za-z0-9_.:{}-]{1,64}", self.redis_prefix):
            raise InvalidInputError("--redis-prefix takes 1 to 64 letters, digits and _ . : - { }")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def base_url(self, port: int | None = None) -> str:
        """The URL a local client uses: 127.0.0.1 for a wildcard or loopback bind."""
        return f"{self.scheme}://{_url_host(self.host)}:{self.port if port is None else port}"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    bare = host.strip("[]")
    if bare in ("", "0.0.0.0", "localhost"):  # noqa: S104 - naming the wildcard, not binding it
        return "127.0.0.1"
    if bare == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(bare).version == 6:
            return f"[{bare}]"
    except ValueError:
        pass
    return bare


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def default_db_path(folder: Path | None = None) -> Path:
    """``relay.sqlite3`` in ``folder`` (``provision --data-dir X server``), by default in
    ``<user data dir>/textsecure-provision/server/`` (the folder made 0700)."""
    if folder is None:
        import platformdirs

        folder = Path(platformdirs.user_data_dir("textsecure-provision")) / "server"
    folder = folder.expanduser()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    return folder / "relay.sqlite3"


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///rel.db``, ``sqlite:////abs.db``, ``sqlite:///:memory:`` or a bare path.

    As in SQLAlchemy: after ``sqlite:///`` comes the path itself, so an absolute
    path gives four slashes.
    """
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
    elif "://" in url:
        raise InvalidInputError(f"not a SQLite URL: {url.split('://')[0]}://...")
    else:
        path = url
    if not path:
        raise InvalidInputError("the SQLite URL names no file")
    return path
