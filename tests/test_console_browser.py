"""The web console in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromium-driver (skipped locally when they are missing, failed in CI, which installs
them). The forms come from the MQTT connector's schemas; a Listen and a Send run on the embedded
broker; the password never reaches the browser back.

``CONSOLE_SCREENSHOTS=docs`` writes the screenshots docs/console.md shows into that folder (the
repository's docs/), from the same runs that check what they show.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from brokers import listen_port, missing
from clirun import run_cli

try:
    import uvicorn
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # each test says so (skipped here, failed in CI): see _tools
    webdriver = None
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")

from connector.harness.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "browser-test-token-5f2c"
SECRET = "Secret-Pa55word-7d1e"
#: Seconds any one thing may take to appear in the page (the machine may be loaded).
WAIT = 30


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    """The browser, its driver and the extras: each test is skipped without them (failed in CI)."""
    if webdriver is None:
        missing("the console extras are not installed: pip install -e '.[console,console-test]'")
    if CHROMIUM is None or DRIVER is None:
        missing("chromium and chromedriver are not installed (Debian packages chromium, chromium-driver)")


@pytest.fixture(scope="module")
def console(_tools: None) -> Iterator[str]:
    """The console served by uvicorn in a thread, on a free port: its base URL."""
    from connector.console.app import create_app
    from connector.console.serve import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(Runtime(default_connector="mqtt"), TOKEN, f"console_token_{port}", "mqtt")
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()  # the socket listens already: the browser's first request waits for it
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(30)
    sock.close()


@pytest.fixture(scope="module")
def browser(_tools: None) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1300", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.execute_cdp_cmd("Network.enable", {})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, console: str) -> Any:
    """The console, freshly opened with its token (the MQTT connector picked)."""
    browser.get(f"{console}?token={TOKEN}")
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-schemapath="root.qos"] select'))
    return browser


def _until(driver: Any, condition: Callable[[Any], Any], timeout: float = WAIT) -> Any:
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        said = {name: driver.find_element(By.ID, name).text
                for name in ("check-result", "form-errors", "send-summary", "listen-status", "load-error")}
        raise AssertionError(f"not shown within {timeout} s; the page says {said}") from None


def _field(driver: Any, name: str, form: str = "operation") -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'#form-{form} [data-schemapath="root.{name}"]')


def _type(driver: Any, name: str, text: str, form: str = "operation") -> None:
    driver.find_element(By.ID, f"tab-{form}").click()
    box = next(i for i in _field(driver, name, form).find_elements(By.CSS_SELECTOR, "input") if i.is_displayed())
    box.clear()
    box.send_keys(text, Keys.TAB)  # the change event: the form validates


def _action(driver: Any, action: str) -> None:
    driver.find_element(By.ID, "tab-operation").click()
    Select(_field(driver, "action").find_element(By.TAG_NAME, "select")).select_by_value(action)
    _until(driver, lambda d: d.find_element(By.ID, f"run-{action}").is_displayed())


def _connect(driver: Any, broker: Any) -> None:
    driver.find_element(By.ID, "tab-connection").click()
    _type(driver, "port", str(broker.port), "connection")


def _screenshot(driver: Any, name: str, section: str | None = None) -> None:
    """The window, or one section of the page, as docs/console.md shows it (when asked to)."""
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if folder:
        path = str(ROOT / folder / f"console-{name}.png")
        if section is None:
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(path)
        else:
            element = driver.find_element(By.ID, section)
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", element)
            element.screenshot(path)


def test_the_options_tab_is_the_schema(page: Any) -> None:
    _screenshot(page, "connection")
    assert _field(page, "password", "connection").find_element(By.TAG_NAME, "input").get_attribute("type") == "password"
    page.find_element(By.ID, "tab-operation").click()
    fields = page.find_elements(By.CSS_SELECTOR, "#form-operation [data-schemapath^='root.']")
    shown = [f.get_attribute("data-schemapath")[5:] for f in fields if f.is_displayed()]
    top = list(dict.fromkeys(name for name in shown if "." not in name))
    assert top[:3] == ["action", "topic", "qos"]  # the schema's order; Listen first, as its choices are
    qos = Select(_field(page, "qos").find_element(By.TAG_NAME, "select"))
    assert [o.text for o in qos.options] == ["0 - At most once", "1 - At least once", "2 - Exactly once"]
    label = _field(page, "qos").text
    assert "Quality of Service" in label and "The delivery promise between the connector and the broker." in label
    assert not _field(page, "retained").is_displayed()  # Send only (the schema's if/then)
    assert _field(page, "max_attempts").is_displayed()
    _action(page, "send")
    assert _field(page, "retained").is_displayed() and "Retained Message" in _field(page, "retained").text
    assert not _field(page, "max_attempts").is_displayed()
    _screenshot(page, "options")
    assert [e["message"] for e in page.get_log("browser") if e["level"] == "SEVERE"] == []  # no script error


def test_another_connector_renders_from_its_own_schemas(page: Any) -> None:
    picker = Select(page.find_element(By.ID, "connector"))
    if "disk" not in [o.get_attribute("value") for o in picker.options]:
        missing("the disk connector is not installed (pip install ./examples/disk-connector)")
    picker.select_by_value("disk")
    _until(page, lambda d: d.find_elements(By.CSS_SELECTOR, '#form-connection [data-schemapath="root.directory"]'))
    assert "Directory" in _field(page, "directory", "connection").text
    _action(page, "listen")  # its manifest's actions: the schema has no Action field
    assert _field(page, "pattern").is_displayed() and not _field(page, "file_name").is_displayed()
    _action(page, "send")
    assert _field(page, "file_name").is_displayed() and not _field(page, "pattern").is_displayed()


def test_a_send_topic_with_a_wildcard_shows_the_error_at_the_field(page: Any) -> None:
    _action(page, "send")
    _type(page, "topic", "sensors/#")
    said = "a Send topic names one topic: the wildcards '+' and '#' are for Listen"
    _until(page, lambda d: said in _field(d, "topic").text)
    page.find_element(By.ID, "send-text").send_keys("21")
    page.find_element(By.ID, "send").click()  # refused in the browser: nothing is sent
    _until(page, lambda d: "fix the fields marked in red" in d.find_element(By.ID, "send-summary").text)
    assert said in page.find_element(By.ID, "form-errors").text
    # a rule only the connector knows (MQTT 5 fields need protocol 5): the server's sentence, at its field
    _type(page, "topic", "sensors/a")
    _type(page, "content_type", "text/plain")
    page.find_element(By.ID, "send").click()
    _until(page, lambda d: "needs MQTT 5" in _field(d, "content_type").text)
    assert "refused the configuration" in page.find_element(By.ID, "send-summary").text


def test_a_listen_shows_each_document_as_it_arrives(page: Any, broker: Any, unique: str) -> None:
    _connect(page, broker)
    _action(page, "listen")
    _type(page, "topic", f"{unique}/#")
    Select(_field(page, "qos").find_element(By.TAG_NAME, "select")).select_by_visible_text("1 - At least once")
    page.find_element(By.ID, "listen-start").click()
    _until(page, lambda d: d.find_element(By.ID, "listen-status").text == f"listening on '{unique}/#' (QoS 1)")
    sent = run_cli("send", "--port", str(broker.port), "--topic", f"{unique}/temperature", "--qos", "1",
                   "--message", "21.5", "--message", "22")
    assert sent.returncode == 0, sent.stderr
    sent = run_cli("send", "--port", str(broker.port), "--topic", f"{unique}/raw", "--qos", "1",
                   "--payload-encoding", "hex", "--message", "00 ff 10")
    assert sent.returncode == 0, sent.stderr
    rows = "#listen-rows tbody tr"
    _until(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) == 3)
    newest = page.find_elements(By.CSS_SELECTOR, rows)[0].text
    assert "00 ff 10" in newest and "hex, 3 bytes" in newest and f"{unique}/raw" in newest
    oldest = page.find_elements(By.CSS_SELECTOR, rows)[-1].text
    assert "21.5" in oldest and f"{unique}/temperature" in oldest and oldest.endswith("yes")
    assert "Only the last 200 are kept" in page.find_element(By.ID, "run-listen").text
    _screenshot(page, "listen", "run-listen")
    page.find_element(By.ID, "listen-stop").click()
    _until(page, lambda d: d.find_element(By.ID, "listen-status").text.startswith("ended (stopped): 3 accepted"))


def test_a_send_shows_one_result_per_document(page: Any, broker: Any, unique: str, tmp_path: Path) -> None:
    _connect(page, broker)
    _action(page, "send")
    _type(page, "topic", f"{unique}/out")
    page.find_element(By.ID, "send-text").send_keys("first\nsecond")
    page.find_element(By.CSS_SELECTOR, "input[name=send-mode][value=lines]").click()
    upload = tmp_path / "reading.bin"
    upload.write_bytes(b"\x00\x01")
    page.find_element(By.ID, "send-files").send_keys(str(upload))
    page.find_element(By.ID, "send").click()
    _until(page, lambda d: d.find_element(By.ID, "send-summary").text.startswith("sent 3 of 3 documents"))
    rows = [r.text for r in page.find_elements(By.CSS_SELECTOR, "#send-results tbody tr")]
    assert rows == ["1 line 1 SUCCESS", "2 line 2 SUCCESS", "3 file 'reading.bin' SUCCESS"]
    _screenshot(page, "send", "run-send")
    # a broker that is not there: the one-line reason, and the check says it too
    _type(page, "port", str(listen_port()), "connection")
    page.find_element(By.ID, "send").click()
    _until(page, lambda d: "cannot connect" in d.find_element(By.ID, "send-summary").text.lower()
           or "refused" in d.find_element(By.ID, "send-summary").text.lower())
    page.find_element(By.ID, "check").click()
    _until(page, lambda d: d.find_element(By.ID, "check-result").get_attribute("class") == "result-line bad")


def test_the_password_never_comes_back(page: Any, broker: Any, unique: str) -> None:
    page.get_log("performance")  # only this test's traffic below
    _connect(page, broker)
    _type(page, "username", "someone", "connection")
    _type(page, "password", SECRET, "connection")
    page.find_element(By.ID, "check").click()
    _until(page, lambda d: d.find_element(By.ID, "check-result").text.startswith("ok: "))
    _action(page, "send")
    _type(page, "topic", f"{unique}/secret")
    page.find_element(By.ID, "send-text").send_keys("x")
    page.find_element(By.ID, "send").click()
    _until(page, lambda d: d.find_element(By.ID, "send-summary").text.startswith("sent 1 of 1"))
    _type(page, "content_type", "text/plain")  # refused by the server: its errors do not echo the secret
    page.find_element(By.ID, "send").click()
    _until(page, lambda d: "needs MQTT 5" in _field(d, "content_type").text)
    assert SECRET not in page.page_source
    sent, bodies = _traffic(page)
    assert len([body for body in sent if SECRET in body]) == 3  # the test is real: the browser sent it
    assert {"/api/check", "/api/send"} <= {urlsplit(url).path for url in bodies}
    assert [url for url, body in bodies.items() if SECRET in body] == []
    page.refresh()  # the form comes back empty: the secret was never sent to the browser
    _until(page, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-schemapath="root.password"] input'))
    assert _field(page, "password", "connection").find_element(By.TAG_NAME, "input").get_attribute("value") == ""
    assert SECRET not in page.page_source


def _traffic(driver: Any) -> tuple[list[str], dict[str, str]]:
    """What the page sent (request bodies) and received (URL -> response body) since the log was
    last read."""
    sent, bodies = [], {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            sent.append(message["params"]["request"].get("postData", ""))
        if message["method"] != "Network.responseReceived":
            continue
        url = message["params"]["response"]["url"]
        try:
            body = driver.execute_cdp_cmd("Network.getResponseBody", {"requestId": message["params"]["requestId"]})
        except Exception:  # a redirect or a stream without a body kept
            continue
        bodies[url] = body.get("body", "")
    return sent, bodies


def test_without_the_token_the_browser_gets_403(browser: Any, console: str) -> None:
    browser.delete_all_cookies()
    browser.get(console)
    assert browser.find_element(By.TAG_NAME, "body").text.startswith("403 Forbidden")
    browser.get(console + "static/vendor/jsoneditor.js")
    assert browser.find_element(By.TAG_NAME, "body").text.startswith("403 Forbidden")
