"""Secret material as a type that cannot be printed, and the CRC32C Secret Manager checks.

Key files and generated values travel from the place that makes them (IAM, the generator) to the
one place they may rest (a Secret Manager version) and from there to a test. Wrapping them in
:class:`Material` makes every accidental path to a log line, a report, an exception message or a
test failure print ``<material: N bytes>`` instead: ``repr``, ``str`` and ``format`` are masked,
there is no equality (so ``assert a == b`` never prints both sides) and no pickling. Code that
needs the bytes says so with :meth:`Material.reveal`.

CRC32C (Castagnoli) is the checksum ``SecretPayload.dataCrc32c`` carries: sent on
AddSecretVersion (Secret Manager rejects a payload that does not match) and returned on
AccessSecretVersion. ``google-crc32c`` is not a dependency; a table-driven version is fast enough
for payloads of at most 64 KiB.
"""

from __future__ import annotations

from typing import Any, NoReturn

_CASTAGNOLI_REFLECTED = 0x82F63B78


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CASTAGNOLI_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _table()


def crc32c(data: bytes) -> int:
    """CRC32C of ``data`` as an unsigned 32-bit integer (``crc32c(b"123456789") == 0xE3069283``)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


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
