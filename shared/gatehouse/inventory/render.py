"""The inventory as JSON and as one self-contained HTML page.

The page is rendered by Jinja2 with autoescape on, and every value additionally passes through
:func:`visible` (``finalize``): control and bidirectional-override characters become a visible
``<U+202E>``, so a service name cannot reorder what a reader sees. The stylesheet and the script are
inlined and allowed by hash in a Content-Security-Policy that forbids everything else (no request
to any origin, no other script), which also makes the page work offline and as a mail attachment.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import quote

from gatehouse.inventory.model import Inventory, ServiceView, TicketView

# C0/C1 controls but tab/newline, and the bidi embeddings, overrides and isolates, marks
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPARK_WIDTH, _SPARK_HEIGHT = 120, 30


def visible(value: object) -> object:
    """Text with invisible formatting characters shown as ``<U+XXXX>`` (other values unchanged)."""
    if isinstance(value, str) and not hasattr(value, "__html__"):
        return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", value)
    return value


def to_json(inventory: Inventory) -> str:
    return json.dumps(inventory.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)


def safe_url(url: str) -> bool:
    """Only web links become ``href``: a ``javascript:`` or ``data:`` URL stays text."""
    return url.startswith(("https://", "http://")) and not _INVISIBLE.search(url) and " " not in url


def logs_url(service: ServiceView) -> str:
    """The Logs Explorer query for what gatehouse logged about ``service``."""
    query = f'jsonPayload.service="{service.key}"'
    return (
        "https://console.cloud.google.com/logs/query;query="
        + quote(query, safe="")
        + "?project="
        + quote(service.project, safe="")
    )


def spark(ticket: TicketView) -> dict[str, Any] | None:
    """An SVG polyline of the ticket's latency per minute (None without evidence)."""
    values = ticket.latency_ms
    known = [v for v in values if v is not None]
    if len(values) < 2 or not known:
        return None
    top = max(known) or 1.0
    step = _SPARK_WIDTH / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{_SPARK_HEIGHT - (v / top) * (_SPARK_HEIGHT - 2):.1f}"
        for i, v in enumerate(values)
        if v is not None
    )
    return {
        "points": points,
        "width": _SPARK_WIDTH,
        "height": _SPARK_HEIGHT,
        "mark": f"{ticket.incident_from * step:.1f}",
        "peak": f"{max(known):,.0f}",
    }


def _digest(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


@functools.cache
def _environment() -> Any:
    import jinja2
    from markupsafe import Markup

    def template(name: str) -> str:
        return (resources.files("gatehouse.inventory") / "templates" / name).read_text(encoding="utf-8")

    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(template),
        autoescape=True,
        finalize=visible,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(safe_url=safe_url, logs_url=logs_url, spark=spark)
    style, script = template("inventory.css"), template("inventory.js")
    env.globals.update(
        style=Markup(style),  # noqa: S704 - the package's own stylesheet, no input in it
        script=Markup(script),  # noqa: S704 - the package's own script, no input in it
        style_hash=_digest(style),
        script_hash=_digest(script),
    )
    return env


def to_html(inventory: Inventory) -> str:
    summary = inventory.to_dict()["summary"]
    page = _environment().get_template("inventory.html.j2")
    return str(page.render(inv=inventory, summary=summary, calls_total=sum(inventory.calls.values())))
