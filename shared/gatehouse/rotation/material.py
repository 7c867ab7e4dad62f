"""Secret material as a type that cannot be printed, and the CRC32C Secret Manager checks.

Key files and generated values travel from the place that makes them (IAM, the generator) to the
one place they may rest (a Secret Manager version) and from there to a test. Wrapping them in
:class:`Material` makes every accidental path to a log line, a report, an exception message or a
test failure print ``<material: N bytes>`` instead: ``repr``, ``str`` and ``format`` are masked,
there is no equality (so ``assert a == b`` never prints both sides) and no pickling. Code that
needs the bytes says so with :meth:`Material.reveal`.

CRC32C (Castagnoli) is the checksum ``SecretPayload.dataCrc32c`` carries: sent on
AddSecretVersion (Secret Manager rejects a payload that does not match) and returned on
AccessSecretVersion; computed with ``google-crc32c``, the library Google's own samples use.
"""

from __future__ import annotations

from typing import Any, NoReturn

import google_crc32c


def crc32c(data: bytes) -> int:
    """CRC32C of ``data`` as an unsigned 32-bit integer (``crc32c(b"123456789") == 0xE3069283``)."""
    return int(google_crc32c.value(data))


class Material:
    """Secret bytes whose every printable form is masked."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError("Material wraps bytes")
        self._data = data

    def reveal(self) -> bytes:
        """The secret bytes: hand them only to Secret Manager, a parser or a signer."""
        return self._data

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"<material: {len(self._data)} bytes>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    # Identity equality only: a comparison failure in a test must not print two secrets.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __reduce__(self) -> NoReturn:
        raise TypeError("Material cannot be pickled")

    def __copy__(self) -> Material:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Material:
        return self
