"""PII redaction: typed placeholders (``[EMAIL]``, ``[CARD]``, …) and a count of what went.

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
   plans print (see :func:`_plain_phone`); dates, ranges, versions, amounts and tables of
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
in the README ("Redaction: known limitations"); a stronger detector (Presidio, an NER model)
plugs in through :func:`load_redactor` as ``module:attr``.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from openclone.errors import ConfigError

__all__ = [
    "DEFAULT_DETECTORS",
    "Detector",
    "RedactionResult",
    "Redactor",
    "RegexRedactor",
    "load_redactor",
    "redact",
    "redact_messages",
]

Span = tuple[int, int]


@dataclass(frozen=True)
class RedactionResult:
    text: str
    counts: dict[str, int] = field(default_factory=dict)  # kind -> how many were replaced


class Redactor(Protocol):
    """Anything that turns text into redacted text and a count per kind."""

    def __call__(self, text: str) -> RedactionResult: ...


def _whole(m: re.Match[str]) -> Span | None:
    return m.span()


@dataclass(frozen=True)
class Detector:
    """One kind of PII: ``pattern`` finds candidates, ``find`` picks the span to replace.

    ``find`` returns ``None`` to leave a candidate alone; the search then resumes one
    character after the candidate's start, so ``pattern`` must not match inside a token.
    A pattern that opens with a character (not a lookbehind or ``\\b``) lets ``re`` skip
    ahead to it, several times faster, hence the ``\\d(?<!…\\d)`` idiom below. ``gate`` is a
    cheap test without which the pattern cannot match; the pass is skipped when it fails.
    """

    kind: str  # the placeholder is f"[{kind}]"
    pattern: re.Pattern[str]
    find: Callable[[re.Match[str]], Span | None] = _whole
    gate: Callable[[str], bool] | None = None


# --- checks -------------------------------------------------------------------------------


def _group(n: int) -> Callable[[re.Match[str]], Span | None]:
    def find(m: re.Match[str]) -> Span | None:
        return m.span(n)

    return find


def _contains(*needles: str) -> Callable[[str], bool]:
    def gate(text: str) -> bool:
        return any(n in text for n in needles)

    return gate


_DIGIT = re.compile(r"\d")


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_SEPARATORS = re.compile(r"[ -]")


def _card(m: re.Match[str]) -> Span | None:
    # The run may carry a trailing expiry or CVV ("4111 1111 1111 1111 123"): try shorter
    # prefixes, ending on a group boundary, before giving up.
    groups = _SEPARATORS.split(m.group(0))
    # First digit 2-6 covers every major network and skips millisecond timestamps.
    if not 2 <= int(groups[0][0]) <= 6:
        return None
    end = len(m.group(0))
    for j in range(len(groups), 0, -1):
        digits = "".join(groups[:j])
        if len(digits) < 13:
            break
        if len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits):
            return m.start(), m.start() + end
        end -= len(groups[j - 1]) + 1
    return None


def _start(first: str, blocked: str) -> str:
    r"""``first`` where it is not glued to a ``blocked`` character before it.

    The lookbehind follows the first character so that ``re`` can skip ahead to that
    character, several times faster than testing a leading lookbehind at every position.
    In JSON text (tool-call arguments) an escape such as ``\n`` counts as the whitespace it
    stands for, and an escaped character never starts a token: replacing it would leave
    its backslash escaping the placeholder.
    """
    return rf"{first}(?:(?<!{blocked}{first})(?<!\\{first})|(?<=\\[nrt]{first}))"


def _unescape(text: str, start: int) -> int:
    """Move ``start`` past a character a backslash escapes (``\\n`` in JSON text)."""
    escape = start
    while escape and text[escape - 1] == "\\":
        escape -= 1
    return start + (start - escape) % 2


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


def _iban(m: re.Match[str]) -> Span | None:
    iban = m.group(0).replace(" ", "")
    if int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 != 1:
        return None
    return m.span()


def _ssn(m: re.Match[str]) -> Span | None:
    area, group, serial = m.group(1), m.group(2), m.group(3)
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return None
    return m.span()


def _nino(m: re.Match[str]) -> Span | None:
    return None if m.group(0)[:2] in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ") else m.span()


def _nir(m: re.Match[str]) -> Span | None:
    # Corsican departments 2A/2B count as 19/18 in the key.
    number = "".join(m.group(*range(1, 7))).replace("2A", "19").replace("2B", "18")
    return m.span() if int(m.group(7)) == 97 - int(number) % 97 else None


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _dni(m: re.Match[str]) -> Span | None:
    if m.group("n7"):
        number = "XYZ".index(m.group("first")) * 10**7 + int(m.group("n7"))
    else:
        number = int(m.group("first") + m.group("n8"))
    return m.span() if _DNI_LETTERS[number % 23] == m.group("letter") else None


# Words after which a dotted or dashed number is a version, a section or a publication id.
_NOT_CONTACT_BEFORE = re.compile(
    r"(?i)(?:\b(?:v|ver|versions?|release|build|rev|clause|section|sec|chapter|article|para"
    r"|paragraph|rule|step|isbn(?:-1[03])?|issn|doi|pmid|omb)\.?(?:\s+(?:is|no\.?))?"
    r"|[=<>~^]=|~>|\(=|§|[A-Za-z]/)[\s:=#\u200e\u200f]*$"
)
_HEX = frozenset("0123456789abcdefABCDEF")
_JSON_SPACES = ("\\n", "\\r", "\\t")


def _ip(m: re.Match[str], start: int | None = None) -> Span | None:
    start = m.start() if start is None else start
    text = m.string[start : m.end()]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ip.ipv4_mapped or ip
    elif all(len(octet) == 1 for octet in text.split(".")):
        # 1.2.3.4, 2.0.0.1: a version or a section number far more often than a host, and
        # the hosts they could be (1.1.1.1, 8.8.8.8: public resolvers) identify no one.
        return None
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return None  # identifies no one; common in technical prompts
    if _NOT_CONTACT_BEFORE.search(m.string, max(0, start - 24), start):
        return None  # version 10.0.0.1, Chrome/110.0.0.0, clause 9.6.2.2, (= 7.0.4.2)
    return start, m.end()


def _ipv6(m: re.Match[str]) -> Span | None:
    # The pattern starts at the first colon (fast to find); the first group lies before it.
    text, start = m.string, m.start()
    while start > max(0, m.start() - 4) and text[start - 1] in _HEX:
        start -= 1
    start = _unescape(text, start)  # "\fe80::1" in JSON text: the "f" is the escape's
    glued = start and (text[start - 1].isalnum() or text[start - 1] in "_:.]")
    if glued and text[start - 2 : start] not in _JSON_SPACES:
        return None  # part of a longer token: std::vector, 12:30:45:99
    if not any(c.isdigit() for c in text[start : m.end()]):
        return None  # "dead::beef", "a::b": more likely code than an address
    return _ip(m, start)


_PHONE_WORDS = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|fax|whats ?app|sms|call(?: me)?|hotline"
    r"|t[ée]l[ée]phone|t[ée]l|telefon|tel[ée]fono|handy|m[óo]vil|portable|cellulare)\b\.?"
    r"(?:\s*(?:number|no\.?|nr\.?|num|#\d?))?(?:\s+(?:is|at|on))?\s*[:#]?\s*$"
)
_GROUP = re.compile(r"\((\d+)\)|(\d+)")
_YEAR = re.compile(r"(?:19|20)\d\d")


@dataclass(frozen=True)
class _Part:
    digits: str
    end: int
    paren: bool
    sep: str  # what stands between the previous group and this one


def _is_date(a: str, b: str, c: str, whole: bool) -> bool:
    if len(a) == 4 and _YEAR.fullmatch(a) and len(b) <= 2 and len(c) <= 2:
        return True
    if len(a) <= 2 and len(b) <= 2 and int(a) <= 31 and int(b) <= 31:
        # A two-digit year only when the date is all there is: "06.12.34.56.78" is a phone.
        return (len(c) == 4 and bool(_YEAR.fullmatch(c))) or (len(c) == 2 and whole)
    return False


def _plain_phone(parts: list[_Part], lengths: list[int], seps: list[str]) -> bool:
    """A number with nothing phone-like around it (no "+", parentheses or "tel:").

    Tables, ranges, prices and versions are full of such numbers, so only the shapes that
    national numbering plans print are taken: a trunk "0" (020 7946 0958, 06 12 34 56 78,
    02-3284-0396), North American 555-123-4567 / 1-800-555-1234 / 555.123.4567, and dashed
    runs of three or more groups ending in four digits.
    """
    trunk = parts[0].digits[0] == "0" and not parts[0].digits.startswith("000")
    if len(parts) == 2:  # 1263-1273, 1800-2000, 0730-0745, $500-1000
        return trunk and sum(lengths) >= 9
    if " " in seps:
        return trunk or (seps == [" ", " "] and lengths == [3, 3, 4])
    if "." in seps:
        return lengths == [3, 3, 4] or (trunk and len(parts) >= 4)
    return trunk or lengths[-1] == 4  # 326-615-375 is a part number


def _phone_like(parts: list[_Part], plus: str, context: bool) -> bool:
    lengths = [len(p.digits) for p in parts]
    if not 7 <= sum(lengths) <= 15:
        return False
    d = parts[0].digits
    if len(parts) == 1:
        # A bare run is an order number, an amount or a timestamp unless something says
        # otherwise: "+" right before it, a national trunk "0", or a word like "phone".
        if d in "01234567890":
            return False  # the digits, in order
        return plus == "+" or context or (d[0] == "0" and d[1] != "0" and 10 <= len(d) <= 11)
    seps = [p.sep for p in parts[1:]]
    for i in range(len(parts) - 2):
        a, b, c = parts[i : i + 3]
        whole = len(parts) == 3
        if b.sep == c.sep and b.sep in "-./" and _is_date(a.digits, b.digits, c.digits, whole):
            return False
    if not plus and lengths == [3, 2, 4] and seps == ["-", "-"]:
        return False  # SSN-shaped: the national-id detector has judged it already
    for i, p in enumerate(parts):
        if p.paren:
            # an area code: (555), (0)20, (07); not (1993) 176 CLR nor 1500 (2) 2014
            if len(p.digits) > 4 or _YEAR.fullmatch(p.digits):
                return False
            if i and not (plus or (i == 1 and (d == "1" or d[0] == "0"))):
                return False
        elif len(p.digits) == 1 and i > (1 if plus else 0):
            return False  # 1 2 3 4 5 6 7, 978-3-16-148410-0
    if "." in seps:
        if len(parts) == 4 and all(n <= 3 for n in lengths):
            return False  # a dotted quad the IP detector kept (e.g. a version)
        if any(n > 4 for n in lengths[1 if plus else 0 :]):
            return False  # 0.30973451, 2.0.1234567
    if plus or context or parts[0].paren or (len(parts) > 1 and parts[1].paren):
        return True
    return _plain_phone(parts, lengths, seps)


def _phone(m: re.Match[str]) -> Span | None:
    text = m.group(0)
    plus = "+ " if text.startswith("+ ") else text[:1] if text.startswith("+") else ""
    parts: list[_Part] = []
    prev = 0
    for g in _GROUP.finditer(text):
        digits = g.group(1) or g.group(2)
        parts.append(_Part(digits, g.end(), g.group(1) is not None, text[prev : g.start()]))
        prev = g.end()
    lengths = [len(p.digits) for p in parts]
    if not plus and (lengths[:4] == [4, 4, 4, 4] or lengths[:3] in ([4, 6, 5], [4, 6, 4])):
        return None  # card-shaped: the card detector found no valid card here
    if _NOT_CONTACT_BEFORE.search(m.string, max(0, m.start() - 24), m.start()):
        return None
    context = bool(_PHONE_WORDS.search(m.string, max(0, m.start() - 40), m.start()))
    # Shorter candidates end where a space does ("555-123-4567 2 times"), never inside a
    # dotted or dashed run ("5901 127.0.0.1").
    for j in range(len(parts), 0, -1):
        if (j == len(parts) or parts[j].sep == " ") and _phone_like(parts[:j], plus, context):
            return m.start(), m.start() + parts[j - 1].end
    return None


def _vendor_key(m: re.Match[str]) -> Span | None:
    if m.group(0).startswith("sk-") and not any(c.isdigit() for c in m.group(0)):
        return None  # "sk-learn-tutorial-for-beginners" is a slug; real keys hold digits
    return m.span()


_SPECIAL_TOKEN = re.compile(r"(?i)(?:pad|eos|bos|unk|sep|cls|mask)_$")
# Values that are code or templates, not secrets: calls, dotted names, variables, masks.
_CODE_VALUE = re.compile(
    r"^[/~]|[(\[{$<]|%[sd(]|^[*x•.]+$|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$"
    r"|^(?:None|null|nil|true|false|undefined|await|new|async|function|lambda|yield|typeof"
    r"|str|string|int|bool|float|number|any|ConvertTo-SecureString)$"
)
_TEMPLATE = re.compile(r"%[sd(]|\$\{|\{\{|\{\}|^\$\w+$|^\s*$")
_SECRET_WORDS = re.compile(r"(?i)pass|pwd|secret|token|key")
_WORD = re.compile(r"[A-Za-z]?[a-z]+")
_CALL = re.compile(r"[(\[]")  # token = ref(""), key = keys[0]


def _assignment(m: re.Match[str]) -> Span | None:
    if _SPECIAL_TOKEN.search(m.string, max(0, m.start() - 8), m.start()):
        return None  # ML code names special tokens *_token: pad_token = "<pad>"
    for quoted in ("dq", "sq"):
        if m.group(quoted) is not None:
            # Quoted, it was meant as the value, unless it is a template: "Bearer %s".
            return None if _TEMPLATE.search(m.group(quoted)) else m.span(quoted)
    value = m.group("bare")
    if _CODE_VALUE.search(value) or _SECRET_WORDS.search(value) or _CALL.match(m.string, m.end()):
        return None  # password = request.form[...], token=$TOKEN, password=nvr_password
    if m.group("op") == ":" and _WORD.fullmatch(value):
        return None  # "Password: must be ..." is prose; "password=secret" is not
    return m.span("bare")


def _bearer(m: re.Match[str]) -> Span | None:
    return m.span(1) if any(c.isdigit() for c in m.group(1)) else None


_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_NOT_TLDS = frozenset(["png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tiff"])


def _email(m: re.Match[str]) -> Span | None:
    # The pattern starts at "@" (fast to find); the local part lies before it.
    text, start = m.string, m.start()
    stop = max(0, start - 64)
    while start > stop:
        if text[start - 1] in _LOCAL:
            start -= 1
        elif text[start - 1] == "\\" and text[start] == "_":
            start -= 1  # Markdown escapes underscores: marlene\_zamora@example.com
        else:
            break
    if start == m.start() or (start == stop and start and text[start - 1] in _LOCAL):
        return None  # nothing before the "@", or more than an address can hold
    start = _unescape(text, start)  # "\nana@example.com" in JSON text: "n" is the escape's
    if start == m.start():
        return None
    if m.group(0).rpartition(".")[2].lower() in _NOT_TLDS:
        return None  # icon@2x.png
    return start, m.end()


# --- the detectors ------------------------------------------------------------------------

_PEM_NAME = r"[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?"
_NEWLINE = r"(?:\s|\\[rn])"  # real or JSON-escaped, as in tool-call arguments
_VENDOR_PREFIXES = ("sk-", "k_live_", "k_test_", "AKIA", "ASIA", "github_pat_", "xox", "AIza")
# ghp_ and kin by their tails: "gh" alone is in too many words to be a useful gate
_GITHUB_PREFIXES = tuple(f"h{c}_" for c in "pousr")
_KEYWORDS = ("pass", "pwd", "secret", "token", "key", "authorization")

DEFAULT_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "SECRET",
        # The body may hold single dashes (PEM headers) but not "-----": each attempt stops
        # at the next marker, so unterminated blocks cannot make this quadratic.
        re.compile(rf"-----BEGIN {_PEM_NAME}-----(?:[^-]|-(?!----))*?-----END {_PEM_NAME}-----"),
        gate=_contains("-----BEGIN "),
    ),
    Detector(
        "SECRET",  # a pasted key cut short: the header and the base64 lines that follow
        re.compile(
            rf"-----BEGIN {_PEM_NAME}-----"
            rf"(?:{_NEWLINE}+[A-Za-z0-9+/=]{{16,}})*"
            # the last line is short; take it only when it is a whole line
            rf"(?:{_NEWLINE}+[A-Za-z0-9+/]{{1,15}}={{0,2}}(?=[ \t]*(?:\r?\n|\\[rn]|$)))?"
        ),
        gate=_contains("-----BEGIN "),
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
        _vendor_key,
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
        _assignment,
        # The keyword in lower, Capitalized or UPPER case; a search for the keyword under
        # IGNORECASE costs a step per character of every prompt.
        gate=_contains(
            *_KEYWORDS, *(k.capitalize() for k in _KEYWORDS), *map(str.upper, _KEYWORDS)
        ),
    ),
    Detector(
        "SECRET",
        re.compile(_start("Bearer", _NOT_IN_KEY) + r"\s+([A-Za-z0-9._~+/-]{16,}=*)"),
        _bearer,
        gate=_contains("Bearer"),
    ),
    Detector(
        "EMAIL",
        re.compile(
            r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
            # a lower- or upper-case TLD, so that run-together text ends it: x@y.comCc
            r"\.(?:[a-z]{2,24}(?![a-z0-9_\[])|[A-Z]{2,24}(?![A-Za-z0-9_\[]))"
        ),
        _email,
        gate=_contains("@"),
    ),
    Detector("IBAN", _iban_pattern(), _iban, gate=_has_digit),
    Detector(
        "NATIONAL_ID",  # US Social Security number
        re.compile("(" + _start(r"\d", _NOT_IN_TOKEN) + r"\d\d)-(\d\d)-(\d{4})" + _E),
        _ssn,
        gate=_has_digit,
    ),
    Detector(
        "NATIONAL_ID",  # UK National Insurance number
        re.compile(
            _start("[A-CEGHJ-PR-TW-Z]", r"[\w\]]") + r"[A-CEGHJ-NPR-TW-Z]"
            r" ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D](?![\w\[])"
        ),
        _nino,
        gate=_has_digit,
    ),
    Detector(
        "NATIONAL_ID",  # French NIR ("numéro de sécurité sociale"), key = 97 - n mod 97
        re.compile(
            rf"({_start('[12]', _NOT_IN_TOKEN)}) ?([0-9]{{2}}) ?([0-9]{{2}}) ?([0-9]{{2}}|2[AB])"
            rf" ?([0-9]{{3}}) ?([0-9]{{3}}) ?([0-9]{{2}}){_E}"
        ),
        _nir,
        gate=_has_digit,
    ),
    Detector(
        "NATIONAL_ID",  # Spanish DNI (8 digits) and NIE (X/Y/Z + 7 digits), check letter
        re.compile(
            rf"(?P<first>{_start('[XYZ0-9]', _NOT_IN_TOKEN)})"
            r"(?:(?<=[XYZ])-?(?P<n7>[0-9]{7})|(?<=[0-9])(?P<n8>[0-9]{7}))"
            r"[- ]?(?P<letter>[A-Z])(?![\w\[])"
        ),
        _dni,
        gate=_has_digit,
    ),
    Detector(
        "CARD",
        # Plain, or in the printed groups (4-4-4-4, 4-6-5, 4-6-4) possibly followed by more:
        # the lookahead turns most other digit runs away before any Python runs.
        re.compile(
            _start(r"\d", _NOT_IN_TOKEN) + rf"(?=\d{{12}}|\d{{3}}[ -]\d{{4,6}}[ -]\d{{4,5}}(?!\d))"
            rf"\d{{0,18}}(?:[ -]\d{{1,19}}){{0,7}}{_E}"
        ),
        _card,
        gate=_has_digit,
    ),
    Detector(
        "IP",  # IPv6, from its first colon
        re.compile(
            r":(?<!::)(?:[0-9A-Fa-f]{0,4}:){1,6}"
            r"(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:\[]|\.[0-9])"
        ),
        _ipv6,
        gate=_contains(":"),
    ),
    Detector(
        "IP",
        re.compile(
            _start("[0-9]", r"[\w.\]-]")
            + r"[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![\w\[]|\.[0-9])"
        ),
        _ip,
        gate=_has_digit,
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
        _phone,
        gate=_has_digit,
    ),
)

_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")


def _apply(det: Detector, text: str, counts: dict[str, int]) -> str:
    out: list[str] = []
    last = pos = 0
    while (m := det.pattern.search(text, pos)) is not None:
        span = det.find(m)
        if span is not None:
            # A span may start before its match (e-mail, IPv6) but never inside the last one.
            start, end = max(span[0], last), span[1]
            if end > start and not _PLACEHOLDER.fullmatch(text, start, end):
                out += (text[last:start], f"[{det.kind}]")
                last = pos = end
                counts[det.kind] = counts.get(det.kind, 0) + 1
                continue
        pos = m.start() + 1
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


class RegexRedactor:
    """The default redactor: each detector's finds become ``[KIND]``, in the given order.

    Pass your own list to change what is looked for, e.g. keep IP addresses with
    ``RegexRedactor(d for d in DEFAULT_DETECTORS if d.kind != "IP")``.
    """

    def __init__(self, detectors: Iterable[Detector] = DEFAULT_DETECTORS) -> None:
        self.detectors = tuple(detectors)

    def __call__(self, text: str) -> RedactionResult:
        counts: dict[str, int] = {}
        # A gate's answer holds until a detector changes the text; most texts have no digit,
        # and one search tells the eight detectors that need one.
        answers: dict[Callable[[str], bool], bool] = {}
        for det in self.detectors:
            gate = det.gate
            if gate is not None:
                ok = answers.get(gate)
                if ok is None:
                    ok = answers[gate] = gate(text)
                if not ok:
                    continue
            out = _apply(det, text, counts)
            if out is not text:
                text = out
                answers.clear()
        return RedactionResult(text, counts)


_default = RegexRedactor()


def redact(text: str) -> RedactionResult:
    """Redact ``text`` with the default detectors."""
    return _default(text)


def load_redactor(spec: str | None) -> Redactor:
    """``None``/``"default"``: the regex redactor; ``"module:attr"``: yours.

    ``attr`` (dots allowed) names a callable ``(text) -> RedactionResult`` or a class whose
    no-argument instances are one. It is tried once on ``""`` so that a bad plug-in fails at
    startup rather than on the first capture.
    """
    if spec is None or spec.strip() in ("", "default"):
        return _default
    module, sep, attr = spec.strip().partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"redactor {spec!r}: expected 'default' or 'module:attr'")
    try:
        found: Any = importlib.import_module(module)
        for name in attr.split("."):
            found = getattr(found, name)
        if isinstance(found, type):
            found = found()
    except Exception as exc:  # an import runs arbitrary code; any failure is a config error
        raise ConfigError(f"redactor {spec!r} cannot be loaded: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"redactor {spec!r} is not callable")
    try:
        probe = found("")
    except Exception as exc:
        raise ConfigError(f"redactor {spec!r} failed on an empty text: {exc}") from exc
    if not isinstance(probe, RedactionResult):
        raise ConfigError(
            f"redactor {spec!r} returned {type(probe).__name__}, not a RedactionResult"
        )
    redactor: Redactor = found
    return redactor


def redact_messages(
    messages: list[dict[str, Any]], redactor: Callable[[str], RedactionResult] | None = None
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Redacted copies of OpenAI chat messages and the summed counts; the input is untouched.

    Covers string content, text parts of list content, tool-call and legacy function-call
    arguments (JSON text; placeholders keep it valid JSON). Other fields are shared with the
    input, not copied: only what is redacted is rebuilt (this runs on every capture).
    """
    red = redactor or _default
    counts: dict[str, int] = {}

    def text(value: str) -> str:
        result = red(value)
        for kind, n in result.counts.items():
            counts[kind] = counts.get(kind, 0) + n
        return result.text

    def function(fn: Any) -> Any:
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            return {**fn, "arguments": text(fn["arguments"])}
        return fn

    def message(msg: Any) -> Any:
        if not isinstance(msg, dict):
            return msg
        new = dict(msg)
        content = msg.get("content")
        if isinstance(content, str):
            new["content"] = text(content)
        elif isinstance(content, list):
            new["content"] = [
                {**part, "text": text(part["text"])}
                if isinstance(part, dict) and isinstance(part.get("text"), str)
                else part
                for part in content
            ]
        if isinstance(msg.get("tool_calls"), list):
            new["tool_calls"] = [
                {**call, "function": function(call["function"])}
                if isinstance(call, dict) and "function" in call
                else call
                for call in msg["tool_calls"]
            ]
        if "function_call" in msg:
            new["function_call"] = function(msg["function_call"])
        return new

    return [message(m) for m in messages], counts
