"""The new device's side: ``secondary listen`` and ``verify`` (§1 steps 1, 2, 5, 6).

``listen_secondary`` opens a channel, shows its link, renews it with a new key
each time the server expires it (§4.1 step 3), and on a DeviceInit hands over
to ``SecondaryLink`` (protocol/provisioning.py), which opens and trust-checks
it and refuses any step out of order. ``complete_link`` then registers,
uploads keys and stores, in that order, storing only once everything else
worked (§8). ``--no-verify`` stops after receiving: the raw DeviceInit and the
channel key go into a pending file for ``verify_pending``, which re-opens it
through the same ``SecondaryLink`` path.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from textsecure_provision import clock
from textsecure_provision.crypto.keys import Rng
from textsecure_provision.deadlines import within
from textsecure_provision.errors import (
    BadMessageError,
    ConfirmationMismatchError,
    InvalidInputError,
    MessageFormatError,
    ProvisionError,
    StoreError,
    TimedOutError,
)
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.keys import (
    UnsignedKeys,
    new_password,
    new_registration_id,
    prepare_device_keys,
)
from textsecure_provision.flows.shortcode import CodeOffers
from textsecure_provision.flows.ui import Ui
from textsecure_provision.protocol.encoding import parse_phone_number
from textsecure_provision.protocol.link import ProvisioningLink, build_link
from textsecure_provision.protocol.provisioning import OpenedInit, SecondaryLink
from textsecure_provision.protocol.shortcode import DEFAULT_WORDS
from textsecure_provision.store import DeviceRecord, PendingLink
from textsecure_provision.transport.api import ApiClient, Credentials
from textsecure_provision.transport.channel import TempChannel

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
ASSUMED_CHANNEL_TTL_S = 120.0  # §4.1 default; the server may expire it sooner, then we renew
PENDING_TTL_S = 600.0  # the provisioning code inside expires 10 minutes after it was issued (§4)

LinkedHook = Callable[[DeviceRecord, ApiClient, Ui], Awaitable[None]]
"""Called by the secondary's flows right after the record is stored, with the API client
authenticated as the new device: where it announces itself to the account's other devices
(§1 step 7, ``flows/sessions.linked_hook``). Without it the flow ends at step 6."""


# What is true if the command stops at each point (``Ui.state``; shown on Ctrl-C).
NOTHING_LINKED = "nothing was linked and nothing was stored."
RECEIVED_UNUSED = (
    "the link was received but not used: nothing was linked or stored here. "
    "The other device's wait will time out; restart both sides to link."
)
MAY_BE_REGISTERED = (
    "the server may have registered this device, but nothing was stored here. On the "
    "account's device, `provision devices` lists it and `provision devices remove ID` "
    "removes it; then link again."
)
LINKED_NOT_ANNOUNCED = (
    "this device is linked and stored, but the account's other devices may not have been "
    "told: run `provision send-control new-device-registered`."
)
PENDING_KEPT = "the received link is kept: finish it with `provision verify` within 10 minutes."
CODE_QUESTION = "Confirmation code shown on the other device"
MAX_CODE_ATTEMPTS = 3  # only for answers that are not six digits; a wrong code ends it at once


@dataclass(frozen=True)
class ListenOptions:
    timeout_s: float = DEFAULT_TIMEOUT_S
    expect_number: str | None = None
    no_verify: bool = False
    name: str | None = None
    ask_code: bool = False
    """Have the person type the confirmation code the master shows (a person at a terminal,
    no ``--expect-number``): someone who raced the real master with a photo of the QR
    code then fails here, because the code they caused is not the one on the user's
    own device."""
    short_code: bool = True  # also offer a code for `provision master --code` (flows/shortcode.py)
    code_words: int = DEFAULT_WORDS


@dataclass(frozen=True)
class PendingSaved:
    number: str
    confirmation: str
    expires_ms: int


async def listen_secondary(
    config: FlowConfig,
    ui: Ui,
    options: ListenOptions | None = None,
    *,
    rng: Rng = secrets.token_bytes,
    on_linked: LinkedHook | None = None,
) -> DeviceRecord | PendingSaved:
    """Wait to be linked; return the stored record (or the pending link with ``no_verify``)."""
    options = options or ListenOptions()
    expect = parse_phone_number(options.expect_number) if options.expect_number else None
    store = config.store()
    store.require_no_record()
    server = config.require_server()
    trusted = (server, *config.trusted_servers)
    store.require_writable()  # before the channel: a link must not die at the commit
    ui.state(NOTHING_LINKED)
    words = options.code_words if options.short_code else 0  # 0: no short codes
    # The key pairs need no identity key: made now, while nobody waits for this device
    # (its link is not shown yet), not after the DeviceInit, when the other device waits.
    prepared = None if options.no_verify else prepare_device_keys(rng)
    async with CodeOffers(config, server, words=words, rng=rng) as codes:
        link_state, device_init = await _receive_device_init(
            config, ui, server, trusted, options, rng, codes
        )
    opened = _open(link_state, device_init)
    ui.state(RECEIVED_UNUSED)
    ask_code = options.ask_code and expect is None
    _announce(ui, opened, typed=ask_code)  # also with --no-verify: `verify` asks for it
    if options.no_verify:
        if expect is not None:
            link_state.confirm_number(expect)  # a wrong number is refused now, not saved
        now = clock.now_ms()
        pending = PendingLink(
            device_init=device_init,
            ephemeral=link_state.ephemeral,
            channel_server=server,
            trusted_servers=trusted,
            received_ms=now,
            expires_ms=now + int(PENDING_TTL_S * 1000),
            name=options.name,
        )
        store.commit_pending(pending)
        ui.state(PENDING_KEPT)
        ui.result(
            "pending_saved",
            "Received; not linked yet. Finish within 10 minutes with `provision verify`.",
            number=opened.payload.phone_number,
            confirmation_code=opened.confirmation,
            expires_in=int(PENDING_TTL_S),
        )
        return PendingSaved(opened.payload.phone_number, opened.confirmation, pending.expires_ms)
    if ask_code:
        ask_confirmation_code(ui, link_state, opened)
    _confirm_number(ui, link_state, opened, expect)
    return await complete_link(
        config, ui, link_state, name=options.name, rng=rng, on_linked=on_linked, keys=prepared
    )


def ask_confirmation_code(ui: Ui, link_state: SecondaryLink, opened: OpenedInit) -> None:
    """The person types the code the other device shows; a mismatch ends the link (exit 4)."""
    for attempt in range(1, MAX_CODE_ATTEMPTS + 1):
        answer = ui.ask(CODE_QUESTION)
        try:
            typed = parse_confirmation_code(answer)
        except InvalidInputError:
            if attempt == MAX_CODE_ATTEMPTS:
                link_state.fail()
                raise
            ui.event(
                "code_malformed",
                "The confirmation code is six digits, e.g. 123 456; try again.",
            )
            continue
        require_same_code(link_state, typed, opened.confirmation)
        return


def require_same_code(link_state: SecondaryLink, given: str, shown: str) -> None:
    """Compare in constant time; on a mismatch nothing goes on (§5)."""
    if not hmac.compare_digest(given.encode(), parse_confirmation_code(shown).encode()):
        link_state.fail()
        raise ConfirmationMismatchError(
            "the confirmation code does not match the one of the link this device received",
            hint="Do not link this device: the link may come from someone else's device. "
            "Nothing was registered. Restart both sides and scan again.",
        )


async def _receive_device_init(
    config: FlowConfig,
    ui: Ui,
    server: str,
    trusted: tuple[str, ...],
    options: ListenOptions,
    rng: Rng,
    codes: CodeOffers,
) -> tuple[SecondaryLink, bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.timeout_s
    renewed = False
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimedOutError(f"no device linked this one within {options.timeout_s:.0f} s")
        # A new channel gets a new ephemeral key: an old QR must never open a new channel.
        link_state = SecondaryLink.start(trusted, rng)
        async with await TempChannel.open(server, ca_file=config.ca_file) as channel:
            link = build_link(ProvisioningLink(channel.uuid, server, link_state.ephemeral.public))
            offer = await codes.offer(channel.uuid, link_state.ephemeral.public)
            ui.channel_opened(
                link,
                channel_uuid=channel.uuid,
                expires_in=min(ASSUMED_CHANNEL_TTL_S, remaining),
                deadline_in=remaining,
                renewed=renewed,
                code=offer.code.text if offer is not None else None,
            )
            try:
                body = await within(codes.receive(channel.receive(), offer), remaining)
            except TimeoutError:
                raise TimedOutError(
                    f"no device linked this one within {options.timeout_s:.0f} s"
                ) from None
        if body is not None:
            return link_state, body
        log.info("channel %s expired; opening a new one", channel.uuid)
        renewed = True


def _open(link_state: SecondaryLink, device_init: bytes) -> OpenedInit:
    """§5 checks, then the server trust check (§8).

    A DeviceInit that does not even parse came off the network like a tampered
    one and is as untrustworthy: both are exit 8, not "invalid input".
    """
    try:
        return link_state.receive(device_init)
    except MessageFormatError as exc:
        raise BadMessageError(f"the received DeviceInit is malformed ({exc.message})") from exc


def _announce(ui: Ui, opened: OpenedInit, *, typed: bool = False) -> None:
    # When the person is to type the code, this screen must not show it: they would copy it
    # from here instead of reading it on the other device, and the check would prove nothing.
    # (The event's field still carries it, for --json, where nobody types.)
    shown = (
        "\nType the confirmation code that the other device shows."
        if typed
        else f"\nConfirmation code: {opened.confirmation} (the other device shows the same code)"
    )
    ui.event(
        "device_init_received",
        f"Received a link for account {opened.payload.phone_number} "
        f"via {opened.payload.server}.{shown}",
        number=opened.payload.phone_number,
        server=opened.payload.server,
        confirmation_code=opened.confirmation,
    )


def _confirm_number(
    ui: Ui, link_state: SecondaryLink, opened: OpenedInit, expect: str | None
) -> None:
    """§1 step 6: the user confirms the number, or --expect-number does; else nothing goes on."""
    number = opened.payload.phone_number
    if expect is None:
        ui.confirm(
            f"Link this device to account {number}? Answer yes only if it is your number",
            refusal=f"you did not confirm the number {number}",
        )
        expect = number
    link_state.confirm_number(expect)  # NumberMismatchError (exit 4) on a mismatch


async def complete_link(
    config: FlowConfig,
    ui: Ui,
    link_state: SecondaryLink,
    *,
    name: str | None = None,
    rng: Rng = secrets.token_bytes,
    on_linked: LinkedHook | None = None,
    keys: UnsignedKeys | None = None,
) -> DeviceRecord:
    """Register with the code, upload keys, then store: §1 step 5, nothing half-done (§8).

    ``keys``: this device's key pairs if made beforehand (``prepare_device_keys``); they are
    signed here with the account's identity key.
    """
    assert link_state.opened is not None
    payload = link_state.opened.payload
    store = config.store()
    password = new_password(rng)
    registration_id = new_registration_id(rng)
    creds = Credentials(payload.phone_number, password)
    async with ApiClient(payload.server, creds, ca_file=config.ca_file) as api:
        ui.state(MAY_BE_REGISTERED)
        try:
            device_id = await api.register_device(
                str(payload.provisioning_code), registration_id=registration_id, name=name
            )
        except ProvisionError:
            link_state.fail()
            raise
        link_state.registered()
        api.credentials = Credentials(payload.phone_number, password, device_id)
        signed = (keys or prepare_device_keys(rng)).sign(payload.identity_key_pair, rng)
        record = DeviceRecord(
            number=payload.phone_number,
            device_id=device_id,
            password=password,
            server=payload.server,
            registration_id=registration_id,
            identity=payload.identity_key_pair,
            signed_prekey=signed.signed_prekey,
            prekeys=signed.prekeys,
            last_resort_key=signed.last_resort_key,
            trusted_servers=tuple(config.trusted_servers),
            name=name,
            created_ms=clock.now_ms(),
        )
        try:
            await api.upload_keys(signed.upload_body(payload.identity_key_pair))
            link_state.keys_uploaded()
            store.commit_record(record)
        except ProvisionError:
            link_state.fail()
            await _unlink_quietly(api, device_id)
            raise
        link_state.committed()
        ui.state(LINKED_NOT_ANNOUNCED)
        ui.result(
            "registered",
            f"Linked: this is device {device_id} of {payload.phone_number}.",
            device_id=device_id,
            number=payload.phone_number,
            server=payload.server,
        )
        if on_linked is not None:
            await on_linked(record, api, ui)
    return record


async def _unlink_quietly(api: ApiClient, device_id: int) -> None:
    # The server already counts this device, but nothing is stored here: try to take it back
    # so the account does not keep a device nobody holds. Failing that, the user can remove
    # it from the master with `provision devices remove`.
    try:
        await api.remove_device(device_id)
    except ProvisionError as exc:
        log.info("could not unlink the half-registered device %s: %s", device_id, exc.message)


def parse_confirmation_code(text: str) -> str:
    """'123 456', '123-456' or '123456' → '123456'."""
    digits = re.sub(r"[\s-]", "", text or "")
    if not re.fullmatch(r"[0-9]{6}", digits):
        raise InvalidInputError("the confirmation code is six digits, e.g. 123 456")
    return digits


async def verify_pending(
    config: FlowConfig,
    ui: Ui,
    *,
    number: str | None = None,
    code: str | None = None,
    rng: Rng = secrets.token_bytes,
    on_linked: LinkedHook | None = None,
    now_ms: int | None = None,
    ask_code: bool = False,
) -> DeviceRecord:
    """Finish a link saved by ``listen --no-verify``: re-open, compare, confirm, complete."""
    expect = parse_phone_number(number) if number else None
    given_code = parse_confirmation_code(code) if code is not None else None
    store = config.store()
    ui.state(PENDING_KEPT)
    pending = store.load_pending()
    if pending is None:
        raise StoreError(
            f"no pending link in the data folder {store.path}",
            hint="Run `provision secondary listen --no-verify` first (with the same --data-dir).",
        )
    store.require_no_record()
    if (now_ms if now_ms is not None else clock.now_ms()) >= pending.expires_ms:
        store.remove_pending()
        raise TimedOutError(
            "the pending link expired (its provisioning code is valid for 10 minutes)",
            hint="Restart `provision secondary` and link again.",
        )
    trusted = (*pending.trusted_servers, *config.trusted_servers)
    link_state = SecondaryLink(pending.ephemeral, trusted)
    opened = _open(link_state, pending.device_init)
    ask_code = ask_code and given_code is None and expect is None
    _announce(ui, opened, typed=ask_code)
    if given_code is not None:
        require_same_code(link_state, given_code, opened.confirmation)
    elif ask_code:
        ask_confirmation_code(ui, link_state, opened)
    _confirm_number(ui, link_state, opened, expect)
    return await complete_link(
        config, ui, link_state, name=pending.name, rng=rng, on_linked=on_linked
    )
