"""The live view in headless Chromium (run by tests/ui_browser.rs).

Drives the page of two instances over the same state: one with
api.auth = "none" (EXPOSURE_UI_ENDPOINT) and one with api.auth = "acs"
(EXPOSURE_UI_ACS_ENDPOINT, the user EXPOSURE_UI_KEY_ID / EXPOSURE_UI_SECRET).
On stdout it asks the Rust side for new flows with the line
"open-endpoints" and reads the answer, one JSON line, from stdin.
Screenshots go to EXPOSURE_UI_SCREENSHOTS. Exits non-zero on the first
failed check, saying what was expected and what was seen.
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

# Selenium Manager must never download a browser or a driver.
os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

ENDPOINT = os.environ["EXPOSURE_UI_ENDPOINT"]
ACS_ENDPOINT = os.environ["EXPOSURE_UI_ACS_ENDPOINT"]
KEY_ID = os.environ["EXPOSURE_UI_KEY_ID"]
SECRET = os.environ["EXPOSURE_UI_SECRET"]
SCREENSHOTS = os.environ["EXPOSURE_UI_SCREENSHOTS"]
ROWS_SCRIPT = """
return Array.from(document.querySelectorAll('#ports tr[data-port][data-protocol]'), (tr) =>
  [Number(tr.dataset.port), tr.dataset.protocol,
   Number(tr.querySelector('[data-field=PublicIpNum]').textContent), tr.dataset.risk]);
"""
FEED_SCRIPT = """
return Array.from(document.querySelectorAll('#changes [data-event-id]'), (li) => li.dataset.eventId);
"""


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def api(base, action, **params):
    """An unsigned call of the auth = "none" instance; its JSON answer."""
    query = urllib.parse.urlencode({"Action": action, **params})
    with urllib.request.urlopen(f"http://{base}/?{query}", timeout=10) as response:
        return json.load(response)


def api_rows(**params):
    """(Port, Protocol, PublicIpNum) of every DescribeInternetOpenPort row over the last 7 days."""
    start = int(time.time()) - 7 * 86400
    rows, page = [], 1
    while True:
        answer = api(
            ENDPOINT, "DescribeInternetOpenPort", PageSize=1000, CurrentPage=page,
            StartTime=start, **params,
        )
        rows += [(r["Port"], r["Protocol"], r["PublicIpNum"]) for r in answer["DataList"]]
        if len(rows) >= answer["PageInfo"]["TotalCount"] or not answer["DataList"]:
            return sorted(rows)
        page += 1


def wait_for(what, check, timeout=10.0):
    """Polls `check` until it returns a true value (returned), or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # a row replaced mid-read: try again
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not seen within {timeout} s (last error: {last})")
        time.sleep(0.05)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ["EXPOSURE_UI_CHROMIUM"]
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
    ]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(executable_path=os.environ["EXPOSURE_UI_CHROMEDRIVER"])
    return webdriver.Chrome(service=service, options=options)


def shot(driver, name):
    path = os.path.join(SCREENSHOTS, f"{name}.png")
    driver.save_screenshot(path)
    log("screenshot", path)


def table_rows(driver):
    """(Port, Protocol, PublicIpNum) of every page of the table, back on page 1 after."""
    rows = []
    while True:
        rows += [tuple(r[:3]) for r in driver.execute_script(ROWS_SCRIPT)]
        following = driver.find_element(By.ID, "next")
        if not following.is_enabled():
            break
        following.click()
    while driver.find_element(By.ID, "prev").is_enabled():
        driver.find_element(By.ID, "prev").click()
    return sorted(rows)


def table_matches_api(driver, **params):
    expected = api_rows(**params)
    wait_for(
        f"the table's rows equal the API's {len(expected)} rows ({params or 'no filter'})",
        lambda: table_rows(driver) == api_rows(**params),
    )
    return expected


def header_text(driver, field):
    return driver.find_element(By.CSS_SELECTOR, f"#ports th[data-sort={field}] button").text


def check_network_and_console(driver, origin):
    severe = [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE"
    ]
    assert not severe, f"console errors: {severe}"
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    assert urls, "no request was logged"
    leaving = [u for u in urls if urllib.parse.urlsplit(u).hostname != "127.0.0.1"]
    assert not leaving, f"requests leaving 127.0.0.1: {leaving}"
    assert any(u.startswith(f"http://{origin}/ui/app.js") for u in urls), urls
    log("requests:", sorted(u.split("?")[0] for u in urls))


def ask_for_new_flows():
    print("open-endpoints", flush=True)
    return json.loads(sys.stdin.readline())


def without_auth(driver):
    # A browser opening the service's address lands on the page.
    driver.get(f"http://{ENDPOINT}/")
    assert driver.current_url == f"http://{ENDPOINT}/ui/", driver.current_url
    expected = table_matches_api(driver)
    assert len(expected) > 100, f"the fixture fills more than one page: {len(expected)}"
    stat = api(ENDPOINT, "DescribeInternetOpenStatistic")
    for field in ("InternetPortNum", "InternetRiskPortNum", "InternetUnprotectedPortNum"):
        tile = driver.find_element(By.CSS_SELECTOR, f"[data-stat={field}]")
        assert int(tile.text.replace(",", "")) == stat[field], (field, tile.text, stat)
    # The change feed is live, and starts with what happens from now on.
    wait_for(
        "the change feed is live",
        lambda: driver.find_element(By.ID, "changes").get_attribute("data-feed") == "live",
    )
    assert driver.execute_script(FEED_SCRIPT) == [], "events from before the page were listed"
    shot(driver, "table-zh")

    # New flows arrive: a new row appears, an existing one is updated in place.
    driver.execute_script("window.notReloaded = true;")
    ssh = driver.find_element(By.CSS_SELECTOR, "#ports tr[data-port='22'][data-protocol='tcp']")
    before = int(ssh.find_element(By.CSS_SELECTOR, "[data-field=PublicIpNum]").text)
    news = ask_for_new_flows()
    port, protocol = news["opened"]
    started = time.monotonic()
    wait_for(
        f"the new row {port}/{protocol}",
        lambda: driver.find_elements(
            By.CSS_SELECTOR, f"#ports tr[data-port='{port}'][data-protocol='{protocol}']"
        ),
        timeout=3.0,
    )
    log(f"new row after {time.monotonic() - started:.2f} s")
    wait_for(
        "PublicIpNum of 22/tcp updated in the same row",
        lambda: int(ssh.find_element(By.CSS_SELECTOR, "[data-field=PublicIpNum]").text)
        == before + 1,
        timeout=3.0,
    )
    assert driver.execute_script("return window.notReloaded === true;"), "the page reloaded"
    table_matches_api(driver)

    # The flows opened two endpoints: both changes appear in the feed, the
    # newest at the top, with the EventId DescribeExposureChanges has.
    changes = api(ENDPOINT, "DescribeExposureChanges", Kind="opened", PageSize=2)
    newest = [e["EventId"] for e in changes["DataList"]]
    assert any(f"203.0.113.77:{port}/{protocol}" in i for i in newest), newest
    wait_for(
        f"the changes {newest} at the top of the feed",
        lambda: driver.execute_script(FEED_SCRIPT) == newest,
        timeout=3.0,
    )
    redis = driver.find_element(By.CSS_SELECTOR, f"#changes [data-event-id='{newest[1]}']")
    assert f"203.0.113.77:{port}/{protocol}" in redis.text, redis.text

    # Languages: the headers follow.
    assert header_text(driver, "Port") == "端口", header_text(driver, "Port")
    Select(driver.find_element(By.ID, "lang")).select_by_value("en")
    wait_for("English headers", lambda: header_text(driver, "Port") == "Port")
    assert header_text(driver, "PublicIpNum") == "Public IPs"
    ssh_row = f"#ports tr[data-port='{port}'] [data-field=RiskLevel]"
    wait_for("English risk", lambda: driver.find_element(By.CSS_SELECTOR, ssh_row).text == "High")
    time.sleep(0.3)  # the fresh-row highlight fades
    shot(driver, "table-en")
    Select(driver.find_element(By.ID, "lang")).select_by_value("zh")
    wait_for("Chinese headers again", lambda: header_text(driver, "Port") == "端口")

    # The risk filter leaves only rows of that level, as the API answers.
    Select(driver.find_element(By.ID, "risk")).select_by_value("3")
    high = table_matches_api(driver, RiskLevel=3)
    assert high, "the fixture has high-risk rows"
    risks = {r[3] for r in driver.execute_script(ROWS_SCRIPT)}
    assert risks == {"3"}, risks
    shot(driver, "risk-filter")
    Select(driver.find_element(By.ID, "risk")).select_by_value("")
    table_matches_api(driver)

    # Sorting by a header button, then the keyboard: Enter on the focused button.
    button = driver.find_element(By.CSS_SELECTOR, "#ports th[data-sort=Port] button")
    button.click()
    ports = [r[0] for r in driver.execute_script(ROWS_SCRIPT)]
    assert ports == sorted(ports), ports
    button.send_keys("\n")
    ports = [r[0] for r in driver.execute_script(ROWS_SCRIPT)]
    assert ports == sorted(ports, reverse=True), ports
    button.send_keys("\n")  # a third time: the API's order again
    assert table_rows(driver) == api_rows()

    # A row expands to its IPs.
    ssh = driver.find_element(By.CSS_SELECTOR, "#ports tr[data-port='22'][data-protocol='tcp']")
    ssh.find_element(By.CSS_SELECTOR, "button.expand").click()
    ips = wait_for(
        "the IPs of 22/tcp",
        lambda: driver.find_elements(By.CSS_SELECTOR, "tr[data-detail-of='22/tcp'] tr[data-ip]"),
    )
    detail = api(ENDPOINT, "DescribeInternetOpenDetail", Port=22, PageSize=100)
    assert sorted(ip.get_attribute("data-ip") for ip in ips) == sorted(
        d["PublicIp"] for d in detail["DataList"] if d["Protocol"] == "tcp"
    )
    check_network_and_console(driver, ENDPOINT)


def with_acs(driver):
    driver.get(f"http://{ACS_ENDPOINT}/ui/")
    wait_for("the sign-in form", lambda: driver.find_element(By.ID, "signin").is_displayed())
    Select(driver.find_element(By.ID, "lang")).select_by_value("en")

    def sign_in(key_id, secret):
        for field, value in [("access-key-id", key_id), ("access-key-secret", secret)]:
            element = driver.find_element(By.ID, field)
            element.clear()
            element.send_keys(value)
        driver.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()

    def refusal():
        error = driver.find_element(By.ID, "signin-error")
        return error.is_displayed() and error.text

    sign_in(KEY_ID, "not-the-secret")
    text = wait_for("the refusal of a wrong secret", refusal)
    assert "SignatureDoesNotMatch" in text, text
    shot(driver, "signin-error")
    sign_in("LTAI5tNOBODY", SECRET)
    text = wait_for(
        "the refusal of an unknown key", lambda: "InvalidAccessKeyId.NotFound" in (refusal() or "")
    )
    sign_in(KEY_ID, SECRET)
    wait_for("the table, signed", lambda: not driver.find_element(By.ID, "signin").is_displayed())
    table_matches_api(driver)
    stored = driver.execute_script("return JSON.stringify(localStorage);")
    assert SECRET not in stored, "the secret is in local storage"
    session = driver.execute_script("return JSON.stringify(sessionStorage);")
    assert SECRET in session, "the secret is kept in the tab's session storage"
    # The feed's EventSource URL is signed in the browser (signature v1).
    wait_for(
        "the signed change feed is live",
        lambda: driver.find_element(By.ID, "changes").get_attribute("data-feed") == "live",
    )
    shot(driver, "signed-in")
    check_network_and_console_acs(driver)


def check_network_and_console_acs(driver):
    # The two refusals were answered with errors the browser logs; nothing else.
    severe = [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE"
        and "status of 400" not in e["message"]
        and "status of 404" not in e["message"]
    ]
    assert not severe, f"console errors: {severe}"
    urls = {
        json.loads(e["message"])["message"]["params"].get("request", {}).get("url", "")
        for e in driver.get_log("performance")
        if '"Network.requestWillBeSent"' in e["message"]
    }
    leaving = [u for u in urls if urllib.parse.urlsplit(u).hostname != "127.0.0.1"]
    assert not leaving, f"requests leaving 127.0.0.1: {leaving}"


def main():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    driver = browser()
    try:
        without_auth(driver)
        log("auth none: ok")
    finally:
        driver.quit()
    driver = browser()
    try:
        with_acs(driver)
        log("auth acs: ok")
    finally:
        driver.quit()
    print("passed", flush=True)


if __name__ == "__main__":
    main()
