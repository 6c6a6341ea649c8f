"""The console in a real browser: Debian's chromium (headless) and its chromedriver, driven by Selenium
from the project's venv (scripts/setup.sh installs all three; nothing is downloaded here).

Run by tests/console.rs::browser_console against a running `junction run` on the bundled clip:

    .venv/bin/python tests/console_browser.py --url http://127.0.0.1:PORT/ --password PW [--screenshots DIR]

Steps: a wrong password is refused; the right one logs in; the camera tile comes up with a picture;
a line's counter rises; the editor draws a new line with mouse events and saves it; the new line's
crossings appear in the event stream. Prints "drawn line: ID" for the caller. Exit 0 on success.
"""
import argparse
import os
import re
import sys
import time

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download anything

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def step(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--screenshots", default="")
    ap.add_argument("--camera", default="street")
    args = ap.parse_args()

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1600,1000", "--hide-scrollbars"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    wait = WebDriverWait(driver, 60, poll_frequency=0.2)

    def shot(name):
        if args.screenshots:
            os.makedirs(args.screenshots, exist_ok=True)
            path = os.path.join(args.screenshots, name)
            driver.save_screenshot(path)
            step(f"screenshot {path}")

    try:
        driver.get(args.url)
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        step("login form shown")

        pw = driver.find_element(By.ID, "login-password")
        pw.send_keys("not the password")
        driver.find_element(By.ID, "login-submit").click()
        wait.until(lambda d: "wrong password" in d.find_element(By.ID, "login-error").text)
        assert not driver.find_element(By.ID, "console").is_displayed(), "console shown after a wrong password"
        step("wrong password refused")

        pw.clear()
        pw.send_keys(args.password)
        driver.find_element(By.ID, "login-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "console").is_displayed())
        step("logged in")

        tile = f'.tile[data-camera="{args.camera}"]'
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{tile} .badge").text.lower() == "up")
        wait.until(lambda d: d.execute_script(
            f"const i = document.querySelector('{tile} img'); return i.complete && i.naturalWidth > 0;"))
        fps = driver.find_element(By.CSS_SELECTOR, f"{tile} .fps").text
        step(f"tile up with a picture ({fps})")

        # A counter rises: the current bin's total on a line grows past the lowest value seen.
        cell = f'table[data-camera="{args.camera}"] tr[data-line] td.total'
        low = None
        deadline = time.time() + 60
        while True:
            values = [int(e.text) for e in driver.find_elements(By.CSS_SELECTOR, cell)]
            total = sum(values)
            if low is not None and total > low:
                break
            low = total if low is None else min(low, total)
            assert time.time() < deadline, f"no counter rose in 60 s (stayed at {total})"
            time.sleep(0.2)
        step(f"a counter rose: {low} -> {total}")
        shot("console.png")

        # The editor: draw a vertical line at x = 200 frame pixels, from y = 60 to 220.
        driver.find_element(By.CSS_SELECTOR, f"{tile} .edit").click()
        canvas = driver.find_element(By.ID, "editor-canvas")
        wait.until(lambda d: d.execute_script("return document.getElementById('editor-canvas').width") > 0)
        driver.find_element(By.ID, "tool-line").click()
        width, height = canvas.size["width"], canvas.size["height"]
        frame_w, frame_h = driver.execute_script("return editor.rules.frame_size")
        k = width / frame_w

        def at(x, y):
            # Selenium's offsets are from the element's centre.
            return round(x * k - width / 2), round(y * k - height / 2)

        x0, y0 = at(200, 60)
        x1, y1 = at(200, 220)
        chain = ActionChains(driver).move_to_element_with_offset(canvas, x0, y0).click_and_hold()
        for i in range(1, 9):
            chain.move_to_element_with_offset(canvas, x0 + (x1 - x0) * i // 8, y0 + (y1 - y0) * i // 8)
        chain.release().perform()
        drawn = driver.execute_script("const l = editor.rules.lines; return l[l.length - 1];")
        assert drawn and abs(drawn["points"][0][0] - 200) <= 2 and abs(drawn["points"][1][1] - 220) <= 2, drawn
        line_id = drawn["id"]
        print(f"drawn line: {line_id}", flush=True)
        step(f"drew {line_id} {drawn['points']}")
        shot("editor.png")

        driver.find_element(By.ID, "save").click()
        wait.until(lambda d: "applied without a restart" in d.find_element(By.ID, "editor-status").text)
        step(driver.find_element(By.ID, "editor-status").text)
        driver.find_element(By.ID, "close-editor").click()

        # Its crossings in the event stream.
        sel = f'#events li[data-rule="{line_id}"][data-kind="crossing"]'
        WebDriverWait(driver, 90, poll_frequency=0.2).until(lambda d: d.find_elements(By.CSS_SELECTOR, sel))
        step("crossing of the new line in the event stream: "
             + driver.find_element(By.CSS_SELECTOR, sel).text)
        shot("events.png")

        # The export, as the page's own request (the session cookie goes with it): the store's 1-minute
        # reports so far, by `junction report`'s code.
        csv = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const q = new URLSearchParams({from: '2000-01-01T00:00:00Z', to: '2100-01-01T00:00:00Z', interval: '1m'});
            fetch('/api/export/coverage.csv?' + q, {credentials: 'same-origin'})
                .then((r) => r.text().then((t) => done([r.status, t])));
        """)
        assert csv[0] == 200, csv
        rows = csv[1].strip().splitlines()
        assert rows[0].startswith("interval_start,interval_seconds,camera,covered_seconds"), rows[:2]
        assert len(rows) >= 2 and ",street," in rows[1], rows
        step(f"export: {len(rows) - 1} coverage rows")

        # Frames for labelling, on the operator's request: the camera's button starts a collection
        # on the box and the tile counts the frames it saves.
        driver.find_element(By.CSS_SELECTOR, ".tile[data-camera='street'] button.collect").click()
        line = ".tile[data-camera='street'] .collecting"
        # (A file camera's collection reads the file at full speed: it may end before the next poll.)
        WebDriverWait(driver, 90, poll_frequency=0.5).until(
            lambda d: re.search(r"collect(ing:|ed) [1-9]\d* frames", d.find_element(By.CSS_SELECTOR, line).text))
        step("collect: " + driver.find_element(By.CSS_SELECTOR, line).text)
        shot("collect.png")
        # The page asked for nothing that is not there (the icon once logged a 404).
        missing = [e for e in driver.get_log("browser") if "404" in e.get("message", "")]
        assert not missing, missing
        return 0
    except Exception as e:  # the page's state helps more than the traceback alone
        step(f"FAILED: {e!r}")
        try:
            shot("failure.png")
            step("page text: " + driver.find_element(By.TAG_NAME, "body").text[:2000])
            for entry in driver.get_log("browser")[-20:]:
                step(f"console: {entry}")
        except Exception:
            pass
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
