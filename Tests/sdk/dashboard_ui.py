"""Drives the web dashboard (/ui) in Debian's headless Chromium against a live broker.

Env: SPOOL_URL (broker base URL), SPOOL_ADMIN_KEY (an admin+client key), SPOOL_WORKER (the
spool-worker executable), SPOOL_HANDLER (dashboard_handler.py), SPOOL_SCREENSHOTS (a directory for
PNGs), SPOOL_BULK_MODEL (a model pre-filled with many done jobs), SPOOL_OPEN_URL (optional: a broker
with no keys). Jobs are submitted and checked
with the real `together` SDK. Prints one line per step and `DASHBOARD OK` at the end; any failed
check raises (non-zero exit). Every wait polls DOM or API state with a timeout; no sleep stands in
for a state.
"""
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from urllib.parse import quote

import together
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

URL = os.environ["SPOOL_URL"].rstrip("/")
KEY = os.environ["SPOOL_ADMIN_KEY"]
WORKER = os.environ["SPOOL_WORKER"]
HANDLER = os.environ["SPOOL_HANDLER"]
SHOTS = os.environ["SPOOL_SCREENSHOTS"]
BULK = os.environ["SPOOL_BULK_MODEL"]
# An open loopback broker (no keys), when the test gives one.
OPEN_URL = os.environ.get("SPOOL_OPEN_URL", "").rstrip("/")
DEMO = "ui/demo"
IDLE = "ui/idle"
TERMINAL = {"done", "failed", "canceled"}

os.makedirs(SHOTS, exist_ok=True)
workdir = tempfile.mkdtemp(prefix="spool-dashboard-")
downloads = os.path.join(workdir, "downloads")
os.makedirs(downloads)

# The together SDK's paths carry /v1 themselves, so its base URL is the broker's root.
client = together.Together(api_key=KEY, base_url=URL, max_retries=2)
queue = client.beta.jig.queue


def step(message):
    print(message, flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------- browser

def start_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--hide-scrollbars", "--no-first-run", "--disable-extensions"]:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    # Screenshots are of the viewport: grow the window by its frame so the viewport is 1280x900.
    driver.set_window_size(1280, 900)
    frame = driver.execute_script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];")
    driver.set_window_size(1280 + frame[0], 900 + frame[1])
    # Downloads (a Blob URL clicked through <a download>) land in our directory.
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return driver


def wait(driver, condition, description, timeout=30):
    """Polls `condition()` (re-finding elements each time) until it is truthy; returns its value."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
                             ).until(lambda _: condition())
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {description}") from None


def poll(condition, description, timeout=60, interval=0.2):
    """The same for API state (the SDK), outside the browser."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {description} (last: {last!r})")


def testid(driver, name, root=None):
    return (root or driver).find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def model_stat(driver, model, name):
    """The text of a model card's stat (waiting-count, running-count, live-workers), or None."""
    return js(driver, """
        const row = document.querySelector('[data-testid="model-row"][data-model="' + CSS.escape(arguments[0]) + '"]');
        const cell = row && row.querySelector('[data-testid="' + arguments[1] + '"]');
        return cell ? cell.textContent.trim() : null;""", model, name)


def job_state(driver):
    """What the job page shows right now: status, progress fraction, number of log lines."""
    return js(driver, """
        const page = document.querySelector('[data-testid="job-page"]');
        if (!page) return null;
        const bar = page.querySelector('[data-testid="job-progress"]');
        return {status: page.dataset.status, progress: bar ? parseFloat(bar.dataset.value) : null,
                logs: page.querySelectorAll('[data-testid="log-line"]').length,
                marker: window.__dashboardMarker || null};""")


def go(driver, hash_path):
    """In-app navigation (a hash change, as a click on a link would do): no reload."""
    js(driver, "location.hash = arguments[0];", hash_path)


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, name))


def page_fits(driver):
    width, inner = js(driver, "return [document.documentElement.scrollWidth, window.innerWidth];")
    return width <= inner, width, inner


def click(driver, name, root=None):
    element = wait(driver, lambda: next((e for e in testid(driver, name, root) if e.is_displayed() and e.is_enabled()), None),
                   f"a visible, enabled {name}")
    element.click()


def confirm(driver):
    click(driver, "confirm-ok")
    wait(driver, lambda: not js(driver, "return document.getElementById('confirm').open;"), "the dialog to close")


def console_problems(driver):
    """CSP refusals and uncaught script errors from the browser's console."""
    problems = []
    for entry in driver.get_log("browser"):
        message = entry.get("message", "")
        if "Content Security Policy" in message or "Refused to" in message or "Uncaught" in message:
            problems.append(message)
    return problems


def job_hash(model, request_id):
    return f"#/job/{quote(model, safe='')}/{request_id}"


# ---------------------------------------------------------------- worker

def start_worker():
    command = [WORKER, "--broker", URL, "--api-key", KEY, "--model", DEMO, "--concurrency", "2",
               "--exec", f"{shlex.quote(sys.executable)} {shlex.quote(HANDLER)}"]
    log = open(os.path.join(workdir, "worker.log"), "wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(process):
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ---------------------------------------------------------------- the steps

def run(driver):
    global worker
    # A rerun on the same broker starts from empty queues for the models this script owns.
    queue.clear(model=DEMO)
    queue.clear(model=IDLE)

    # a. No key: the login form, and no data.
    driver.get(URL + "/ui")
    wait(driver, lambda: testid(driver, "login-form"), "the login form")
    check(not testid(driver, "model-row"), "no model row is shown before signing in")
    shot(driver, "login.png")
    testid(driver, "login-key")[0].send_keys("not-a-key-0123456789")
    testid(driver, "login-submit")[0].click()
    wait(driver, lambda: "not accepted" in testid(driver, "login-form")[0].text, "a wrong key to be refused")
    check(not testid(driver, "model-row") and js(driver, "return sessionStorage.length") == 0, "a wrong key is not kept")
    step("a. login: the form is shown with no key, no data; a wrong key is refused")

    # b. Sign in; six jobs wait; a worker drains them.
    field = testid(driver, "login-key")[0]
    field.clear()
    field.send_keys(KEY)
    testid(driver, "login-submit")[0].click()
    wait(driver, lambda: testid(driver, "overview"), "the overview")
    storage = js(driver, "return [sessionStorage.getItem('spool.apiKey'), localStorage.length, document.cookie, location.href];")
    check(storage[0] == KEY and storage[1] == 0 and storage[2] == "" and KEY not in storage[3],
          "the key is in sessionStorage only (not localStorage, a cookie or the URL)")
    ids = [queue.submit(model=DEMO, payload={"n": i}).request_id for i in range(6)]
    check(len(set(ids)) == 6, "six jobs submitted")
    wait(driver, lambda: model_stat(driver, DEMO, "waiting-count") == "6", "ui/demo's waiting count to reach 6")
    shot(driver, "overview.png")
    worker = start_worker()
    wait(driver, lambda: model_stat(driver, DEMO, "waiting-count") == "0"
         and int(model_stat(driver, DEMO, "live-workers") or 0) >= 1,
         "ui/demo's waiting count to drop to 0 with a live worker", timeout=60)
    poll(lambda: all(queue.retrieve(model=DEMO, request_id=i).status == "done" for i in ids), "the six jobs to be done")
    step("b. overview: waiting reached 6, then 0 with %s live worker(s) once spool-worker started"
         % model_stat(driver, DEMO, "live-workers"))

    # c. Progress and logs arrive live on the job page.
    slow = queue.submit(model=DEMO, payload={"steps": 10, "seconds": 8}).request_id
    go(driver, job_hash(DEMO, slow))
    js(driver, "window.__dashboardMarker = 'no reload';")  # gone if the page reloads
    wait(driver, lambda: (job_state(driver) or {}).get("status") in {"pending", "running"}, "the job page")
    # Every change the page makes is recorded in the page itself, so none is missed between polls.
    js(driver, """
        window.__jobHistory = [];
        const page = document.querySelector('[data-testid="job-page"]');
        const record = () => {
          const bar = page.querySelector('[data-testid="job-progress"]');
          const now = {status: page.dataset.status, progress: parseFloat(bar.dataset.value),
                       logs: page.querySelectorAll('[data-testid="log-line"]').length};
          const last = window.__jobHistory[window.__jobHistory.length - 1];
          if (!last || last.status !== now.status || last.progress !== now.progress || last.logs !== now.logs) window.__jobHistory.push(now);
        };
        record();
        new MutationObserver(record).observe(page, {subtree: true, childList: true, attributes: true});""")
    wait(driver, lambda: (lambda s: s["status"] == "running" and s["progress"] >= 0.3)(job_state(driver)), "progress past 0.3", timeout=60)
    shot(driver, "job.png")
    wait(driver, lambda: job_state(driver)["status"] in TERMINAL, "the job to end", timeout=60)
    state = job_state(driver)
    history = js(driver, "return window.__jobHistory;")
    running = [h for h in history if h["status"] == "running"]
    progress_seen = [p for i, p in enumerate(h["progress"] for h in running) if i == 0 or p != running[i - 1]["progress"]]
    log_counts = [n for i, n in enumerate(h["logs"] for h in running) if i == 0 or n != running[i - 1]["logs"]]
    increases = sum(1 for a, b in zip(progress_seen, progress_seen[1:]) if b > a)
    check(state["status"] == "done", f"the job ended done, not {state['status']}")
    check(state["marker"] == "no reload", "the page was not reloaded")
    check(increases >= 2, f"the progress bar rose at least twice while running (saw {progress_seen})")
    check(len(log_counts) >= 2 and log_counts[-1] > log_counts[0], f"log lines were added while running (saw {log_counts})")
    wait(driver, lambda: job_state(driver)["progress"] == 1.0, "the progress bar to end at 1.0")
    wait(driver, lambda: testid(driver, "file-preview"), "the image output's preview", timeout=15)
    step(f"c. job page: progress went {progress_seen} and log lines {log_counts} live; ended done at 1.0")

    # d. Cancel a pending job from its page; the workers page warns about the idle model.
    idle = queue.submit(model=IDLE, payload={"n": 1}).request_id
    go(driver, job_hash(IDLE, idle))
    wait(driver, lambda: (job_state(driver) or {}).get("status") == "pending", "the idle job's page to show pending")
    click(driver, "job-cancel")
    confirm(driver)
    wait(driver, lambda: any(e.is_displayed() for e in testid(driver, "action-result")), "the action's result")
    poll(lambda: queue.retrieve(model=IDLE, request_id=idle).status == "canceled", "the SDK to see the job canceled", timeout=15)
    wait(driver, lambda: job_state(driver)["status"] == "canceled", "the page to show canceled")
    result = testid(driver, "action-result")[0].text
    queue.submit(model=IDLE, payload={"n": 2})
    go(driver, "#/workers")
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f'[data-testid="no-worker-warning"][data-model="{IDLE}"]'),
         "the no-worker warning for ui/idle", timeout=30)
    wait(driver, lambda: js(driver, "return document.querySelectorAll('[data-testid=\"worker-row\"][data-live=\"true\"]').length") >= 1,
         "a live worker row")
    shot(driver, "workers.png")
    step(f"d. cancel: confirmed in the dialog ({result!r}); the SDK sees canceled; workers page warns about {IDLE}")

    # e. Requeue a failed job; its second attempt succeeds and the retry history shows the first.
    flaky = queue.submit(model=DEMO, payload={"fail_first": True}).request_id
    poll(lambda: queue.retrieve(model=DEMO, request_id=flaky).status == "failed", "the flaky job to fail", timeout=60)
    go(driver, job_hash(DEMO, flaky))
    wait(driver, lambda: (job_state(driver) or {}).get("status") == "failed", "the page to show failed")
    check(testid(driver, "job-error") and "simulated failure" in testid(driver, "job-error")[0].text, "the page shows the error")
    check(not testid(driver, "job-cancel")[0].is_displayed(), "no cancel for a failed job")
    click(driver, "job-requeue")
    confirm(driver)
    wait(driver, lambda: "Requeued" in testid(driver, "action-result")[0].text, "the requeue's result")
    wait(driver, lambda: job_state(driver)["status"] == "done", "the requeued job to end done, live", timeout=60)
    wait(driver, lambda: testid(driver, "retry-row"), "the retry history entry", timeout=10)
    retried = queue.retrieve(model=DEMO, request_id=flaky)
    check(retried.status == "done", "the SDK sees the requeued job done")
    step(f"e. requeue: failed → requeued → done; retry history rows: {len(testid(driver, 'retry-row'))}")

    # f. Paging through the bulk model, 30 times "Older ›".
    go(driver, "#/jobs?" + f"model={quote(BULK, safe='')}")

    def table_state():
        return js(driver, """
            const t = document.querySelector('[data-testid="jobs-table"]');
            if (!t) return null;
            return {page: t.dataset.page, state: t.dataset.state, ms: Number(t.dataset.ms || 0),
                    ids: Array.from(t.querySelectorAll('[data-testid="job-row"]')).map(r => r.dataset.requestId),
                    models: Array.from(new Set(Array.from(t.querySelectorAll('[data-testid="job-row"]')).map(r => r.children[1].textContent)))};""")

    first = wait(driver, lambda: (lambda s: s if s and s["state"] == "ready" and s["page"] == "0" else None)(table_state()),
                 "the first page of jobs")
    check(testid(driver, "jobs-filter-model")[0].get_attribute("value") == BULK, "the model filter comes from the hash")
    check(first["ids"] and first["models"] == [BULK], f"page 1 holds {BULK}'s jobs only")
    pages = [first["ids"]]
    seen = set(first["ids"])
    browser_ms, wall_ms = [first["ms"]], []
    for number in range(1, 31):
        started = time.perf_counter()
        click(driver, "jobs-next")
        state = wait(driver, lambda: (lambda s: s if s and s["state"] == "ready" and s["page"] == str(number) else None)(table_state()),
                     f"page {number + 1}")
        wall_ms.append((time.perf_counter() - started) * 1000)
        browser_ms.append(state["ms"])
        check(len(state["ids"]) == len(set(state["ids"])), f"page {number + 1} repeats no id")
        check(not set(state["ids"]) & set(pages[-1]), f"page {number + 1} shares no id with page {number}")
        check(not set(state["ids"]) & seen, f"page {number + 1} repeats no id of an earlier page")
        check(state["models"] in ([BULK], []), f"page {number + 1} holds {BULK}'s jobs only")
        seen.update(state["ids"])
        pages.append(state["ids"])
    shot(driver, "jobs.png")
    click(driver, "jobs-prev")
    back = wait(driver, lambda: (lambda s: s if s and s["state"] == "ready" and s["page"] == "29" else None)(table_state()),
                "‹ Newer back to page 30")
    check(back["ids"] == pages[29], "‹ Newer shows the previous page again")
    step("f. paging: 31 pages of %s, %d distinct jobs; request to drawn (in the page) median %.0f ms, max %.0f ms; "
         "click to seen by the test median %.0f ms, max %.0f ms" % (BULK, len(seen), statistics.median(browser_ms), max(browser_ms),
                                                        statistics.median(wall_ms), max(wall_ms)))

    # g. A batch of two lines, through the SDK; its pages show it and download its output.
    path = os.path.join(workdir, "ui-batch.jsonl")
    with open(path, "w") as f:
        for i in range(2):
            f.write(json.dumps({"custom_id": f"ui-{i}", "body": {"model": DEMO, "payload": {"n": i, "text": f"line {i}"}}}) + "\n")
    uploaded = client.files.upload(path, purpose="batch-api")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/queue/submit", completion_window="1h").job
    final = poll(lambda: (lambda b: b if b.status in {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"} else None)(
        client.batches.retrieve(batch.id)), "the batch to end", timeout=90)
    check(final.status == "COMPLETED", f"the batch completed ({final.status})")
    go(driver, "#/batches")
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f'[data-testid="batch-row"][data-batch-id="{batch.id}"][data-status="COMPLETED"]'),
         "the batch's row, COMPLETED")
    shot(driver, "batches.png")
    driver.find_element(By.CSS_SELECTOR, f'[data-testid="batch-row"][data-batch-id="{batch.id}"] a').click()
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '[data-testid="batch-page"][data-status="COMPLETED"]'), "the batch page")
    wait(driver, lambda: js(driver, "return document.querySelector('[data-testid=\"batch-progress\"]').dataset.value") == "1",
         "the batch's progress bar full")
    click(driver, "batch-download-output")
    output = os.path.join(downloads, f"{batch.id}-output.jsonl")
    poll(lambda: os.path.exists(output) and not os.path.exists(output + ".crdownload"), "the output file's download", timeout=20)
    lines = [json.loads(line) for line in open(output).read().splitlines()]
    check(sorted(line["custom_id"] for line in lines) == ["ui-0", "ui-1"], f"the downloaded output has both lines ({lines})")
    shot(driver, "batch.png")
    step(f"g. batches: {batch.id} COMPLETED in the list and its page; the output file downloaded through a Blob URL")

    # h. Phone width: nothing overflows the page.
    driver.set_window_size(390, 844)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    driver.get(URL + "/ui#/overview")
    wait(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f'[data-testid="model-row"][data-model="{DEMO}"]'), "the overview at phone width")
    fits, width, inner = page_fits(driver)
    check(inner <= 400, f"the viewport is phone width ({inner})")
    check(fits, f"the overview fits a phone ({width} > {inner})")
    shot(driver, "overview-phone.png")
    go(driver, job_hash(DEMO, slow))
    wait(driver, lambda: (job_state(driver) or {}).get("status") == "done" and testid(driver, "file-preview"), "the job page at phone width")
    fits, width, inner = page_fits(driver)
    check(fits, f"the job page fits a phone ({width} > {inner})")
    shot(driver, "job-phone.png")
    for extra in ["#/jobs?" + f"model={quote(BULK, safe='')}", "#/workers", f"#/batch/{batch.id}"]:
        go(driver, extra)
        wait(driver, lambda: js(driver, "return !!document.querySelector('[data-testid$=\"-table\"] tbody tr, [data-testid=\"batch-page\"][data-status=\"COMPLETED\"]')"),
             f"{extra} at phone width")
        fits, width, inner = page_fits(driver)
        check(fits, f"{extra} fits a phone ({width} > {inner})")
    step(f"h. phone: overview, job, jobs, workers and batch pages fit {inner} px (scrollWidth {width})")

    # i. Sign out forgets the key; a key that stops working (401) sends the page back to the login.
    click(driver, "sign-out")
    wait(driver, lambda: testid(driver, "login-form"), "the login form after signing out")
    check(js(driver, "return sessionStorage.length") == 0 and not testid(driver, "model-row"), "signing out forgets the key and the data")
    js(driver, "sessionStorage.setItem('spool.apiKey', 'revoked-key-0123456789'); location.hash = '#/workers';")
    wait(driver, lambda: testid(driver, "login-form") and js(driver, "return sessionStorage.length") == 0,
         "a refused key to be dropped and the login shown")
    step("i. sign out: the key is forgotten; a key answered 401 is dropped and the login form shown")

    # j. An open loopback broker (no keys): the page works without one, its POSTs (Origin: the
    # broker's own loopback address) pass the open broker's cross-site guard.
    if OPEN_URL:
        import urllib.request
        submit = urllib.request.Request(
            OPEN_URL + "/v1/queue/submit", data=json.dumps({"model": "ui/open", "payload": {}}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        for _ in range(2):
            urllib.request.urlopen(submit).read()
        driver.get(OPEN_URL + "/ui#/overview")
        wait(driver, lambda: model_stat(driver, "ui/open", "waiting-count") == "2", "the open broker's overview without a key")
        check(not testid(driver, "login-form") and js(driver, "return sessionStorage.length") == 0, "no login and no key on an open broker")
        row = driver.find_element(By.CSS_SELECTOR, '[data-testid="model-row"][data-model="ui/open"]')
        click(driver, "clear-queue", row)
        confirm(driver)
        # The model has nothing left (no job, no worker, no history): its card goes.
        wait(driver, lambda: model_stat(driver, "ui/open", "waiting-count") in (None, "0")
             and "2 pending jobs canceled" in " ".join(e.text for e in testid(driver, "action-result")),
             "the open broker's queue to be cleared from the page")
        step("j. open broker: the overview needs no key, and clearing a queue from the page works")

    problems = console_problems(driver)
    check(not problems, f"no CSP refusals or script errors in the console: {problems}")


worker = None
driver = start_browser()
try:
    run(driver)
except BaseException:
    try:
        shot(driver, "failure.png")
        print("console:", *[e.get("message") for e in driver.get_log("browser")][-20:], sep="\n  ", file=sys.stderr)
    except Exception:
        pass
    log = os.path.join(workdir, "worker.log")
    if os.path.exists(log):
        print("worker log (tail):", open(log, errors="replace").read()[-3000:], sep="\n", file=sys.stderr)
    raise
finally:
    stop_worker(worker)
    driver.quit()
    shutil.rmtree(workdir, ignore_errors=True)
print("DASHBOARD OK")
