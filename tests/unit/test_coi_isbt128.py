"""ISBT 128 identifiers: DIN parse and ISO 7064 Mod 37-2 check (test vectors, every single
substitution and adjacent transposition detected), CoI identifier pattern, SEC parse."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aseptic_cell.coi.isbt128 import (
    ALPHABET,
    IdentifierError,
    check_character,
    check_flags,
    make_din,
    mod37_2,
    parse_coi_id,
    parse_din,
    parse_sec,
)

# body, S mod 37, c, eye-readable, flags (worked example of the JPAC Red Book annex, a public
# parser's test case, and one computed independently)
VECTORS = [
    ("G123498654321", 21, 17, "H", "77"),
    ("G123417654321", 28, 10, "A", "70"),
    ("A999917123456", 29, 9, "9", "69"),
]


def _weighted_sum(body: str) -> int:
    """The textbook form (weights 2^n, n from the right, rightmost 1), independent of the
    streaming implementation under test."""
    return sum(ALPHABET.index(ch) * 2 ** (len(body) - i) for i, ch in enumerate(body))


@pytest.mark.parametrize(("body", "s_mod", "c", "eye", "flags"), VECTORS)
def test_check_character_test_vectors(body: str, s_mod: int, c: int, eye: str, flags: str) -> None:
    assert _weighted_sum(body) % 37 == s_mod
    assert mod37_2(body) == c == (38 - s_mod) % 37
    assert check_character(body) == eye
    assert check_flags(body) == flags


def test_worked_example_sum() -> None:
    assert _weighted_sum("G123498654321") == 148_354


@pytest.mark.parametrize(("body", "s_mod", "c", "eye", "flags"), VECTORS)
def test_din_accepted_in_every_form(body: str, s_mod: int, c: int, eye: str, flags: str) -> None:
    forms = ["=" + body + flags, body + flags, body + eye, f"{body[:5]} {body[5:7]} {body[7:]} {eye}",
             " " + body + eye + " "]
    for text in forms:
        din = parse_din(text)
        assert (din.fin, din.year, din.sequence) == (body[:5], body[5:7], body[7:])
        assert din.body == body and din.check == eye and din.checked
    assert parse_din("=" + body + flags).barcode_data == "=" + body + flags
    assert parse_din(body + eye).eye_readable == f"{body} {eye}"


def test_din_wrong_check_character_names_the_check_field() -> None:
    with pytest.raises(IdentifierError) as e:
        parse_din("G123417654321B")
    assert e.value.field == "din.check" and "'A'" in e.value.reason
    with pytest.raises(IdentifierError) as e:
        parse_din("=G12341765432171")
    assert e.value.field == "din.check" and "70" in e.value.reason
    assert isinstance(e.value, ValueError)


def test_din_without_a_check_is_refused_unless_allowed() -> None:
    for text in ("=G12341765432100", "G123417654321", "=G12341765432105"):
        with pytest.raises(IdentifierError) as e:
            parse_din(text)
        assert e.value.field == "din.check"
        din = parse_din(text, require_check=False)
        assert not din.checked and din.check == "A"  # computed, not verified


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("", "din"),
        ("=G1234176543217", "din.length"),  # bar code one short
        ("=G123417654321700", "din.length"),
        ("G12341765432", "din.length"),
        ("G1234176543210AB", "din.length"),
        ("G12=417654321A", "din.data_identifier"),
        ("11234176543212", "din.fin"),  # FIN must start with a letter
        ("GA234176543212", "din.fin"),
        ("G1234A7654321A", "din.year"),
        ("G12341765432XA", "din.sequence"),
        ("=G1234176543217A", "din.flags"),
        ("=G12341765432197", "din.flags"),  # 97 - 60 = 37 is no check value
        ("G123417654321a", "din.check"),
        ("G123417654321#", "din.check"),
    ],
)
def test_din_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_din(text)
    assert e.value.field == field, str(e.value)
    assert e.value.reason


def test_din_eye_readable_and_flags_must_both_agree() -> None:
    din = parse_din("=G12341765432170")
    assert str(din) == "G123417654321A"
    assert make_din("G1234", "17", "654321") == din
    with pytest.raises(IdentifierError):
        make_din("G1234", "17", "65432")


_FIN_CHARS = st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGIT = st.sampled_from("0123456789")


@st.composite
def din_bodies(draw: st.DrawFn) -> str:
    return draw(_FIN_CHARS) + "".join(draw(st.lists(_DIGIT, min_size=12, max_size=12)))


@settings(max_examples=100, deadline=None)
@given(body=din_bodies(), pos=st.integers(0, 12), new=st.sampled_from(ALPHABET))
def test_any_single_substitution_is_detected(body: str, pos: int, new: str) -> None:
    mutated = body[:pos] + new + body[pos + 1:]
    if mutated == body:
        return
    c = check_character(body)
    assert mod37_2(mutated) != mod37_2(body)  # the check itself catches it ...
    with pytest.raises(IdentifierError):  # ... and so does the parse (check or field error)
        parse_din(mutated + c)
    with pytest.raises(IdentifierError):
        parse_din("=" + mutated + check_flags(body))


@settings(max_examples=100, deadline=None)
@given(body=din_bodies(), pos=st.integers(0, 11))
def test_any_adjacent_transposition_is_detected(body: str, pos: int) -> None:
    mutated = body[:pos] + body[pos + 1] + body[pos] + body[pos + 2:]
    if mutated == body:
        return
    assert mod37_2(mutated) != mod37_2(body)
    with pytest.raises(IdentifierError):
        parse_din(mutated + check_character(body))


def test_substitution_and_transposition_exhaustive_over_the_alphabet() -> None:
    """Every substitution at every position of a vector body, and every adjacent transposition
    of every pair of distinct alphabet characters (2 is a primitive root mod 37)."""
    body = VECTORS[0][0]
    c = mod37_2(body)
    for i in range(len(body)):
        for ch in ALPHABET:
            if ch != body[i]:
                assert mod37_2(body[:i] + ch + body[i + 1:]) != c
    for a in ALPHABET:
        for b in ALPHABET:
            if a != b:
                for i in range(12):
                    s1 = body[:i] + a + b + body[i + 2:]
                    s2 = body[:i] + b + a + body[i + 2:]
                    assert mod37_2(s1) != mod37_2(s2)


# ----------------------------------------------------------------------------- CoI identifier
def test_coi_identifier_is_opaque_and_matches_the_configured_pattern() -> None:
    assert parse_coi_id(" COI-000123 ") == "COI-000123"
    assert parse_coi_id("X9Z", r"[A-Z0-9]{3}") == "X9Z"
    for bad in ("", "   ", "coi-000123", "COI 000123", "A1", "COI|000123"):
        with pytest.raises(IdentifierError) as e:
            parse_coi_id(bad)
        assert e.value.field == "coi_id"
    with pytest.raises(IdentifierError):
        parse_coi_id("X9Z1", r"[A-Z0-9]{3}")  # full match, not a prefix


# ----------------------------------------------------------------------------- SEC
SEC_TEXT = "GB000123" + "G123417654321" + "A0000001" + "001" + "20271231"


def test_sec_parse_parts_and_din() -> None:
    assert len(SEC_TEXT) == 40
    for text in (SEC_TEXT, "SEC:" + SEC_TEXT, "SEC: GB000123 G123417654321 A0000001 001 20271231"):
        sec = parse_sec(text)
        assert sec.tissue_establishment_code == "GB000123"
        assert sec.donation_number == "G123417654321"
        assert sec.product_code == "A0000001" and sec.split == "001"
        assert sec.expiry == dt.date(2027, 12, 31)
        assert sec.text == SEC_TEXT
    din = parse_sec(SEC_TEXT).din()
    assert din is not None and din.body == "G123417654321" and not din.checked
    no_exp = parse_sec(SEC_TEXT[:32] + "00000000")
    assert no_exp.expiry is None
    assert parse_sec("GB000123G123417654321E0000001001" + "00000000").din() is None  # not ISBT 128


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (SEC_TEXT[:-1], "sec.length"),
        ("1B" + SEC_TEXT[2:], "sec.country"),
        ("GB00012#" + SEC_TEXT[8:], "sec.te_number"),
        (SEC_TEXT[:8] + "g123417654321" + SEC_TEXT[21:], "sec.donation_number"),
        (SEC_TEXT[:21] + "1" + SEC_TEXT[22:], "sec.coding_system"),
        (SEC_TEXT[:29] + "0-1" + SEC_TEXT[32:], "sec.split"),
        (SEC_TEXT[:32] + "2027123X", "sec.expiry"),
        (SEC_TEXT[:32] + "20270231", "sec.expiry"),  # 31 February
    ],
)
def test_sec_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(IdentifierError) as e:
        parse_sec(text)
    assert e.value.field == field, str(e.value)
