"""The short-code core alone (protocol/shortcode.py, crypto/pake.py): no network.

The machines are fed frame by frame, as h11's tests feed a connection: the
whole exchange, a wrong secret, a code bound to another server or nameplate,
frames out of order, tampering; hypothesis throws garbage at every parser.
"""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textsecure_provision.crypto import pake
from textsecure_provision.crypto.keys import KeyPair
from textsecure_provision.errors import (
    ProvisionError,
    ShortCodeFormatError,
    ShortCodeMessageError,
    WrongShortCodeError,
)
from textsecure_provision.protocol.shortcode import (
    MAX_NAMEPLATE,
    MAX_WORDS,
    MIN_WORDS,
    CodeState,
    FrameType,
    MasterCodeExchange,
    SecondaryCodeExchange,
    ShortCode,
    decode_frame,
    encode_frame,
    generate_code,
    parse_code,
)
from textsecure_provision.protocol.wordlist import WORDS, complete_word

SERVER = "https://relay.example.org"
CHANNEL = "9f1c2c57-6a3e-4b8e-9d4f-0b6f8f2d1a77"


def seeded(seed: int):  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    return lambda n: bytes(rnd.getrandbits(8) for _ in range(n))


KEY = KeyPair.generate(seeded(1))


def run(secondary: SecondaryCodeExchange, master: MasterCodeExchange) -> list[tuple[str, int]]:
    """Relay every frame between the two; returns (sender, frame type) in order."""
    log: list[tuple[str, int]] = []
    to_master = secondary.start()
    assert master.start() == []
    while to_master:
        to_secondary: list[bytes] = []
        for frame in to_master:
            log.append(("secondary", frame[0]))
            to_secondary += master.receive(frame)
        to_master = []
        for frame in to_secondary:
            log.append(("master", frame[0]))
            to_master += secondary.receive(frame)
    return log


def pair(
    code: ShortCode, master_code: ShortCode | None = None, master_server: str = SERVER
) -> tuple[SecondaryCodeExchange, MasterCodeExchange]:
    s = SecondaryCodeExchange(code, SERVER, CHANNEL, KEY.public, seeded(2))
    m = MasterCodeExchange(master_code or code, master_server, seeded(3))
    return s, m


# -- the code ------------------------------------------------------------------------------


def test_word_list_is_256_distinct_lowercase_words() -> None:
    assert len(WORDS) == 256 == len(set(WORDS))
    assert all(w.isascii() and w.isalpha() and w.islower() for w in WORDS)
    assert complete_word("tig") == ["tiger"]
    assert complete_word("snow") == ["snowcap", "snowslide"]


def test_generate_code_spells_one_byte_per_word() -> None:
    assert generate_code(7, 2, lambda n: b"\x00\xff"[:n]).text == "7-aardvark-zulu"
    assert generate_code(12, 3, lambda n: bytes([0xA9, 0xE2, 0x05])[:n]).text == (
        "12-revenge-tiger-adult"
    )
    with pytest.raises(ShortCodeFormatError):
        generate_code(1, 1, seeded(0))
    with pytest.raises(ShortCodeFormatError):
        generate_code(1, MAX_WORDS + 1, seeded(0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7-revenge-tiger", "7-revenge-tiger"),
        ("  7 REVENGE  Tiger\n", "7-revenge-tiger"),
        ("007--revenge-tiger", "7-revenge-tiger"),
        ("999999-aardvark-zulu-acme", "999999-aardvark-zulu-acme"),
    ],
)
def test_parse_code_accepts(text: str, expected: str) -> None:
    assert parse_code(text).text == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the code is empty"),
        ("revenge-tiger", "a code starts with its number, e.g. 7-revenge-tiger"),
        ("0-revenge-tiger", "the code's number must be 1 to 999999"),
        ("1000000-revenge-tiger", "a code starts with its number, e.g. 7-revenge-tiger"),
        (
            "٧-revenge-tiger",
            "a code starts with its number, e.g. 7-revenge-tiger",
        ),  # an Arabic-Indic seven
        ("7-revenge", "a code has 2 to 8 words"),
        ("7-revenge-tigerr", "word 2 of the code is not in the word list"),
        ("7-" + "-".join(["tiger"] * 9), "a code has 2 to 8 words"),
        ("7-tiger" * 40, "the code is too long"),
    ],
)
def test_parse_code_refuses(text: str, message: str) -> None:
    with pytest.raises(ShortCodeFormatError) as err:
        parse_code(text)
    assert err.value.message == message
    assert "tigerr" not in err.value.message  # a typed secret is never echoed


def test_short_code_repr_hides_the_words() -> None:
    code = parse_code("7-revenge-tiger")
    assert "revenge" not in repr(code) and "tiger" not in repr(code)


@given(
    st.integers(1, MAX_NAMEPLATE),
    st.lists(st.sampled_from(WORDS), min_size=MIN_WORDS, max_size=MAX_WORDS),
    st.sampled_from(["-", " ", " - ", "\t"]),
    st.booleans(),
)
def test_parse_code_round_trips(nameplate: int, words: list[str], sep: str, upper: bool) -> None:
    code = ShortCode(nameplate, tuple(words))
    text = sep.join([str(nameplate), *words])
    assert parse_code(text.upper() if upper else text) == code
    assert parse_code(code.text) == code


@given(st.text(max_size=300))
def test_parse_code_garbage_raises_only_format_errors(text: str) -> None:
    try:
        code = parse_code(text)
    except ShortCodeFormatError:
        return
    assert parse_code(code.text) == code


# -- frames --------------------------------------------------------------------------------


@given(st.binary(max_size=5000))
def test_decode_frame_garbage_raises_only_message_errors(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except ShortCodeMessageError:
        return
    assert encode_frame(frame.type, frame.body) == data


def test_decode_frame_refuses_each_wrong_length() -> None:
    for frame_type, size in ((FrameType.PAKE, 33), (FrameType.CONFIRM, 32), (FrameType.LINK, 65)):
        assert decode_frame(encode_frame(frame_type, bytes(size))).type is frame_type
        for wrong in (size - 1, size + 1):
            with pytest.raises(ShortCodeMessageError, match="wrong length"):
                decode_frame(encode_frame(frame_type, bytes(wrong)))
    with pytest.raises(ShortCodeMessageError, match="unknown type"):
        decode_frame(b"\x09" + bytes(32))


# -- the machines --------------------------------------------------------------------------


def test_whole_exchange_gives_the_master_the_qr_contents() -> None:
    code = parse_code("7-revenge-tiger")
    s, m = pair(code)
    log = run(s, m)
    assert log == [
        ("secondary", FrameType.PAKE),
        ("master", FrameType.PAKE),
        ("master", FrameType.CONFIRM),
        ("secondary", FrameType.CONFIRM),
        ("secondary", FrameType.LINK),
    ]
    assert s.state is CodeState.DONE and m.state is CodeState.DONE
    assert m.link is not None
    assert (m.link.channel_uuid, m.link.channel_server, m.link.public_key) == (
        CHANNEL,
        SERVER,
        KEY.public,
    )


def test_same_randomness_gives_the_same_transcript() -> None:
    code = parse_code("7-revenge-tiger")
    first, second = pair(code), pair(code)
    assert first[0].start() == second[0].start()


@pytest.mark.parametrize(
    ("master_code", "master_server"),
    [
        ("7-revenge-topmost", SERVER),  # another secret
        ("8-revenge-tiger", SERVER),  # the same words for another nameplate
        ("7-tiger-revenge", SERVER),  # the words swapped
        ("7-revenge-tiger", "https://other.example.org"),  # another server
    ],
)
def test_any_difference_fails_at_the_secondary_first(master_code: str, master_server: str) -> None:
    s, m = pair(parse_code("7-revenge-tiger"), parse_code(master_code), master_server)
    answer = m.receive(s.start()[0])
    assert [f[0] for f in answer] == [FrameType.PAKE, FrameType.CONFIRM]
    assert s.receive(answer[0]) == []
    with pytest.raises(WrongShortCodeError):
        s.receive(answer[1])  # the master's confirmation does not match
    assert s.state is CodeState.FAILED
    with pytest.raises(ShortCodeMessageError):
        s.receive(answer[1])  # a failed machine takes nothing more


def test_a_forged_secondary_confirmation_fails_at_the_master() -> None:
    code = parse_code("7-revenge-tiger")
    s, m = pair(code)
    answer = m.receive(s.start()[0])
    s.receive(answer[0])
    confirm, _link = s.receive(answer[1])
    with pytest.raises(WrongShortCodeError):
        m.receive(confirm[:-1] + bytes([confirm[-1] ^ 1]))
    assert m.state is CodeState.FAILED and m.link is None


def test_a_tampered_link_fails_at_the_master() -> None:
    code = parse_code("7-revenge-tiger")
    s, m = pair(code)
    answer = m.receive(s.start()[0])
    s.receive(answer[0])
    confirm, link = s.receive(answer[1])
    m.receive(confirm)
    with pytest.raises(ShortCodeMessageError, match="failed authentication"):
        m.receive(link[:10] + bytes([link[10] ^ 0x80]) + link[11:])
    assert m.link is None


def test_frames_out_of_order_are_refused() -> None:
    code = parse_code("7-revenge-tiger")
    s, m = pair(code)
    with pytest.raises(ShortCodeMessageError, match="out of order"):
        m.receive(encode_frame(FrameType.CONFIRM, bytes(32)))  # before any PAKE
    s2, m2 = pair(code)
    pake_s = s2.start()[0]
    m2.receive(pake_s)
    with pytest.raises(ShortCodeMessageError, match="out of order"):
        m2.receive(pake_s)  # a replayed PAKE
    with pytest.raises(ShortCodeMessageError, match="out of order"):
        s.receive(encode_frame(FrameType.LINK, bytes(65)))


def test_the_secondary_reflected_to_itself_fails() -> None:
    s, _ = pair(parse_code("7-revenge-tiger"))
    own = s.start()[0]
    with pytest.raises(ShortCodeMessageError):
        s.receive(own)  # spake2: a message from our own side


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 2))
def test_garbage_at_any_step_raises_only_provision_errors(data: bytes, step: int) -> None:
    code = parse_code("7-revenge-tiger")
    s, m = pair(code)
    answer = m.receive(s.start()[0])
    if step >= 1:
        s.receive(answer[0])
    if step >= 2:
        m.receive(s.receive(answer[1])[0])
    for machine in (s, m):
        before = machine.state
        try:
            machine.receive(data)
        except ProvisionError:
            # A failed step leaves the machine FAILED; a finished one stays as it was.
            finished = before in (CodeState.DONE, CodeState.FAILED)
            assert machine.state is (before if finished else CodeState.FAILED)


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_pake_finish_on_any_point_is_keys_or_one_error(body: bytes) -> None:
    side = pake.Pake("master", b"revenge-tiger", pake.side_ids(SERVER, 7), seeded(4))
    try:
        keys = side.finish(b"B" + body)
    except ShortCodeMessageError:
        return
    assert len(keys.master_confirm) == 32


def test_keys_differ_per_purpose() -> None:
    keys = pake.derive_code_keys(bytes(range(32)))
    values = [keys.master_confirm, keys.secondary_confirm, keys.to_master, keys.to_secondary]
    assert len(set(values)) == 4
    assert all(repr(v) not in repr(keys) for v in values)  # key material stays out of logs


def test_channel_uuid_travels_canonical() -> None:
    code = parse_code("7-revenge-tiger")
    upper = CHANNEL.upper()
    s = SecondaryCodeExchange(code, SERVER, upper, KEY.public, seeded(2))
    m = MasterCodeExchange(code, SERVER + "/", seeded(3))
    run(s, m)
    assert m.link is not None and m.link.channel_uuid == str(uuid.UUID(CHANNEL))


def test_docs_list_every_transition() -> None:
    from pathlib import Path

    from textsecure_provision.protocol.shortcode import CODE_TRANSITIONS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    for (role, state, frame), following in CODE_TRANSITIONS.items():
        row = f"| {role} | `{state.name}` | {frame.name} | `{following.name}` |"
        assert row in doc, row
