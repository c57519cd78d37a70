"""The secondary's state machine refuses every step out of order (§1, §8)."""

from __future__ import annotations

import pytest

from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import EnvelopeError, NumberMismatchError, UntrustedServerError
from textsecure_provision.protocol.messages import IdentityKeyPayload
from textsecure_provision.protocol.provisioning import (
    SECONDARY_TRANSITIONS,
    SecondaryLink,
    SecondaryState,
    StepError,
    seal_device_init,
)

IDENTITY = KeyPair.from_private(bytes(range(32)))
TRUSTED = ("https://relay.example.org",)


def sealed_for(link: SecondaryLink, server: str = "https://relay.example.org") -> bytes:
    payload = IdentityKeyPayload(IDENTITY, "+15550001111", server, False, 123456789)
    return seal_device_init(payload, link.ephemeral.public).device_init


def test_happy_path() -> None:
    link = SecondaryLink.start(TRUSTED)
    opened = link.receive(sealed_for(link))
    assert link.state is SecondaryState.RECEIVED
    assert link.confirm_number("+15550001111") == opened.payload
    link.registered()
    link.keys_uploaded()
    link.committed()
    assert link.state is SecondaryState.DONE


def test_cannot_register_before_confirming() -> None:
    link = SecondaryLink.start(TRUSTED)
    link.receive(sealed_for(link))
    with pytest.raises(StepError):
        link.registered()
    with pytest.raises(StepError):
        link.committed()


def test_number_mismatch_fails_the_attempt() -> None:
    link = SecondaryLink.start(TRUSTED)
    link.receive(sealed_for(link))
    with pytest.raises(NumberMismatchError):
        link.confirm_number("+15550009999")
    assert link.state is SecondaryState.FAILED
    with pytest.raises(StepError):
        link.confirm_number("+15550001111")


def test_untrusted_server_in_device_init() -> None:
    link = SecondaryLink.start(TRUSTED)
    with pytest.raises(UntrustedServerError):
        link.receive(sealed_for(link, "https://evil.example"))
    assert link.state is SecondaryState.FAILED


def test_second_message_refused() -> None:
    link = SecondaryLink.start(TRUSTED)
    link.receive(sealed_for(link))
    with pytest.raises(StepError):
        link.receive(sealed_for(link))


def test_tampered_fails() -> None:
    link = SecondaryLink.start(TRUSTED)
    data = bytearray(sealed_for(link))
    data[-1] ^= 1
    with pytest.raises(EnvelopeError):
        link.receive(bytes(data))
    assert link.state is SecondaryState.FAILED


def test_each_ephemeral_key_is_new() -> None:
    assert SecondaryLink.start(TRUSTED).ephemeral != SecondaryLink.start(TRUSTED).ephemeral


def test_table_has_no_exit_from_terminal_states() -> None:
    for state, _event in SECONDARY_TRANSITIONS:
        assert state not in (SecondaryState.DONE, SecondaryState.FAILED)
