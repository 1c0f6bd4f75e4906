"""PII redaction quality: inject known PII into real prompts, measure recall/precision per type.

Real prompts come from ``../shared/data`` (WildGuardTrain sample, OAIMod, XSTest, Aegis, the prompt
pool) and real responses from the response pool. For each of N prompts, one PII value of a
random type (random, well-formed values in several common formats) is placed in a short carrier
phrase at the start, end or a sentence boundary of the prompt; its span is the ground truth.

* recall (typed): injected value fully covered by a placeholder of its own type;
* recall (any): covered by any placeholder (the value does not leak);
* precision: spans of a type that overlap an injected value of that type / all spans of that type
  on the injected corpus (a real email already in a prompt counts against precision);
* ~25% of values use harder spellings (``JOHN@X.COM``, ``john at x dot com``, ``10[.]0[.]0[.]1``,
  dashed/dotted phones and cards, lower-case IBANs): the misses show where patterns stop;
* false redactions on clean texts: share of untouched real prompts/responses with any redaction.

Run: ``nice -n 10 python benchmarks/pii_redaction.py`` (writes benchmarks/results/pii_redaction.{json,md}).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import string
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from guardmatch.ingest.pii import PiiConfig, PiiRedactor, ner_available  # noqa: E402

FIRST = ["James", "Maria", "Wei", "Aisha", "Carlos", "Olga", "Priya", "Kwame", "Sofia", "Hiroshi", "Emily",
         "Mohammed", "Lucas", "Fatima", "Daniel", "Ingrid", "Ravi", "Chloe", "Mateo", "Hannah", "Noah", "Zainab"]
LAST = ["Smith", "Garcia", "Chen", "Khan", "Müller", "Ivanova", "Patel", "Mensah", "Rossi", "Tanaka", "Johnson",
        "Haddad", "Silva", "Okafor", "Kowalski", "Larsen", "Nguyen", "Dubois", "Fernández", "Brown", "Cohen", "Osei"]
DOMAINS = ["gmail.com", "yahoo.co.uk", "outlook.com", "proton.me", "acme-corp.io", "uni-heidelberg.de", "mail.ru",
           "company.com.au", "hotmail.fr"]


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, d in enumerate(reversed(digits)):
        v = int(d)
        if i % 2 == 0:
            v = v * 2 - 9 if v * 2 > 9 else v * 2
        total += v
    return digits + str((10 - total % 10) % 10)


def gen_email(rng):
    f, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower().replace("ü", "u").replace("á", "a")
    user = rng.choice([f"{f}.{last}", f"{f[0]}{last}{rng.randint(1, 99)}", f"{f}_{last}", f"{f}+news",
                       f"{last}.{f}{rng.randint(1970, 2005)}"])
    return f"{user}@{rng.choice(DOMAINS)}"


def gen_phone(rng):
    import phonenumbers as pn
    from phonenumbers import PhoneNumberFormat as F

    region = rng.choice(["US", "US", "GB", "DE", "FR", "IN", "CA", "AU"])
    for _ in range(100):
        ex = pn.example_number_for_type(region, rng.choice([pn.PhoneNumberType.MOBILE, pn.PhoneNumberType.FIXED_LINE]))
        nat = str(ex.national_number)
        nat = nat[:-4] + "".join(rng.choice(string.digits) for _ in range(4))
        num = pn.parse("+" + str(ex.country_code) + nat)
        if pn.is_valid_number(num):
            break
    style = rng.choice(["intl", "national", "e164", "dots"])
    if style == "intl":
        return pn.format_number(num, F.INTERNATIONAL)
    if style == "e164":
        return pn.format_number(num, F.E164)
    if style == "dots" and region in ("US", "CA"):
        n = str(num.national_number)
        return f"{n[:3]}.{n[3:6]}.{n[6:]}"
    return pn.format_number(num, F.NATIONAL)


def gen_card(rng):
    kind = rng.choice(["visa", "mc", "amex", "discover"])
    if kind == "amex":
        n = _luhn_complete(rng.choice(["34", "37"]), 15, rng)
        return rng.choice([n, f"{n[:4]} {n[4:10]} {n[10:]}", f"{n[:4]}-{n[4:10]}-{n[10:]}"])
    prefix = {"visa": "4", "mc": str(rng.randint(51, 55)), "discover": "6011"}[kind]
    n = _luhn_complete(prefix, 16, rng)
    groups = [n[i:i + 4] for i in range(0, 16, 4)]
    return rng.choice([n, " ".join(groups), "-".join(groups)])


_IBAN_SPECS = {"DE": 18, "GB": 18, "FR": 23, "ES": 20, "NL": 14, "IT": 23, "CH": 17, "BE": 12}


def gen_iban(rng):
    cc = rng.choice(list(_IBAN_SPECS))
    n = _IBAN_SPECS[cc]
    def letters(k):
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(k))

    def digits(k):
        return "".join(rng.choice(string.digits) for _ in range(k))

    if cc == "GB":
        bban = letters(4) + digits(14)
    elif cc == "NL":
        bban = letters(4) + digits(10)
    elif cc in ("FR", "IT"):
        bban = (letters(1) if cc == "IT" else "") + digits(n - (1 if cc == "IT" else 0))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(n))
    rearr = bban + cc + "00"
    num = int("".join(str(int(c, 36)) for c in rearr))
    iban = f"{cc}{98 - num % 97:02d}{bban}"
    return rng.choice([iban, " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))])


def gen_ip(rng):
    if rng.random() < 0.75:
        return ".".join(str(x) for x in [rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254)])
    groups = [f"{rng.randint(0, 65535):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return ":".join(groups[:3]) + "::" + ":".join(groups[6:])


def _tok(rng, n, alphabet=string.ascii_letters + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


def gen_url(rng):
    host = rng.choice(["api.example.com", "db.internal.acme.io", "files.corp.net", "my-bucket.s3.amazonaws.com"])
    kind = rng.choice(["userinfo", "token", "apikey", "s3", "db"])
    if kind == "userinfo":
        return f"https://{rng.choice(FIRST).lower()}:{_tok(rng, 10)}@{host}/login"
    if kind == "token":
        return f"https://{host}/v1/callback?state=xyz&access_token={_tok(rng, 32)}"
    if kind == "apikey":
        return f"http://{host}/search?q=weather&api_key={_tok(rng, 24)}"
    if kind == "s3":
        credential = _tok(rng, 16, string.ascii_uppercase + string.digits)
        return (f"https://{host}/report.pdf?X-Amz-Credential=AKIA{credential}"
                f"&X-Amz-Signature={_tok(rng, 64, '0123456789abcdef')}")
    return f"postgres://admin:{_tok(rng, 12)}@{host}:5432/prod"


def gen_secret(rng):
    kind = rng.choice(["aws", "github", "openai", "slack", "google", "stripe", "hf", "jwt", "password", "apikey_assign"])
    up = string.ascii_uppercase + string.digits
    if kind == "aws":
        return "AKIA" + _tok(rng, 16, up)
    if kind == "github":
        return "ghp_" + _tok(rng, 36)
    if kind == "openai":
        return "sk-proj-" + _tok(rng, 40, string.ascii_letters + string.digits + "_-")
    if kind == "slack":
        return f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-{_tok(rng, 24)}"
    if kind == "google":
        return "AIza" + _tok(rng, 35, string.ascii_letters + string.digits + "_-")
    if kind == "stripe":
        return "sk_live_" + _tok(rng, 24)
    if kind == "hf":
        return "hf_" + _tok(rng, 34)
    if kind == "jwt":
        return ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ" + _tok(rng, 30) + "."
                + _tok(rng, 43, string.ascii_letters + string.digits + "_-"))
    if kind == "password":
        return "password: " + _tok(rng, 12, string.ascii_letters + string.digits + "!#$%")
    return "api_key=" + _tok(rng, 32)


def gen_person(rng):
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _hard(gen, variants):
    """~25% of values in harder real-world spellings (obfuscated, unusual separators)."""
    def wrapped(rng):
        value = gen(rng)
        if rng.random() < 0.25:
            return rng.choice(variants)(value, rng)
        return value
    return wrapped


def _digits(v):
    return "".join(c for c in v if c.isdigit())


gen_email = _hard(gen_email, [lambda v, r: v.upper(), lambda v, r: f"<{v}>",
                              lambda v, r: v.replace("@", " at ").replace(".", " dot ")])
gen_phone = _hard(gen_phone, [lambda v, r: "+" + _digits(v) if v.startswith("+") else _digits(v),
                              lambda v, r: v.replace(" ", "-"), lambda v, r: v.replace(" ", ".")])
gen_card = _hard(gen_card, [lambda v, r: ".".join(_digits(v)[i:i + 4] for i in range(0, len(_digits(v)), 4)),
                            lambda v, r: "  ".join(_digits(v)[i:i + 4] for i in range(0, len(_digits(v)), 4))])
gen_iban = _hard(gen_iban, [lambda v, r: v.lower(), lambda v, r: v.replace(" ", "-")])
gen_ip = _hard(gen_ip, [lambda v, r: v.upper(), lambda v, r: v.replace(".", "[.]")])

GENERATORS = {"EMAIL": gen_email, "PHONE": gen_phone, "CREDIT_CARD": gen_card, "IBAN": gen_iban,
              "IP_ADDRESS": gen_ip, "URL": gen_url, "SECRET": gen_secret, "PERSON": gen_person}
CARRIERS = {
    "EMAIL": ["My email is {}.", "Reply to {} please.", "({})", "contact: {}"],
    "PHONE": ["Call me at {}.", "My number is {}", "Tel: {}", "text {} if needed."],
    "CREDIT_CARD": ["My card number is {}.", "Card: {}", "I paid with {} yesterday."],
    "IBAN": ["Send it to IBAN {}.", "Account: {}", "transfer to {} today"],
    "IP_ADDRESS": ["My server IP is {}.", "Connecting from {}", "host {} keeps timing out"],
    "URL": ["Use this link: {}", "The endpoint is {} btw.", "See {}"],
    "SECRET": ["Here is my key {} for testing.", "config: {}", "I use {} in my script."],
    "PERSON": ["My neighbour {} keeps asking.", "I am writing on behalf of {}.", "Ask {} about it."],
}


def load_texts(data: Path) -> tuple[list[str], list[str]]:
    prompts, responses = [], []
    for line in (data / "wildguardmix/wildguardtrain_sample.jsonl").open():
        prompts.append(json.loads(line)["prompt"])
    for line in gzip.open(data / "oaimod/samples-1680.jsonl.gz", "rt"):
        prompts.append(json.loads(line)["prompt"])
    prompts += pd.read_csv(data / "xstest/xstest_prompts.csv")["prompt"].tolist()
    for name in ("aegis1/aegis1_test_prompt.jsonl", "prompt_pool/guardreasonertrain_other_prompts.jsonl"):
        prompts += [json.loads(line)["prompt"] for line in (data / name).open()]
    for name in ("response_pool/beavertails_test.jsonl", "response_pool/saferlhf_test.jsonl"):
        responses += [json.loads(line)["response"] for line in (data / name).open()]
    return [p for p in prompts if isinstance(p, str) and p.strip()], [r for r in responses if isinstance(r, str) and r.strip()]


def inject(prompt: str, kind: str, rng: random.Random) -> tuple[str, tuple[int, int]]:
    value = GENERATORS[kind](rng)
    phrase = rng.choice(CARRIERS[kind])
    if value.startswith("<") and value.endswith(">"):  # the brackets are context, not the address
        value, phrase = value[1:-1], phrase.replace("{}", "<{}>")
    for sep in (": ", "="):  # `password: X`, `api_key=X`: the secret is the value, the name stays
        if kind == "SECRET" and value.startswith(("password", "api_key")) and sep in value:
            name, value = value.split(sep, 1)
            phrase = phrase.replace("{}", name + sep + "{}")
            break
    where = rng.choice(["start", "end", "middle"])
    pre, post = phrase.split("{}")
    if where == "start":
        head, tail = "", " " + prompt
    elif where == "end":
        head, tail = prompt.rstrip() + " ", ""
    else:
        cut = prompt.find(". ", len(prompt) // 3)
        cut = cut + 2 if cut != -1 else len(prompt)
        head, tail = prompt[:cut] + ("" if prompt[:cut].endswith(" ") else " "), " " + prompt[cut:]
    text = head + pre + value + post + tail
    start = len(head) + len(pre)
    return text, (start, start + len(value))


def evaluate(redactor: PiiRedactor, texts: list[str], kinds: list[str], truths: list[tuple[int, int]]) -> dict:
    spans_all = []
    for t in texts:
        spans_all.append(redactor.find_all(t))
    stats: dict[str, Counter] = defaultdict(Counter)
    for spans, kind, (a, b) in zip(spans_all, kinds, truths):
        stats[kind]["injected"] += 1
        if any(s.type == kind and s.start <= a and s.end >= b for s in spans):
            stats[kind]["typed_hit"] += 1
        if _covered(spans, a, b):
            stats[kind]["any_hit"] += 1
        for s in spans:
            stats[s.type]["predicted"] += 1
            if s.type == kind and s.start < b and s.end > a:
                stats[s.type]["true_pos"] += 1
    out = {}
    for kind, c in stats.items():
        if not c["injected"] and not c["predicted"]:
            continue
        out[kind] = {
            "injected": c["injected"],
            "recall": c["typed_hit"] / c["injected"] if c["injected"] else None,
            "recall_any_placeholder": c["any_hit"] / c["injected"] if c["injected"] else None,
            "predicted_spans": c["predicted"],
            "precision": c["true_pos"] / c["predicted"] if c["predicted"] else None,
        }
    return out


def _covered(spans, a: int, b: int) -> bool:
    pos = a
    for s in sorted(spans, key=lambda s: s.start):
        if s.start <= pos < s.end:
            pos = s.end
        if pos >= b:
            return True
    return pos >= b


def clean_rate(redactor: PiiRedactor, texts: list[str]) -> dict:
    flagged, per_type, examples = 0, Counter(), []
    t0 = time.perf_counter()
    for t in texts:
        spans = redactor.find_all(t)
        if spans:
            flagged += 1
            per_type.update(s.type for s in spans)
            if len(examples) < 25:
                examples.extend({"type": s.type, "span": t[s.start:s.end][:60]} for s in spans[:2])
    dt = time.perf_counter() - t0
    return {"texts": len(texts), "flagged": flagged, "rate": flagged / max(len(texts), 1), "spans_by_type": dict(per_type),
            "examples": examples[:25], "texts_per_s": len(texts) / dt, "chars_per_s": sum(map(len, texts)) / dt}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=4000, help="injected prompts (patterns)")
    ap.add_argument("--n-names", type=int, default=600, help="injected and clean prompts for the NER run")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    prompts, responses = load_texts(args.data)
    print(f"{len(prompts)} real prompts, {len(responses)} real responses")

    pattern_kinds = ["EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP_ADDRESS", "URL", "SECRET"]
    base = rng.sample(prompts, min(args.n, len(prompts)))
    kinds = [pattern_kinds[i % len(pattern_kinds)] for i in range(len(base))]
    injected = [inject(p, k, rng) for p, k in zip(base, kinds)]
    patterns = PiiRedactor(PiiConfig())
    t0 = time.perf_counter()
    res_patterns = evaluate(patterns, [t for t, _ in injected], kinds, [s for _, s in injected])
    print(f"patterns: {len(base)} injected prompts in {time.perf_counter() - t0:.1f}s")
    clean_prompts = clean_rate(patterns, prompts)
    clean_responses = clean_rate(patterns, responses)

    result = {"seed": args.seed, "n_injected": len(base), "patterns": res_patterns,
              "clean_prompts": clean_prompts, "clean_responses": clean_responses,
              "backend": "presidio-analyzer 2.2.366 recognizers (email, phone, credit card, IBAN, IP)"
                         " + guardmatch URL/secret patterns"}
    if ner_available():
        ner = PiiRedactor(PiiConfig(names=True))
        base_n = rng.sample(prompts, args.n_names)
        inj_n = [inject(p, "PERSON", rng) for p in base_n]
        t0 = time.perf_counter()
        result["names"] = evaluate(ner, [t for t, _ in inj_n], ["PERSON"] * len(inj_n), [s for _, s in inj_n])
        result["names_seconds"] = time.perf_counter() - t0
        result["names_clean_prompts"] = clean_rate(ner, rng.sample(prompts, args.n_names))
        print(f"names: {len(inj_n)} injected prompts in {result['names_seconds']:.1f}s")
    else:
        result["names"] = None

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pii_redaction.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    md = ["# PII redaction benchmark", "",
          f"{len(base)} real prompts from ../shared/data with one injected PII value each (seed {args.seed}); "
          "`python benchmarks/pii_redaction.py`.", "",
          "| type | injected | recall (own placeholder) | recall (any placeholder) | predicted spans | precision |",
          "|---|---:|---:|---:|---:|---:|"]
    rows = dict(res_patterns)
    if result["names"]:
        rows["PERSON (spaCy NER)"] = result["names"]["PERSON"]
    for kind, r in rows.items():
        if not r["injected"]:
            continue
        md.append(f"| {kind} | {r['injected']} | {r['recall']:.3f} | {r['recall_any_placeholder']:.3f} | "
                  f"{r['predicted_spans']} | {r['precision']:.3f} |")
    md += ["", "False redactions on clean real texts (any placeholder in a text that had none injected):", "",
           "| texts | n | flagged | rate | spans by type |", "|---|---:|---:|---:|---|"]
    for name, c in [("prompts, patterns", clean_prompts), ("responses, patterns", clean_responses)] + (
            [("prompts, patterns + names", result["names_clean_prompts"])] if result["names"] else []):
        md.append(f"| {name} | {c['texts']} | {c['flagged']} | {c['rate']:.2%} | {c['spans_by_type']} |")
    md += ["", f"Speed (patterns, 1 core): {clean_prompts['texts_per_s']:,.0f} prompts/s, "
           f"{clean_prompts['chars_per_s'] / 1e6:.2f} M chars/s"]
    if result["names"]:
        md.append(f"Speed with names (spaCy NER): {result['names_clean_prompts']['texts_per_s']:,.0f} prompts/s")
    md += ["", "Examples of spans flagged in clean prompts (what the false redactions look like):", ""]
    md += [f"- {e['type']}: `{e['span']}`" for e in clean_prompts["examples"][:15]]
    (args.out / "pii_redaction.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
