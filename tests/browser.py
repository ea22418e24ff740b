"""A small Chrome DevTools Protocol client: headless Chromium, driven over a websocket."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1100,900",
]


def readme_screenshot(name: str) -> Path:
    """Where a test saves a screenshot the README shows: test-artifacts/, or the folder that
    STATUS_EXPORTER_SCREENSHOTS names (``docs`` regenerates the README's own)."""
    return Path(os.environ.get("STATUS_EXPORTER_SCREENSHOTS") or ARTIFACTS) / name


class Browser:
    """One headless Chromium with one page; every wait is bounded."""

    def __init__(self, chromium: str) -> None:
        # Chromium's helper processes may still be writing as it exits: tolerate that on cleanup.
        self._profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self._process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._ids = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Browser:
        port_file = Path(self._profile.name) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("Chromium did not open its DevTools port")
            await asyncio.sleep(0.05)
        port = port_file.read_text().split()[0]
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t["type"] == "page"]
        self._socket = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"])
        await self.send("Page.enable")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        self._process.terminate()
        self._process.wait(10)
        self._profile.cleanup()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method and return its result (events before it are dropped)."""
        assert self._socket is not None
        call_id = next(self._ids)
        await self._socket.send_json({"id": call_id, "method": method, "params": params})
        async with asyncio.timeout(30):
            while True:
                message = json.loads((await self._socket.receive()).data)
                if message.get("id") == call_id:
                    if "error" in message:
                        raise RuntimeError(f"{method}: {message['error']}")
                    return dict(message["result"])

    async def open(self, url: str) -> None:
        """Navigate and wait until the document has loaded."""
        await self.send("Page.navigate", url=url)
        deadline = time.monotonic() + 30
        while await self.evaluate("document.readyState") != "complete":
            assert time.monotonic() < deadline, f"{url} did not load"
            await asyncio.sleep(0.05)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    async def type_into(self, selector: str, text: str) -> None:
        """Focus an element and type text as keyboard input."""
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def click(self, selector: str) -> None:
        """Click the middle of an element with the mouse, as a person would (not el.click())."""
        box = await self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def set_viewport(
        self, width: int, height: int, *, mobile: bool = False, scale: float = 1
    ) -> None:
        """Emulate a screen of ``width`` x ``height`` CSS pixels (``mobile``: a phone's)."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=scale,
            mobile=mobile,
        )
        # A phone's overlay scrollbar would show in screenshots, caught mid-fade.
        await self.send("Emulation.setScrollbarsHidden", hidden=mobile)

    async def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        """Save a PNG of the viewport, or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            width, height = await self.evaluate(
                "[document.documentElement.clientWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
            params["captureBeyondViewport"] = True
        result = await self.send("Page.captureScreenshot", **params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(result["data"]))
