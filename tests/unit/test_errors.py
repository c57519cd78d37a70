"""The error vocabulary's rules: hints are per class or per construction, never mutated; what
went wrong is a class, not a string; client-only errors have no HTTP status (issue 15.4)."""

from __future__ import annotations

import json

import pytest

from textsecure_provision import errors
from textsecure_provision.errors import (
    AuthError,
    ProvisionError,
    RateLimitedError,
    StaleDevicesError,
    TimedOutError,
)
from textsecure_provision.protocol.provisioning import StepError
from textsecure_provision.server.handlers import provision_error_response

CLIENT_ONLY = [
    errors.LinkError,
    errors.QrError,
    errors.NoQrCodeError,
    errors.QrDecoderUnavailableError,
    errors.TimedOutError,
    errors.RefusedError,
    errors.NumberMismatchError,
    errors.UntrustedServerError,
    errors.ServerUnreachableError,
    errors.BadMessageError,
    errors.EnvelopeError,
    errors.SessionError,
    errors.DuplicateMessageError,
]


def test_with_hint_copies_and_leaves_the_raised_error_alone() -> None:
    original = StaleDevicesError("stale", stale=[2, 3])
    changed = original.with_hint("do this next")
    assert changed.hint == "do this next"
    assert original.hint == StaleDevicesError.hint
    assert type(changed) is StaleDevicesError
    assert changed.message == "stale" and changed.stale == [2, 3]
    assert changed.exit_code == original.exit_code


def test_a_hint_given_at_construction_is_that_instance_only() -> None:
    assert AuthError("x", hint="h").hint == "h"
    assert AuthError("x").hint == AuthError.hint


def test_no_grab_bag_of_details() -> None:
    with pytest.raises(TypeError):
        ProvisionError("x", reason="anything")  # type: ignore[call-arg]


def test_step_error_is_a_bug_not_a_provision_error() -> None:
    assert not issubclass(StepError, ProvisionError)
    assert issubclass(StepError, RuntimeError)


@pytest.mark.parametrize("cls", CLIENT_ONLY, ids=lambda c: c.__name__)
def test_client_only_errors_have_no_http_status(cls: type[ProvisionError]) -> None:
    assert cls.http_status is None


@pytest.mark.parametrize("cls", CLIENT_ONLY, ids=lambda c: c.__name__)
def test_a_client_only_error_in_the_server_is_answered_as_a_bug(cls: type[ProvisionError]) -> None:
    response = provision_error_response(cls("a secret detail"))
    assert response.status_code == 500
    assert json.loads(bytes(response.body)) == {"error": "internal error", "code": 500}


def test_server_errors_keep_their_status() -> None:
    response = provision_error_response(RateLimitedError("slow down", retry_after=7))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert provision_error_response(TimedOutError()).status_code == 500
