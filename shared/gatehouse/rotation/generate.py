"""Generated secret values: a spec, a generator on ``secrets``, and the conformance check the test
step runs on the value read back from Secret Manager.

``token`` draws every character uniformly from the alphabet. ``password`` additionally needs at
least one character of each class the alphabet has (lower, upper, digit, symbol); it redraws the
whole value until that holds (rejection sampling keeps the result uniform over conforming values,
and with at least 16 characters a redraw is rare). A spec must give at least 128 bits of entropy.
"""

from __future__ import annotations

import math
import secrets
import string
from dataclasses import dataclass
from enum import StrEnum

MIN_ENTROPY_BITS = 128
MIN_LENGTH = 16
MAX_LENGTH = 4096


class Alphabet(StrEnum):
    ALNUM = "alnum"
    HEX = "hex"
    BASE64URL = "base64url"
    ASCII_PRINTABLE = "ascii-printable"


class Format(StrEnum):
    TOKEN = "token"  # noqa: S105 (a format name)
    PASSWORD = "password"  # noqa: S105


# ascii-printable excludes the space: values are often pasted, trimmed or put in headers
_CHARACTERS = {
    Alphabet.ALNUM: string.ascii_letters + string.digits,
    Alphabet.HEX: "0123456789abcdef",
    Alphabet.BASE64URL: string.ascii_letters + string.digits + "-_",
    Alphabet.ASCII_PRINTABLE: "".join(chr(c) for c in range(0x21, 0x7F)),
}
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)


@dataclass(frozen=True)
class GeneratorSpec:
    length: int = 32
    alphabet: Alphabet = Alphabet.ALNUM
    format: Format = Format.TOKEN

    @property
    def characters(self) -> str:
        return _CHARACTERS[self.alphabet]

    @property
    def entropy_bits(self) -> float:
        return self.length * math.log2(len(self.characters))

    def classes(self) -> list[frozenset[str]]:
        """The character classes present in the alphabet (symbols form one class)."""
        chars = set(self.characters)
        found = [frozenset(chars & set(c)) for c in _CLASSES]
        symbols = frozenset(chars - set(string.ascii_letters + string.digits))
        return [c for c in [*found, symbols] if c]

    def problems(self) -> list[str]:
        """Why this spec is unusable; empty when it is fine."""
        out = []
        if not MIN_LENGTH <= self.length <= MAX_LENGTH:
            out.append(f"length {self.length} is outside {MIN_LENGTH}..{MAX_LENGTH}")
        elif self.entropy_bits < MIN_ENTROPY_BITS:
            needed = math.ceil(MIN_ENTROPY_BITS / math.log2(len(self.characters)))
            out.append(
                f"length {self.length} with alphabet {self.alphabet} gives {self.entropy_bits:.0f} bits of "
                f"entropy; at least {MIN_ENTROPY_BITS} are required (length >= {needed})"
            )
        return out


def generate(spec: GeneratorSpec) -> str:
    """A fresh value for ``spec`` from the operating system's CSPRNG."""
    chars = spec.characters
    while True:
        value = "".join(secrets.choice(chars) for _ in range(spec.length))
        if not nonconformance(value, spec):
            return value


def nonconformance(value: str, spec: GeneratorSpec) -> str | None:
    """Why ``value`` does not conform to ``spec`` (never quoting the value), or None."""
    if len(value) != spec.length:
        return f"length is {len(value)}, the spec says {spec.length}"
    allowed = set(spec.characters)
    outside = sum(1 for c in value if c not in allowed)
    if outside:
        return f"{outside} character(s) outside the {spec.alphabet} alphabet"
    if spec.format is Format.PASSWORD:
        missing = sum(1 for cls in spec.classes() if not cls & set(value))
        if missing:
            return f"password format needs every character class; {missing} class(es) missing"
    return None
