#!/usr/bin/env python3
"""The console under load: N cameras (the bundled clip N times, played at its own rate as live cameras
that drop what the detector cannot take) and a headless chromium with the console open.

    .venv/bin/python scripts/console_load.py [--cameras 8] [--seconds 25]

Builds nothing: run `cargo build --release` first. Starts its own `junction run` (a temporary site, a
password, a free port on 127.0.0.1) and ends it by PID. Two windows of equal length, back to back:
A without a browser, B with the console open and logged in (a tile per camera refreshing its
snapshot once a second when the last one has loaded, the state every second, the live event stream).
Prints one JSON line: CPU of the process and of its HTTP thread in each window (% of one core), what
the page measured (event-loop lag, snapshot latency, the editor's open time, counts on screen) and
the snapshots served.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("SE_OFFLINE", "true")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/junction")
TICK = os.sysconf("SC_CLK_TCK")
PASSWORD = "console load test"


def cpu_ticks(pid):
    """(process ticks, HTTP thread ticks): user + system, from /proc."""
    def ticks(path):
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    proc = ticks(f"/proc/{pid}/stat")
    http = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() == "junction-http":
                    http += ticks(f"/proc/{pid}/task/{tid}/stat")
        except FileNotFoundError:
            pass
    return proc, http


def window(pid, seconds):
    p0, h0 = cpu_ticks(pid)
    t0 = time.time()
    time.sleep(seconds)
    p1, h1 = cpu_ticks(pid)
    dt = time.time() - t0
    return {"process_cpu_pct": round(100 * (p1 - p0) / TICK / dt, 1), "http_cpu_pct": round(100 * (h1 - h0) / TICK / dt, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=25)
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("console_load: build first: cargo build --release")
    tmp = tempfile.mkdtemp(prefix="junction-console-load-")
    hashed = subprocess.run([BIN, "hash-password"], input=PASSWORD + "\n", capture_output=True, text=True, check=True).stdout.strip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cal = open(os.path.join(ROOT, "calibration/example-street/street.toml")).read()
    site = [f'site = "console-load"\n[detector]\nmodel = "{ROOT}/models/yolox_nano.toml"\nprovider = "cpu"\n']
    for i in range(1, args.cameras + 1):
        open(os.path.join(tmp, f"cam{i}.toml"), "w").write(cal)
        site.append(f'[[camera]]\nid = "cam{i}"\nuri = "{ROOT}/tests/data/street_topdown_640x360.mp4"\n'
                    f'calibration = "cam{i}.toml"\nrealtime = true\non_inference_busy = "keep_latest"\n')
    site.append(f'[store]\npath = "j.db"\n[http]\nlisten = "127.0.0.1:{port}"\npassword_hash = "{hashed}"\n')
    open(os.path.join(tmp, "site.toml"), "w").write("".join(site))
    log = open(os.path.join(tmp, "junction.log"), "w")
    run = subprocess.Popen([BIN, "run", "--config", os.path.join(tmp, "site.toml")], stdout=subprocess.DEVNULL, stderr=log,
                           env={**os.environ, "RUST_LOG": "warn"})
    driver = None
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "junction did not start: see " + log.name
                time.sleep(0.2)
        time.sleep(3)  # every camera opened
        without = window(run.pid, args.seconds)

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)
        wait = WebDriverWait(driver, 60, poll_frequency=0.2)
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-submit").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".tile .badge")) == args.cameras)
        # The page's event loop: how late a 50 ms timer fires (a busy page is late).
        driver.execute_script("""
            window.__lags = [];
            let last = performance.now();
            setInterval(() => { const now = performance.now(); window.__lags.push(now - last - 50); last = now; }, 50);
        """)
        with_console = window(run.pid, args.seconds)
        page = driver.execute_script("""
            const lags = window.__lags.slice().sort((a, b) => a - b);
            const q = (p) => lags.length ? lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] : null;
            const snaps = performance.getEntriesByType('resource').filter(e => e.name.includes('/snapshot/')).map(e => e.duration).sort((a, b) => a - b);
            const s = (p) => snaps.length ? snaps[Math.min(snaps.length - 1, Math.floor(p * snaps.length))] : null;
            return {lag_p50_ms: q(0.5), lag_p99_ms: q(0.99), lag_max_ms: lags[lags.length - 1],
                    snapshots_loaded: snaps.length, snapshot_p50_ms: s(0.5), snapshot_p99_ms: s(0.99),
                    tiles_up: document.querySelectorAll('.tile.up').length,
                    events_listed: document.querySelectorAll('#events li').length};
        """)
        t0 = time.time()
        driver.find_element(By.CSS_SELECTOR, ".tile .edit").click()
        wait.until(lambda d: d.execute_script("return document.getElementById('editor-canvas').width") > 0)
        page["editor_open_ms"] = round(1000 * (time.time() - t0))
        page = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in page.items()}
        print(json.dumps({"cameras": args.cameras, "seconds": args.seconds, "without_browser": without,
                          "with_console": with_console, "page": page}))
    finally:
        if driver:
            driver.quit()
        run.terminate()
        try:
            run.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.kill()


if __name__ == "__main__":
    main()
