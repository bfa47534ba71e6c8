"""ISBT 128 identifiers the cell reads: the Donation Identification Number (DIN, data structure
001), the Chain of Identity (CoI) Identifier (ST-028, data structure 040) and the Single European
Code (SEC).

* **DIN** [ISBT-ST001] [ISBT-IG033]: data identifier ``=`` (bar code only), Facility
  Identification Number (FIN, 5 characters: a letter and four digits), year code (2 digits),
  sequence number (6 digits), two flag characters and, printed only, the eye-readable check
  character. The 13 characters FIN + year + sequence are the DIN *body*; the check character is
  ISO 7064 Mod 37-2 over the body [ISO7064] as computed in [JPAC-RB-A2]; flags ``60``..``96``
  carry the same check as ``c + 60``. Field widths 5/2/6 as publicly implemented; confirm against
  the licensed ST-001 [M].
* **CoI identifier** [ISBT-ST028] [ISBT-IG050]: one value per patient therapy event, on every
  collection of that patient. Its character layout is not public [M]: it is an opaque string that
  must fully match the site's regex (``config/coi.yaml`` ``isbt_coi_regex``).
* **SEC** [EU-SEC-2015] (Directive 2006/86/EC Annex VII as amended by (EU) 2015/565): 40
  characters — EU tissue-establishment code (2-letter ISO country code + 6 alphanumeric), unique
  donation number (13, may be a DIN body), product code (coding-system letter + 7 alphanumeric),
  split number (3) and expiry ``YYYYMMDD`` (``00000000`` when none); the eye-readable form starts
  with ``SEC:``.

Every parse error is an :class:`IdentifierError` (a ``ValueError``) naming the field and why.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
"""ISO 7064 Mod 37-2 character set; a character's value is its index (0..36) [ISO7064]."""

DATA_IDENTIFIER = "="
FIN_WIDTH, YEAR_WIDTH, SEQUENCE_WIDTH, FLAGS_WIDTH = 5, 2, 6, 2
BODY_WIDTH = FIN_WIDTH + YEAR_WIDTH + SEQUENCE_WIDTH  # 13
FLAG_CHECK_OFFSET = 60
"""Flags ``60``..``96`` carry the Mod 37-2 check value as ``c + 60`` [JPAC-RB-A2]."""

SEC_WIDTH = 40
SEC_PREFIX = "SEC:"


class IdentifierError(ValueError):
    """An identifier failed to parse or validate. ``field`` names the part (``din.fin``,
    ``din.check``, ``sec.expiry``, ``coi_id``...), ``reason`` says why, ``value`` is the text read."""

    def __init__(self, field: str, reason: str, value: str = "") -> None:
        self.field = field
        self.reason = reason
        self.value = value
        super().__init__(f"{field}: {reason}" + (f" (read {value!r})" if value else ""))


# ----------------------------------------------------------------------------- ISO 7064 Mod 37-2
def mod37_2(body: str) -> int:
    """The ISO 7064 Mod 37-2 check value (0..36) of ``body`` [ISO7064] [JPAC-RB-A2].

    Weight of a character = 2^n, n its position from the right (rightmost n = 1);
    S = sum(v * 2^n); c = (38 - S mod 37) mod 37. Streaming form: p = ((p + v) * 2) mod 37.

    Raises:
        IdentifierError: a character outside ``0-9 A-Z *``.
    """
    p = 0
    for i, ch in enumerate(body):
        v = ALPHABET.find(ch)
        if v < 0:
            raise IdentifierError("din.body", f"character {ch!r} at position {i + 1} is not in 0-9, A-Z, *", body)
        p = ((p + v) * 2) % 37
    return (38 - p) % 37


def check_character(body: str) -> str:
    """The eye-readable check character of a DIN body."""
    return ALPHABET[mod37_2(body)]


def check_flags(body: str) -> str:
    """The two flag digits that carry the check value (``c + 60``, "60".."96")."""
    return f"{mod37_2(body) + FLAG_CHECK_OFFSET:02d}"


# ----------------------------------------------------------------------------- DIN
_FIN = re.compile(r"[A-Z][0-9]{4}")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class DIN:
    """A parsed, validated Donation Identification Number.

    ``check`` is the eye-readable check character (computed when the input carried it only in the
    flags); ``checked`` says whether a check carried by the input was verified (an input with flags
    ``00``..``59`` and no eye-readable character carries none).
    """

    fin: str
    year: str
    sequence: str
    flags: str
    check: str
    checked: bool

    @property
    def body(self) -> str:
        """FIN + year + sequence: the 13 characters the check covers (and the SEC donation number)."""
        return self.fin + self.year + self.sequence

    @property
    def barcode_data(self) -> str:
        """The bar-code data content: ``=`` + body + flags."""
        return DATA_IDENTIFIER + self.body + self.flags

    @property
    def eye_readable(self) -> str:
        """Body and check character as printed for keyboard entry, e.g. ``G123417654321 A``."""
        return f"{self.body} {self.check}"

    def __str__(self) -> str:
        return self.body + self.check


def _din_fields(body: str, raw: str) -> tuple[str, str, str]:
    if len(body) != BODY_WIDTH:
        raise IdentifierError("din.body", f"must be {BODY_WIDTH} characters (FIN 5 + year 2 + sequence 6), "
                              f"got {len(body)}", raw)
    fin, year, seq = body[:FIN_WIDTH], body[FIN_WIDTH:FIN_WIDTH + YEAR_WIDTH], body[FIN_WIDTH + YEAR_WIDTH:]
    if not _FIN.fullmatch(fin):
        raise IdentifierError("din.fin", "must be a capital letter and four digits (e.g. A9999)", raw)
    if not _DIGITS.fullmatch(year):
        raise IdentifierError("din.year", "must be two digits", raw)
    if not _DIGITS.fullmatch(seq):
        raise IdentifierError("din.sequence", "must be six digits", raw)
    return fin, year, seq


def parse_din(text: str, *, require_check: bool = True) -> DIN:
    """Parse and validate a DIN as scanned or keyed.

    Accepted forms (spaces are ignored):

    * bar-code data ``=`` + body + 2 flags (16 characters), e.g. ``=G12341765432170``;
    * body + 2 flags (15), body + eye-readable check character (14), body alone (13).

    The check is verified against the eye-readable character and/or flags ``60``..``96``
    (both when both are present). With ``require_check`` (COI-02: "pass DIN/ISO 7064 check
    where a DIN is present") an input that carries no check is refused.

    Raises:
        IdentifierError: naming the field (``din.data_identifier``, ``din.length``, ``din.fin``,
            ``din.year``, ``din.sequence``, ``din.flags``, ``din.check``) and why.
    """
    if not isinstance(text, str):
        raise IdentifierError("din", f"must be text, got {type(text).__name__}")
    raw = text
    s = "".join(text.split())
    if not s:
        raise IdentifierError("din", "empty", raw)
    barcode = s.startswith(DATA_IDENTIFIER)
    if barcode:
        s = s[1:]
        if len(s) != BODY_WIDTH + FLAGS_WIDTH:
            raise IdentifierError("din.length", f"bar-code data must be '=' + {BODY_WIDTH} + "
                                  f"{FLAGS_WIDTH} flag characters, got {len(s) + 1} characters", raw)
    elif DATA_IDENTIFIER in s:
        raise IdentifierError("din.data_identifier", "'=' may only lead the bar-code data", raw)
    body, flags, eye = s[:BODY_WIDTH], "", ""
    rest = s[BODY_WIDTH:]
    if len(rest) == FLAGS_WIDTH:
        flags = rest
    elif len(rest) == 1:
        eye = rest
    elif rest or len(s) < BODY_WIDTH:
        raise IdentifierError("din.length", f"expected {BODY_WIDTH} characters, plus 1 check character or "
                              f"{FLAGS_WIDTH} flags, got {len(s)}", raw)
    fin, year, seq = _din_fields(body, raw)
    c = mod37_2(body)
    checked = False
    if flags:
        if not _DIGITS.fullmatch(flags):
            raise IdentifierError("din.flags", "must be two digits", raw)
        value = int(flags)
        if value >= FLAG_CHECK_OFFSET:
            if value - FLAG_CHECK_OFFSET > 36:
                raise IdentifierError("din.flags", f"check flags must be 60..96, got {flags}", raw)
            if value - FLAG_CHECK_OFFSET != c:
                raise IdentifierError("din.check", f"flags {flags} carry check {ALPHABET[value - 60]!r} but the "
                                      f"ISO 7064 Mod 37-2 check of {body} is {ALPHABET[c]!r} (flags {c + 60})", raw)
            checked = True
    if eye:
        if eye not in ALPHABET:
            raise IdentifierError("din.check", f"check character {eye!r} is not in 0-9, A-Z, *", raw)
        if eye != ALPHABET[c]:
            raise IdentifierError("din.check", f"check character {eye!r} does not match the ISO 7064 Mod 37-2 "
                                  f"check of {body}: {ALPHABET[c]!r}", raw)
        checked = True
    if require_check and not checked:
        raise IdentifierError("din.check", "no check to verify: no eye-readable check character and the "
                              "flags do not carry one (60..96)", raw)
    return DIN(fin, year, seq, flags or "00", ALPHABET[c], checked)


def make_din(fin: str, year: str, sequence: str) -> DIN:
    """A DIN with its check in the flags (for labels printed in the cell and tests)."""
    body = fin + year + sequence
    _din_fields(body, body)
    return parse_din(DATA_IDENTIFIER + body + check_flags(body))


# ----------------------------------------------------------------------------- CoI identifier
DEFAULT_COI_REGEX = r"[A-Z0-9][A-Z0-9-]{5,39}"
"""Opaque default until the licensed ST-028 layout is available [M] (``config/coi.yaml``)."""


def parse_coi_id(text: str, pattern: str | re.Pattern[str] = DEFAULT_COI_REGEX) -> str:
    """Validate an ISBT 128 CoI identifier (or a sponsor's COI) as an opaque string that must
    fully match ``pattern`` [ISBT-ST028] [M]. Returns it unchanged (leading/trailing spaces removed).

    Raises:
        IdentifierError: ``coi_id`` empty or not matching.
    """
    if not isinstance(text, str):
        raise IdentifierError("coi_id", f"must be text, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise IdentifierError("coi_id", "empty", text)
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    if not rx.fullmatch(s):
        raise IdentifierError("coi_id", f"does not match the configured CoI identifier pattern {rx.pattern!r}", text)
    return s


# ----------------------------------------------------------------------------- SEC
_ALNUM = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True)
class SEC:
    """A parsed Single European Code [EU-SEC-2015]."""

    country: str
    te_number: str
    donation_number: str
    coding_system: str
    product_number: str
    split: str
    expiry: _dt.date | None

    @property
    def tissue_establishment_code(self) -> str:
        return self.country + self.te_number

    @property
    def donation_identification_sequence(self) -> str:
        return self.country + self.te_number + self.donation_number

    @property
    def product_code(self) -> str:
        return self.coding_system + self.product_number

    @property
    def text(self) -> str:
        exp = self.expiry.strftime("%Y%m%d") if self.expiry else "00000000"
        return self.donation_identification_sequence + self.product_code + self.split + exp

    def din(self) -> DIN | None:
        """The donation number as a DIN body when it is one (coding system ``A`` = ISBT 128 [M]);
        the SEC carries no DIN check character, so the result is unchecked."""
        if self.coding_system != "A":
            return None
        try:
            return parse_din(self.donation_number, require_check=False)
        except IdentifierError:
            return None


def parse_sec(text: str) -> SEC:
    """Parse a SEC (40 characters; an optional ``SEC:`` prefix and spaces are ignored).

    Raises:
        IdentifierError: ``sec.length``, ``sec.country``, ``sec.te_number``, ``sec.donation_number``,
            ``sec.coding_system``, ``sec.product_number``, ``sec.split`` or ``sec.expiry``.
    """
    if not isinstance(text, str):
        raise IdentifierError("sec", f"must be text, got {type(text).__name__}")
    raw = text
    s = text.strip()
    if s.upper().startswith(SEC_PREFIX):
        s = s[len(SEC_PREFIX):]
    s = "".join(s.split())
    if len(s) != SEC_WIDTH:
        raise IdentifierError("sec.length", f"must be {SEC_WIDTH} characters, got {len(s)}", raw)
    parts = {
        "country": (s[0:2], re.compile(r"[A-Z]{2}"), "two capital letters (ISO country code)"),
        "te_number": (s[2:8], _ALNUM, "six letters or digits"),
        "donation_number": (s[8:21], _ALNUM, "13 letters or digits"),
        "coding_system": (s[21:22], re.compile(r"[A-Z]"), "one capital letter"),
        "product_number": (s[22:29], _ALNUM, "seven letters or digits"),
        "split": (s[29:32], _ALNUM, "three letters or digits"),
    }
    for name, (value, rx, what) in parts.items():
        if not rx.fullmatch(value):
            raise IdentifierError(f"sec.{name}", f"must be {what}, got {value!r}", raw)
    exp_text = s[32:40]
    expiry: _dt.date | None = None
    if not _DIGITS.fullmatch(exp_text):
        raise IdentifierError("sec.expiry", f"must be 8 digits YYYYMMDD (00000000 if none), got {exp_text!r}", raw)
    if exp_text != "00000000":
        try:
            expiry = _dt.date(int(exp_text[:4]), int(exp_text[4:6]), int(exp_text[6:]))
        except ValueError:
            raise IdentifierError("sec.expiry", f"{exp_text} is not a calendar date", raw) from None
    return SEC(parts["country"][0], parts["te_number"][0], parts["donation_number"][0], parts["coding_system"][0],
               parts["product_number"][0], parts["split"][0], expiry)
