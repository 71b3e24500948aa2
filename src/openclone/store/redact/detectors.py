"""The default detectors: what is redacted, as which ``[KIND]``, and in which order.

Detectors run one after another, each over the text the earlier ones left; the order is the
precedence (what an earlier detector took, a later one never sees):

1. ``SECRET``: PEM private keys, JWTs, vendor keys (OpenAI/Anthropic ``sk-``, Stripe, AWS
   ``AKIA``/``ASIA``, GitHub ``ghp_``/``github_pat_``, Slack ``xox?-``, Google ``AIza``),
   passwords in URLs, ``password=…``/``api_key: …``/``token=…`` assignments (only the value
   goes) and ``Bearer`` tokens. First, because keys are full of digit runs and ``@``.
2. ``EMAIL``: its local part may hold a phone or card number.
3. ``IBAN`` (country length and mod-97 checked): its groups of four look like a card's.
4. ``NATIONAL_ID``: US SSN (``ddd-dd-dddd``; areas 000, 666 and 9xx are invalid), UK National
   Insurance number, French NIR (15 digits, key checked), Spanish DNI/NIE (letter checked).
   An SSN is phone-shaped and a NIR card-length.
5. ``CARD``: 13-19 digits, plain or grouped by spaces or dashes, Luhn-checked, first digit
   2-6; printed 4-4-4-4 it would pass for a phone number.
6. ``IP``: IPv6 (compressed and IPv4-mapped forms too), then IPv4; a dotted quad looks like
   a dot-separated phone number.
7. ``PHONE``, the loosest, last: 7-15 digits after a ``+``, with an area code in
   parentheses, after a word like "tel" or "phone", or in a shape that national numbering
   plans print (see ``checks._plain_phone``); dates, ranges, versions, amounts and tables of
   numbers are turned away.

Speed and stability: a pattern proposes, a check decides (checksums, dates, shapes). Every
pattern opens at the start of a token and has no nested unbounded repetition, so a rejected
candidate is retried one character on at linear cost: one pass per detector. Placeholders
hold no digits or ``@`` and are never counted twice, and the characters around a
placeholder block a match as the replaced token did, so redacting redacted text changes
nothing.

Decisions a reader might not guess: a dotted quad of single digits (``1.2.3.4``,
``2.0.0.1``) is kept, as a version or section number far more often than a host (and the
hosts it could name, ``1.1.1.1`` or ``8.8.8.8``, are public resolvers); so are loopback,
unspecified, multicast and reserved addresses, and a quad after "version", "v", "clause" or
a product token like ``Chrome/``. Any other valid quad is an IP address. A non-Luhn 16-digit
number is kept whole: it is read as neither a card nor a phone number. What this misses is
in the README ("Redaction: known limitations").
"""

from __future__ import annotations

import re
from collections.abc import Callable

from openclone.store.redact.base import Detector, Span
from openclone.store.redact.checks import (
    find_assignment,
    find_bearer,
    find_card,
    find_dni,
    find_email,
    find_iban,
    find_ip,
    find_ipv6,
    find_nino,
    find_nir,
    find_phone,
    find_ssn,
    find_vendor_key,
)

__all__ = ["DEFAULT_DETECTORS"]


# --- building blocks ----------------------------------------------------------------------


def _group(n: int) -> Callable[[re.Match[str]], Span | None]:
    def find(m: re.Match[str]) -> Span | None:
        return m.span(n)

    return find


def _contains(*needles: str) -> Callable[[str], bool]:
    def gate(text: str) -> bool:
        return any(n in text for n in needles)

    return gate


def _contains_folded(*needles: str) -> Callable[[str], bool]:
    """Any of the lower-case ``needles`` in ``text`` whatever its case (one C-speed lowering,
    cheaper than searching under IGNORECASE)."""

    def gate(text: str) -> bool:
        lowered = text.lower()
        return any(n in lowered for n in needles)

    return gate


def _finds(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)

    def gate(text: str) -> bool:
        return compiled.search(text) is not None

    return gate


# Every digit detector replaces only what holds two digits side by side: its pattern asks
# for them, or its check turns the rest away (a dotted quad of single digits is kept, and a
# phone number may hold at most three one-digit groups, of its seven digits or more). Most
# prompts hold no such pair, and this one search, shared, skips eight passes.
_two_digits = _finds(r"\d\d")
# The IBAN and UK NI patterns open on a capital letter, found in most prompts; these look
# for their digits instead (a country code and check digits; a prefix and two digits).
_iban_hint = _finds(r"[0-9](?<=[A-Z][A-Z][0-9])[0-9]")
_nino_hint = _finds(r"[0-9](?:(?<=[A-Z][0-9])|(?<=[A-Z] [0-9]))[0-9]")


def _start(first: str, blocked: str) -> str:
    r"""``first`` where it is not glued to a ``blocked`` character before it.

    The lookbehind follows the first character so that ``re`` can skip ahead to that
    character, several times faster than testing a leading lookbehind at every position.
    In JSON text (tool-call arguments) an escape such as ``\n`` counts as the whitespace it
    stands for, and an escaped character never starts a token: replacing it would leave
    its backslash escaping the placeholder.
    """
    return rf"{first}(?:(?<!{blocked}{first})(?<!\\{first})|(?<=\\[nrt]{first}))"


# A token must not continue another, nor end where one goes on. "]" and "[" count as token
# characters so that a placeholder blocks what the token it replaced blocked: a second run
# over redacted text finds nothing the first did not.
_NOT_IN_TOKEN = r"[\w@.+\]-]"  # before a number
_E = r"(?![\w@\[]|[.,]\d)"  # after a number (a decimal point and digits would go on)
_NOT_IN_KEY = r"[\w\]-]"  # before a key


# SWIFT IBAN registry: the length fixes where an IBAN ends when words follow it.
_IBAN_LENGTHS = {
    **dict.fromkeys(["NO"], 15),
    **dict.fromkeys(["BE"], 16),
    **dict.fromkeys(["DK", "FI", "FK", "FO", "GL", "NL", "SD"], 18),
    **dict.fromkeys(["MK", "SI"], 19),
    **dict.fromkeys(["AT", "BA", "EE", "KZ", "LT", "LU", "MN", "XK"], 20),
    **dict.fromkeys(["CH", "HR", "LI", "LV"], 21),
    **dict.fromkeys(["BG", "BH", "CR", "DE", "GB", "GE", "IE", "ME", "RS", "VA"], 22),
    **dict.fromkeys(["AE", "GI", "IL", "IQ", "OM", "SO", "TL"], 23),
    **dict.fromkeys(["AD", "CZ", "ES", "MD", "PK", "RO", "SA", "SE", "SK", "TN", "VG"], 24),
    **dict.fromkeys(["LY", "PT", "ST"], 25),
    **dict.fromkeys(["IS", "TR"], 26),
    **dict.fromkeys(["BI", "DJ", "FR", "GR", "IT", "MC", "MR", "SM"], 27),
    **dict.fromkeys(["AL", "AZ", "BY", "CY", "DO", "GT", "HU", "LB", "NI", "PL", "SV"], 28),
    **dict.fromkeys(["BR", "EG", "PS", "QA", "UA"], 29),
    **dict.fromkeys(["JO", "KW", "MU", "YE"], 30),
    **dict.fromkeys(["MT", "SC"], 31),
    **dict.fromkeys(["LC"], 32),
    **dict.fromkeys(["RU"], 33),
}


def _iban_pattern() -> re.Pattern[str]:
    # One branch per length, chosen by a lookbehind on the country code, so the regex itself
    # knows where each country's IBAN ends; it opens with a letter so ``re`` can skip ahead.
    by_length: dict[int, list[str]] = {}
    for country, length in _IBAN_LENGTHS.items():
        by_length.setdefault(length, []).append(country)
    branches = "|".join(
        f"(?<=(?:{'|'.join(sorted(cs))})[0-9]{{2}})(?: ?[A-Z0-9]){{{n - 4}}}"
        for n, cs in sorted(by_length.items())
    )
    return re.compile(
        _start("[A-Z]", r"[\w\]]") + rf"[A-Z][0-9]{{2}}(?:{branches})(?![A-Za-z0-9\[])"
    )


# --- the detectors ------------------------------------------------------------------------

_PEM_NAME = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?"
_NEWLINE = r"(?:\s|\\[rn])"  # real or JSON-escaped, as in tool-call arguments
_VENDOR_PREFIXES = ("sk-", "k_live_", "k_test_", "AKIA", "ASIA", "github_pat_", "xox", "AIza")
# ghp_ and kin by their tails: "gh" alone is in too many words to be a useful gate
_GITHUB_PREFIXES = tuple(f"h{c}_" for c in "pousr")
_KEYWORDS = ("pass", "pwd", "secret", "token", "key", "authorization")
_PEM = _contains("-----BEGIN ")  # one gate object: its answer is shared by both PEM passes

DEFAULT_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "SECRET",
        # The body may hold single dashes (PEM headers) but not "-----": each attempt stops
        # at the next marker, so unterminated blocks cannot make this quadratic.
        re.compile(rf"-----BEGIN {_PEM_NAME}-----(?:[^-]|-(?!----))*?-----END {_PEM_NAME}-----"),
        gate=_PEM,
    ),
    Detector(
        "SECRET",  # a pasted key cut short: the header and the base64 lines that follow
        re.compile(
            rf"-----BEGIN {_PEM_NAME}-----"
            rf"(?:{_NEWLINE}+[A-Za-z0-9+/=]{{16,}})*"
            # the last line is short; take it only when it is a whole line
            rf"(?:{_NEWLINE}+[A-Za-z0-9+/]{{1,15}}={{0,2}}(?=[ \t]*(?:\r?\n|\\[rn]|$)))?"
        ),
        gate=_PEM,
    ),
    Detector(
        "SECRET",  # JWT: header and payload are base64url JSON objects, so both start eyJ
        re.compile(
            _start("eyJ", _NOT_IN_KEY) + r"[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"
        ),
        gate=_contains("eyJ"),
    ),
    Detector(
        "SECRET",
        re.compile(
            "|".join(
                [
                    # OpenAI, Anthropic
                    _start("s", _NOT_IN_KEY) + r"k-(?:proj-|ant-|svcacct-|admin-)?[\w-]{20,}",
                    _start("[sr]", _NOT_IN_KEY) + r"k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
                    _start("A", _NOT_IN_KEY) + r"(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])",  # AWS
                    _start("g", _NOT_IN_KEY) + r"(?:h[pousr]_\w{30,}|ithub_pat_\w{22,})",  # GitHub
                    _start("x", _NOT_IN_KEY) + r"ox[abeoprs]-[A-Za-z0-9-]{10,}",  # Slack
                    _start("A", _NOT_IN_KEY) + r"Iza[\w-]{35}(?![\w-])",  # Google
                ]
            ),
            re.ASCII,  # \w here is a key's alphabet, [A-Za-z0-9_]
        ),
        find_vendor_key,
        gate=_contains(*_VENDOR_PREFIXES, *_GITHUB_PREFIXES),
    ),
    Detector(
        "SECRET",  # scheme://user:PASSWORD@host
        re.compile(r"://[^\s/:@]{1,64}:([^\s/@]{1,128})@"),
        _group(1),
        gate=_contains("://"),
    ),
    Detector(
        "SECRET",  # password=…, "api_key": "…", GITHUB_TOKEN=…, Authorization: Bearer …
        # The name must end with the keyword ("max_tokens=" is not one); anything may come
        # before it (DB_PASSWORD, apiKey).
        re.compile(
            r"(?i)(?:password|passwd|passphrase|pwd|secret|secret[_-]?key|token|api[_-]?key"
            r"|apikey|access[_-]?key|private[_-]?key|authorization)"
            r"[\"']?[ \t]*(?P<op>[:=])[ \t]*"
            # a quoted value may hold escaped quotes; a bare one stops before a backslash,
            # so that a JSON escape is never cut in half
            r"(?:\"(?:(?:bearer|basic|token)\s+)?(?P<dq>(?:[^\"\\\n]|\\.){0,200})\""
            r"|'(?:(?:bearer|basic|token)\s+)?(?P<sq>(?:[^'\\\n]|\\.){0,200})'"
            r"|(?:(?:bearer|basic|token)[ \t]+)?(?P<bare>[^\s\"',;<>(){}\[\]&\\]{3,}))"
        ),
        find_assignment,
        # Two cheap scans first: no assignment without its ":" or "=", nor without a keyword
        # in any case (the pattern is IGNORECASE: "pAssword=" and a Kelvin-sign "toKen" count).
        gate=(_contains(":", "="), _contains_folded(*_KEYWORDS)),
    ),
    Detector(
        "SECRET",
        re.compile(_start("Bearer", _NOT_IN_KEY) + r"\s+([A-Za-z0-9._~+/-]{16,}=*)"),
        find_bearer,
        gate=_contains("Bearer"),
    ),
    Detector(
        "EMAIL",
        re.compile(
            r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
            # a lower- or upper-case TLD, so that run-together text ends it: x@y.comCc
            r"\.(?:[a-z]{2,24}(?![a-z0-9_\[])|[A-Z]{2,24}(?![A-Za-z0-9_\[]))"
        ),
        find_email,
        gate=_contains("@"),
    ),
    Detector("IBAN", _iban_pattern(), find_iban, gate=(_two_digits, _iban_hint)),
    Detector(
        "NATIONAL_ID",  # US Social Security number
        re.compile("(" + _start(r"\d", _NOT_IN_TOKEN) + r"\d\d)-(\d\d)-(\d{4})" + _E),
        find_ssn,
        gate=_two_digits,
    ),
    Detector(
        "NATIONAL_ID",  # UK National Insurance number
        re.compile(
            _start("[A-CEGHJ-PR-TW-Z]", r"[\w\]]") + r"[A-CEGHJ-NPR-TW-Z]"
            r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?![\w\[])"
        ),
        find_nino,
        gate=(_two_digits, _nino_hint),
    ),
    Detector(
        "NATIONAL_ID",  # French NIR ("numéro de sécurité sociale"), key = 97 - n mod 97
        re.compile(
            rf"({_start('[12]', _NOT_IN_TOKEN)}) ?([0-9]{{2}}) ?([0-9]{{2}}) ?([0-9]{{2}}|2[AB])"
            rf" ?([0-9]{{3}}) ?([0-9]{{3}}) ?([0-9]{{2}}){_E}"
        ),
        find_nir,
        gate=_two_digits,
    ),
    Detector(
        "NATIONAL_ID",  # Spanish DNI (8 digits) and NIE (X/Y/Z + 7 digits), check letter
        re.compile(
            rf"(?P<first>{_start('[XYZ0-9]', _NOT_IN_TOKEN)})"
            r"(?:(?<=[XYZ])-?(?P<n7>[0-9]{7})|(?<=[0-9])(?P<n8>[0-9]{7}))"
            r"[- ]?(?P<letter>[A-Z])(?![\w\[])"
        ),
        find_dni,
        gate=_two_digits,
    ),
    Detector(
        "CARD",
        # Plain, or in the printed groups (4-4-4-4, 4-6-5, 4-6-4) possibly followed by more:
        # the lookahead turns most other digit runs away before any Python runs.
        re.compile(
            _start(r"\d", _NOT_IN_TOKEN) + rf"(?=\d{{12}}|\d{{3}}[ -]\d{{4,6}}[ -]\d{{4,5}}(?!\d))"
            rf"\d{{0,18}}(?:[ -]\d{{1,19}}){{0,7}}{_E}"
        ),
        find_card,
        gate=_two_digits,
    ),
    Detector(
        "IP",  # IPv6, from its first colon
        re.compile(
            r":(?<!::)(?:[0-9A-Fa-f]{0,4}:){1,6}"
            r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:\[]|\.[0-9])"
        ),
        find_ipv6,
        gate=_contains(":"),
    ),
    Detector(
        "IP",
        re.compile(
            _start("[0-9]", r"[\w.\]-]")
            + r"[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![\w\[]|\.[0-9])"
        ),
        find_ip,
        gate=_two_digits,
    ),
    Detector(
        "PHONE",
        re.compile(
            # "+" may follow a number ("ID 12 +1 555…"); a digit may not follow "digit space",
            # so that the tail of one number never starts another. Each branch first looks
            # for seven digits close together, which turns most numbers away cheaply.
            _start(r"[+(\d]", r"[\w@+.:/\]-]")
            + r"(?:(?<=\+) ?(?=(?:[ .()-]{0,2}\d){7})"
            + r"(?:\d{1,4}[ .-]?(?=\())?(?:\(\d{1,5}\)[ .-]?)?\d{1,15}"  # +44 (0)20, +1 555
            + r"|(?<=\()(?=(?:[ .()-]{0,2}\d){7})\d{1,5}\)[ .-]?\d{1,15}"  # (555) 123
            + r"|(?<=\d)(?<![\d\]] \d)(?=(?:[ .()-]{0,2}\d){6})"
            + r"(?:\d{0,3}[ .-]?\(\d{1,5}\)[ .-]?\d{1,15}|\d{0,14})"  # 1 (800) 555, 555
            + r")(?:[ .-]\d{1,15}){0,7}(?![\w@\[]|[.-]\d)"
        ),
        find_phone,
        gate=_two_digits,
    ),
)
