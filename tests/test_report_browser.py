"""report.html in a real headless Chromium: it loads offline with no console errors, fetches nothing from the
network, every figure decodes, and a full-page screenshot is far from blank.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: file descriptors 3 and
4, messages separated by NUL bytes), so the test needs no port, no websocket library and no Node. It runs
in the default `pytest -q`; on a machine without Chromium it is skipped, unless SERVEBENCH_REQUIRE_BROWSER
is set (CI sets it after installing Debian's chromium), in which case it fails.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from report_runs import materialise, with_bad_cells, with_capacity

from bench.report import render_run_reports

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--remote-debugging-pipe"]
WIDTH = 1400
TIMEOUT_S = 60.0


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("SERVEBENCH_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium); CI installs it")
    return found


@dataclass
class PageLoad:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


class DevTools:
    """A Chromium process and a DevTools-protocol session over its debugging pipe."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes() -> None:  # in the child: the protocol wants fd 3 (commands in) and fd 4 (replies out)
            commands = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            replies = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(replies, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, close_fds=False, preexec_fn=wire_pipes)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 16):
            buffer += chunk
            *complete, buffer = buffer.split(b"\0")
            for message in complete:
                self.messages.put(json.loads(message))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == method:
                return seen
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            event = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def drain(self, seconds: float) -> None:
        """Collect whatever else the page does for a while (late requests, deferred errors)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(self.messages.get(timeout=left))
            except queue.Empty:
                break

    def close(self) -> None:
        with contextlib.suppress(AssertionError, OSError, queue.Empty):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    tools = DevTools(_chromium(), tmp_path / "profile", tmp_path / "chromium.log")
    try:
        yield tools
    finally:
        tools.close()


def load(tools: DevTools, page: Path) -> PageLoad:
    target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.send(f"{domain}.enable", session=session)
    tools.send("Emulation.setDeviceMetricsOverride", {"width": WIDTH, "height": 900, "deviceScaleFactor": 1,
                                                      "mobile": False}, session=session)
    tools.send("Page.navigate", {"url": page.as_uri()}, session=session)
    tools.wait_for("Page.loadEventFired")
    tools.drain(1.0)
    images = tools.send("Runtime.evaluate", {"expression": (
        "JSON.stringify({count: document.images.length, broken: Array.from(document.images)"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)})"), "returnByValue": True},
        session=session)["result"]["value"]
    metrics = tools.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = tools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
        "x": 0, "y": 0, "width": WIDTH, "height": metrics["height"], "scale": 1}}, session=session)
    result = PageLoad(images=json.loads(images), screenshot=base64.b64decode(shot["data"]))
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            result.errors.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Runtime.exceptionThrown":
            result.errors.append(f"exception: {params.get('exceptionDetails')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            result.errors.append(f"log: {params['entry'].get('text')} ({params['entry'].get('url')})")
        elif method == "Network.requestWillBeSent":
            result.requests.append(str(params.get("request", {}).get("url")))
        elif method == "Network.loadingFailed":
            result.errors.append(f"loading failed: {params.get('errorText')}")
    return result


def _distinct_colours(png: bytes) -> int:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 24) or [])


@pytest.mark.parametrize("variant", ["smoke-4runtimes", "bad-cells", "capacity"])
def test_report_loads_offline_with_no_errors(browser: DevTools, tmp_path: Path, variant: str) -> None:
    folder = tmp_path / "run"
    variations = {"bad-cells": with_bad_cells, "capacity": with_capacity}
    run = variations[variant](folder) if variant in variations else materialise(variant, folder)
    report, _ = render_run_reports([run])
    page = load(browser, report)
    (tmp_path / "report.png").write_bytes(page.screenshot)  # kept under pytest's basetemp to look at

    assert page.errors == []
    foreign = [url for url in page.requests if not (url == report.as_uri() or url.startswith("data:"))]
    assert foreign == [], f"the page fetched {foreign}"
    assert page.images["broken"] == []
    assert page.images["count"] >= 4  # spectrum, CDF, timeline, resources
    image = Image.open(io.BytesIO(page.screenshot))
    assert image.width == 1400 and image.height > 2000
    assert _distinct_colours(page.screenshot) > 500, "the screenshot looks blank"


def test_the_check_itself_catches_console_errors_and_network_requests(browser: DevTools, tmp_path: Path) -> None:
    """A control: a page that logs an error and fetches from the network must fail the checks above."""
    page = tmp_path / "leaky.html"
    page.write_text('<html><body><p>leaky</p><img alt="remote" src="http://127.0.0.1:9/x.png">'
                    '<script>console.error("boom")</script></body></html>')
    loaded = load(browser, page)
    assert any("boom" in error for error in loaded.errors)
    assert "http://127.0.0.1:9/x.png" in loaded.requests
    assert loaded.images["broken"] == ["remote"]
