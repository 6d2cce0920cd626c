"""Headless Chromium for the report's browser test (tests/e2e/test_report_browser.py).

:func:`find_chromium` finds the browser (``scripts/chromium.sh`` installs Debian's on a fresh
machine; ``make test`` runs it); :func:`open_offline` loads a ``file://`` page with every way
out closed (a proxy on a closed port, names resolving to nothing, background networking off)
and a net log, and returns the screenshot, the DOM after scripts ran, and every URL the *page*
asked for (:func:`page_requests`); :func:`png_pixels` decodes the screenshot with the
standard library only.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: URL schemes that never leave the machine
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-error:")

_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    # nothing the page asks for can leave: every proxied request goes to a closed port, and no
    # name resolves
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


def find_chromium() -> str | None:
    """The browser's path, or None."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageView:
    """What :func:`open_offline` saw."""

    screenshot: Path
    dom: str
    requests: list[str]


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [browser, *_FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def open_offline(
    browser: str, page: Path, work: Path, *, size: tuple[int, int] = (1280, 2000), timeout=90.0
) -> PageView:
    """Screenshot and DOM of ``page`` (a local HTML file) in headless Chromium, offline."""
    work.mkdir(parents=True, exist_ok=True)
    url = page.resolve().as_uri()
    shot = work / "screenshot.png"
    net_log = work / "net-log.json"
    _run(
        browser,
        [
            f"--user-data-dir={work / 'profile-shot'}",
            f"--log-net-log={net_log}",
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={shot}",
            url,
        ],
        timeout,
    )
    dom = _run(
        browser,
        [
            f"--user-data-dir={work / 'profile-dom'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        timeout,
    ).stdout
    return PageView(screenshot=shot, dom=dom, requests=page_requests(net_log))


def page_requests(net_log: Path) -> list[str]:
    """The URLs the page (a ``file://`` document) requested that are not local, from a net log.

    The browser's own traffic (there should be none with the flags above, but a build may differ)
    is told apart by its initiator: a ``file://`` page's requests have the opaque origin
    ``null`` or a ``file://`` site for cookies.
    """
    text = net_log.read_text(errors="replace").rstrip().rstrip(",")
    if not text.endswith("}"):  # a log cut short by the browser's exit: close it
        text += "]}"
    data = json.loads(text)
    urls: list[str] = []
    for event in data.get("events", []):
        params = event.get("params") or {}
        url = params.get("url")
        if not isinstance(url, str) or url.startswith(LOCAL_SCHEMES):
            continue
        from_page = params.get("initiator") == "null" or "file://" in str(
            params.get("site_for_cookies", "")
        )
        if from_page and url not in urls:
            urls.append(url)
    return urls


# ---- PNG, standard library only ----


def _chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        yield kind, data[pos + 8 : pos + 8 + length]
        pos += 12 + length


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """``(width, height, rows)`` of an 8-bit RGB/RGBA non-interlaced PNG; each row RGB(A) bytes."""
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    idat = bytearray()
    width = height = bpp = 0
    for kind, body in _chunks(data):
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour {colour}")
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    pos = 0
    for _ in range(height):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1 : pos + 1 + stride])
        pos += 1 + stride
        if ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def colour_stats(path: Path) -> tuple[int, float]:
    """``(distinct colours, share of pixels that are not near-white)`` of a screenshot."""
    width, height, rows = png_pixels(path)
    bpp = len(rows[0]) // width if rows else 3
    colours: set[bytes] = set()
    inked = 0
    for row in rows:
        for x in range(0, width * bpp, bpp):
            px = row[x : x + 3]
            colours.add(px)
            if min(px) < 235:
                inked += 1
    return len(colours), inked / max(1, width * height)
