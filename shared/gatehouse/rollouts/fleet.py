"""The fleet configuration: everything that reaches bundles but does not come from a service.

A change to any of it (the profiles file, a gatehouse version that renders differently, a setting
that is written into bundles) changes every proxy on the affected profiles at once, so it goes out
as a rollout. Its identifier is a hash of exactly those inputs, so two processes with the same
file and settings agree on it without talking to each other.

Pure module.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gatehouse.bundle import RENDER_VERSION
from gatehouse.errors import InputError
from gatehouse.profiles import ProfileSet, parse_profiles

ID_LENGTH = 16  # hex characters: 64 bits tell configurations apart well enough for a person to quote


@dataclass(frozen=True)
class FleetConfig:
    """What a bundle is rendered from apart from the service itself."""

    profiles_text: str
    render_version: str = RENDER_VERSION
    # bundle-relevant settings only (today: the owner id written into every bundle's markers)
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        canonical = json.dumps(
            {
                "profiles": self.profiles_text,
                "render_version": self.render_version,
                "settings": dict(sorted(self.settings.items())),
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ID_LENGTH]

    @property
    def owner_id(self) -> str:
        return self.settings.get("owner_id", "gatehouse")

    def profiles(self) -> ProfileSet:
        return parse_profiles(self.profiles_text, source=f"profiles of configuration {self.id}")

    def reproducible(self) -> bool:
        """Whether this code renders bundles exactly as this configuration did: a configuration of
        another render version can only be returned to through the revisions Apigee keeps."""
        return self.render_version == RENDER_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "profiles_text": self.profiles_text,
            "render_version": self.render_version,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetConfig:
        text, version, settings = data.get("profiles_text"), data.get("render_version"), data.get("settings")
        if not isinstance(text, str) or not isinstance(version, str) or not isinstance(settings, Mapping):
            raise InputError("stored fleet configuration is malformed")
        return cls(text, version, {str(k): str(v) for k, v in settings.items()})


def bundle_settings(owner_id: str) -> dict[str, str]:
    """The settings that are written into bundles (see ``gatehouse.bundle.render``)."""
    return {"owner_id": owner_id}


def difference(old: FleetConfig, new: FleetConfig, *, context: int = 2, limit: int = 80) -> str:
    """A short unified diff of two configurations, for a person reading a ticket or status."""
    import difflib

    lines: list[str] = []
    if old.render_version != new.render_version:
        lines.append(f"render version: {old.render_version} -> {new.render_version}")
    for key in sorted(set(old.settings) | set(new.settings)):
        if old.settings.get(key) != new.settings.get(key):
            lines.append(f"setting {key}: {old.settings.get(key)!r} -> {new.settings.get(key)!r}")
    diff = list(
        difflib.unified_diff(
            old.profiles_text.splitlines(),
            new.profiles_text.splitlines(),
            f"profiles ({old.id})",
            f"profiles ({new.id})",
            n=context,
            lineterm="",
        )
    )
    lines.extend(diff)
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more lines)"]
    return "\n".join(lines) if lines else "(no difference)"
