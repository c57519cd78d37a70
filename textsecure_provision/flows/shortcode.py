"""Links by short code: the two sides' network loops around the core's machines.

The new device (``CodeOffers``, used by ``listen_secondary``) asks the server
for a nameplate for each channel it opens, shows ``NAMEPLATE-word-word`` next
to the QR code, and answers the exchange (protocol/shortcode.py) while it
waits on the channel as usual: the DeviceInit arrives on the channel either
way. The account's device (``link_master_by_code``) claims the nameplate,
runs its side of the exchange, and hands the channel uuid and key it learned
to ``link_master``, so consent, the DeviceInit, the confirmation code and the
acknowledgement are those of a QR link, byte for byte.

A wrong code ends both sides: whichever side's key confirmation fails burns
the nameplate, and the other learns it from the relay (410).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass

from textsecure_provision.crypto.keys import PublicKey, Rng
from textsecure_provision.deadlines import within
from textsecure_provision.errors import (
    NameplateBurnedError,
    ProvisionError,
    ShortCodeMessageError,
    TimedOutError,
    WrongShortCodeError,
)
from textsecure_provision.flows.config import FlowConfig
from textsecure_provision.flows.devices import api_for
from textsecure_provision.flows.master import MasterLinkResult, SentHook, link_master
from textsecure_provision.flows.ui import Ui
from textsecure_provision.protocol.link import build_link
from textsecure_provision.protocol.shortcode import (
    CodeState,
    MasterCodeExchange,
    SecondaryCodeExchange,
    ShortCode,
    generate_code,
    parse_code,
)
from textsecure_provision.transport.api import ApiClient
from textsecure_provision.transport.nameplates import (
    Ticket,
    allocate_nameplate,
    burn_nameplate,
    claim_nameplate,
    fetch_nameplate_messages,
    fetch_short_codes,
    send_nameplate_messages,
)

log = logging.getLogger(__name__)

LONG_POLL_S = 25.0  # the secondary's wait per request for the master to claim and answer
MASTER_EXCHANGE_TIMEOUT_S = 30.0  # a live secondary answers in milliseconds
OFFER_TIMEOUT_S = 5.0  # the QR code waits for the code no longer than this

SECONDARY_WRONG_CODE_HINT = (
    "Someone typed a wrong code for this device: the code is burned and nothing was linked. "
    "Restart `provision secondary` for a new code."
)
MASTER_WRONG_CODE_HINT = (
    "The code is burned now: nothing was sent. Restart `provision secondary` on the new "
    "device and type its new code; check that both devices name this account's server "
    "with the same URL (--server), since the code is bound to it."
)

# -- the new device -----------------------------------------------------------------------------


@dataclass
class Offer:
    code: ShortCode
    ticket: Ticket
    exchange: SecondaryCodeExchange


class CodeOffers:
    """The secondary's short codes, one per channel; off when the server has none, or
    with ``words=0`` (``--no-code``).

    Failing to get a code never fails the listen: the QR code still works.
    """

    def __init__(self, config: FlowConfig, server: str, *, words: int, rng: Rng) -> None:
        self.server = server
        self.words = words
        self.rng = rng
        self._api = ApiClient(server, None, ca_file=config.ca_file)
        self._supported: bool | None = None

    async def __aenter__(self) -> CodeOffers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._api.aclose()

    async def offer(self, channel_uuid: str, public_key: PublicKey) -> Offer | None:
        """A code for this channel, its first message already posted; None if none."""
        if self.words == 0:  # --no-code
            return None
        try:
            return await within(self._offer(channel_uuid, public_key), OFFER_TIMEOUT_S)
        except TimeoutError:
            log.info("no short code for this channel: the server took too long")
            return None

    async def _offer(self, channel_uuid: str, public_key: PublicKey) -> Offer | None:
        try:
            if self._supported is None:
                self._supported = await fetch_short_codes(self._api)
            if not self._supported:
                return None
            got = await allocate_nameplate(self._api, channel_uuid)
            code = generate_code(got.ticket.nameplate, self.words, self.rng)
            exchange = SecondaryCodeExchange(code, self.server, channel_uuid, public_key, self.rng)
            # Posted before the code is shown, so a master that types it fast finds it there.
            await send_nameplate_messages(self._api, got.ticket, exchange.start())
        except ProvisionError as exc:
            log.info("no short code for this channel: %s", exc.message)
            return None
        return Offer(code, got.ticket, exchange)

    async def serve(self, offer: Offer) -> None:
        """Answer the master until the exchange is done; raise if the code was wrong.

        Any other failure only ends the code (the QR code still works): the nameplate
        gone with its expiring channel (404, which may come before the channel's own
        close), or the server unreachable for a moment.
        """
        try:
            await self._serve(offer)
        except (WrongShortCodeError, ShortCodeMessageError):
            raise
        except ProvisionError as exc:
            log.info("the short code ended: %s", exc.message)

    async def _serve(self, offer: Offer) -> None:
        after = 0
        while offer.exchange.state is not CodeState.DONE:
            try:
                messages = await fetch_nameplate_messages(
                    self._api, offer.ticket, after, LONG_POLL_S
                )
            except NameplateBurnedError:
                raise WrongShortCodeError(
                    "the other device reported a wrong code", hint=SECONDARY_WRONG_CODE_HINT
                ) from None
            for message in messages:
                after += 1
                try:
                    answer = offer.exchange.receive(message)
                except WrongShortCodeError:
                    await _burn_quietly(self._api, offer.ticket)
                    raise WrongShortCodeError(
                        "someone tried a wrong code for this device",
                        hint=SECONDARY_WRONG_CODE_HINT,
                    ) from None
                except ShortCodeMessageError:
                    await _burn_quietly(self._api, offer.ticket)
                    raise
                if answer:
                    await send_nameplate_messages(self._api, offer.ticket, answer)

    async def receive(
        self, channel_message: Awaitable[bytes | None], offer: Offer | None
    ) -> bytes | None:
        """The channel's message (or None: expired), while the code's exchange runs beside it.

        The exchange ending well changes nothing (the DeviceInit still comes on the
        channel); ending badly (a wrong code) ends the wait with its error.
        """
        receiving = asyncio.ensure_future(channel_message)
        if offer is None:
            return await receiving
        serving = asyncio.ensure_future(self.serve(offer))
        try:
            done, _ = await asyncio.wait({receiving, serving}, return_when=asyncio.FIRST_COMPLETED)
            failure = serving.exception() if serving in done else None
            if failure is not None:
                raise failure
            return await receiving
        finally:
            for task in (receiving, serving):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task


async def _burn_quietly(api: ApiClient, ticket: Ticket) -> None:
    try:
        await burn_nameplate(api, ticket)
    except ProvisionError as exc:  # the nameplate dies with its channel anyway
        log.info("could not burn the nameplate: %s", exc.message)


# -- the account's device -------------------------------------------------------------------------


async def learn_link_by_code(api: ApiClient, code: ShortCode, server: str, rng: Rng) -> str:
    """Claim the nameplate and run the master's side; returns the link a QR would carry."""
    claimed = await claim_nameplate(api, code.nameplate)
    exchange = MasterCodeExchange(code, server, rng)
    pending = list(claimed.messages)
    after = len(pending)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MASTER_EXCHANGE_TIMEOUT_S
    while exchange.state is not CodeState.DONE:
        for message in pending:
            try:
                answer = exchange.receive(message)
            except (WrongShortCodeError, ShortCodeMessageError):
                await _burn_quietly(api, claimed.ticket)
                raise
            if answer:
                await send_nameplate_messages(api, claimed.ticket, answer)
        if exchange.state is CodeState.DONE:
            break
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimedOutError("the new device did not answer the short code in time")
        try:
            pending = await fetch_nameplate_messages(
                api, claimed.ticket, after, min(remaining, LONG_POLL_S)
            )
        except NameplateBurnedError:
            raise WrongShortCodeError(
                "the code did not match: the new device refused it",
                hint=MASTER_WRONG_CODE_HINT,
            ) from None
        after += len(pending)
    assert exchange.link is not None
    return build_link(exchange.link)


async def link_master_by_code(
    config: FlowConfig,
    ui: Ui,
    code_text: str,
    *,
    rng: Rng = secrets.token_bytes,
    on_sent: SentHook | None = None,
) -> MasterLinkResult:
    """``master --code``: the exchange, then exactly ``link_master`` with the learned link."""
    code = parse_code(code_text)  # a typo fails here, before the one attempt is spent
    record = config.store().require_record()
    async with api_for(record, config) as api:
        link_text = await learn_link_by_code(api, code, record.server, rng)
    return await link_master(config, ui, link_text, rng=rng, on_sent=on_sent)
