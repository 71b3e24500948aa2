"""The checks that decide a detector's candidates: checksums, shapes, the words around them.

Each ``find_*`` takes a regex match from its detector's pattern and returns the span to
replace, or ``None`` to leave the candidate alone (see
:class:`~openclone.store.redact.base.Detector`).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from openclone.store.redact.base import Span

__all__ = [
    "find_assignment",
    "find_bearer",
    "find_card",
    "find_dni",
    "find_email",
    "find_iban",
    "find_ip",
    "find_ipv6",
    "find_nino",
    "find_nir",
    "find_phone",
    "find_ssn",
    "find_vendor_key",
]


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_SEPARATORS = re.compile(r"[ -]")


def find_card(m: re.Match[str]) -> Span | None:
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


def _unescape(text: str, start: int) -> int:
    """Move ``start`` past a character a backslash escapes (``\\n`` in JSON text)."""
    escape = start
    while escape and text[escape - 1] == "\\":
        escape -= 1
    return start + (start - escape) % 2


def find_iban(m: re.Match[str]) -> Span | None:
    iban = m.group(0).replace(" ", "")
    if int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 != 1:
        return None
    return m.span()


def find_ssn(m: re.Match[str]) -> Span | None:
    area, group, serial = m.group(1), m.group(2), m.group(3)
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return None
    return m.span()


def find_nino(m: re.Match[str]) -> Span | None:
    return None if m.group(0)[:2] in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ") else m.span()


def find_nir(m: re.Match[str]) -> Span | None:
    # Corsican departments 2A/2B count as 19/18 in the key.
    number = "".join(m.group(*range(1, 7))).replace("2A", "19").replace("2B", "18")
    return m.span() if int(m.group(7)) == 97 - int(number) % 97 else None


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def find_dni(m: re.Match[str]) -> Span | None:
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


def find_ip(m: re.Match[str], start: int | None = None) -> Span | None:
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


def find_ipv6(m: re.Match[str]) -> Span | None:
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
    return find_ip(m, start)


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


def find_phone(m: re.Match[str]) -> Span | None:
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


def find_vendor_key(m: re.Match[str]) -> Span | None:
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


def find_assignment(m: re.Match[str]) -> Span | None:
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


def find_bearer(m: re.Match[str]) -> Span | None:
    return m.span(1) if any(c.isdigit() for c in m.group(1)) else None


_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_NOT_TLDS = frozenset(["png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tiff"])


def find_email(m: re.Match[str]) -> Span | None:
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
