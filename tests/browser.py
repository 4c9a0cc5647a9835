"""Headless Chromium driven through the DevTools protocol, for tests that look at real pages.

Chromium's own ``--screenshot`` never returns on pages that keep polling (the Temporal Web UI), so
a test navigates, waits until the page shows what it expects, and only then captures it. Debian's
``chromium`` package is used as installed (CI installs it); nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import websockets

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which this
# machine's closed network refuses.
HEADLESS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLAGS = [*HEADLESS, "--window-size=1600,1100", "--remote-debugging-port=0"]


class Page:
    """One browser tab: navigate, read its text, wait for text, click, capture."""

    def __init__(self, socket: Any) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        await self._socket.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._socket.recv())
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return answer.get("result", {}).get("value")

    async def text(self) -> str:
        """The page's visible text, with that of its same-origin frames (the Temporal Web UI
        renders a workflow's Markdown details inside one)."""
        return str(
            await self.evaluate(
                "(() => { const parts = [document.body ? document.body.innerText : ''];"
                "for (const f of document.querySelectorAll('iframe')) {"
                " try { parts.push(f.contentDocument.body.innerText); } catch (e) {} }"
                "return parts.join('\\n'); })()"
            )
            or ""
        )

    async def wait_for_text(self, *needles: str, timeout_s: float = 60) -> str:
        """Wait until the page's visible text holds every needle; returns that text."""
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            text = await self.text()
            if all(needle in text for needle in needles):
                return text
            await asyncio.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"page never showed {missing}; it shows:\n{text[:3000]}")

    async def click_text(self, text: str) -> None:
        """Click the innermost visible element whose text is exactly ``text``."""
        clicked = await self.evaluate(
            "(() => {"
            f"const wanted = {json.dumps(text)};"
            "const all = [...document.querySelectorAll('a,button,[role=tab],span,div,label')];"
            "const hits = all.filter(e => e.offsetParent !== null && e.innerText"
            " && e.innerText.trim() === wanted);"
            "if (!hits.length) return false;"
            "hits[hits.length - 1].click(); return true; })()"
        )
        if not clicked:
            raise AssertionError(f"nothing to click labelled {text!r}")

    async def screenshot(self, path: Path) -> Path:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@contextlib.asynccontextmanager
async def browser_page() -> AsyncIterator[Page]:
    """A fresh headless Chromium (own profile) with one page; closed on exit."""
    if CHROMIUM is None:
        raise RuntimeError("Chromium is not installed (CI installs it: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="qtc-chromium-") as profile:
        process = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = await _devtools_port(Path(profile))
            async with httpx.AsyncClient(timeout=10) as http:
                target = (await http.put(f"http://127.0.0.1:{port}/json/new?about:blank")).json()
            async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                yield page
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


async def _devtools_port(profile: Path, timeout_s: float = 30) -> int:
    # With --remote-debugging-port=0 Chromium picks a free port and writes it to this file.
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if marker.exists():
            first = marker.read_text().splitlines()[:1]
            if first and first[0].isdigit():
                return int(first[0])
        await asyncio.sleep(0.1)
    raise RuntimeError("Chromium did not open its DevTools port")
