"""The course server in a real browser (Chromium driven by Selenium, headless) with the real
grading cluster: a student logs in with a token, uploads hw1's reference solution with the
form and reads the feedback; the instructor opens the class dashboard. Screenshots go to
build/server-screenshots/ (not committed). Skipped, with the reason, where chromium or
chromedriver is not installed (make system-deps installs them as root on Debian)."""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="no server extra (pip install -e .[server])")
pytest.importorskip("selenium", reason="no selenium (pip install -e .[test])")

from autograder.engine.paths import REPO_ROOT  # noqa: E402
from autograder.server.app import create_app  # noqa: E402
from autograder.server.cli import issue  # noqa: E402
from autograder.server.config import ServerConfig  # noqa: E402
from autograder.tests.server_helpers import LiveServer, write_course  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="chromium and chromedriver are not installed (apt-get install chromium "
    "chromium-driver, or make system-deps as root)",
)
SHOTS = REPO_ROOT / "build" / "server-screenshots"


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,1100")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def click_and_wait(driver, element_id):
    """Clicks the button ``element_id`` and waits until the page it leads to has loaded: a
    click returns as soon as it is dispatched, and reading the page before the form's answer
    arrives finds the old one (a race that failed this test on a busy machine)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()
    wait = WebDriverWait(driver, 60)
    wait.until(expected_conditions.staleness_of(old_page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def log_in(driver, url, token):
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{url}/login")
    driver.find_element(By.ID, "token").send_keys(token)
    click_and_wait(driver, "login")


def test_student_submits_and_reads_feedback_instructor_sees_the_class(hw1, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    units = list(hw1.points)
    withheld = units[-1]  # shown after the due date by the course's override
    extra = f'\n[homeworks.hw1.visibility]\n{withheld} = "after_due_date"\n'
    course = write_course(tmp_path / "course", extra=extra)
    config = ServerConfig(course_path=course, data_dir=tmp_path / "data", workers=1)
    tokens = {user: token for user, _, token in issue(config, tmp_path / "tokens.csv")}
    archive = tmp_path / "hw1-submission.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in hw1.accept:
            handle.writestr(path, hw1.reference[path])
    SHOTS.mkdir(parents=True, exist_ok=True)

    with LiveServer(create_app(config, log=lambda m: None)) as live:
        log_in(browser, live.url, "not a token")
        assert "unknown token" in browser.find_element(By.ID, "error").text

        log_in(browser, live.url, tokens["s1"])
        assert browser.current_url.endswith("/me")
        assert "s1 (student)" in browser.find_element(By.ID, "who").text
        Select(browser.find_element(By.ID, "homework")).select_by_value("hw1")
        browser.find_element(By.ID, "file").send_keys(str(archive))
        click_and_wait(browser, "send")
        assert "/submissions/" in browser.current_url
        deadline = time.monotonic() + 420
        while "done" not in browser.find_element(By.ID, "state").text:
            assert "failed" not in browser.find_element(By.ID, "state").text
            assert time.monotonic() < deadline, "not graded in time"
            time.sleep(2)  # the page reloads itself every 3 s while grading
            browser.refresh()
        rows = browser.find_elements(By.CSS_SELECTOR, "#units tr")[1:]
        shown = {r.find_elements(By.TAG_NAME, "td")[0].text: r.text for r in rows}
        assert set(shown) == set(units)
        for unit, points in hw1.points.items():
            if unit == withheld:
                assert "shown after the due date" in shown[unit]
            else:
                assert f"{points:g} / {points:g}" in shown[unit], shown[unit]
        assert "not shown yet" in browser.find_element(By.ID, "total").text
        browser.save_screenshot(str(SHOTS / "student-feedback.png"))
        browser.get(f"{live.url}/me")
        assert "done" in browser.find_element(By.ID, "submissions").text
        browser.save_screenshot(str(SHOTS / "student-submissions.png"))

        log_in(browser, live.url, tokens["prof"])
        assert browser.current_url.endswith("/dashboard")
        table = browser.find_element(By.ID, "class").text
        assert "Ada Student" in table and "Bob <b>Student</b>" in table  # shown as text
        assert f"{hw1.max_score:g} / {hw1.max_score:g}" in table  # the instructor sees all
        assert browser.find_elements(By.CSS_SELECTOR, "#hw-hw1 svg rect")
        browser.save_screenshot(str(SHOTS / "instructor-dashboard.png"))
    assert all((SHOTS / n).stat().st_size > 10_000 for n in ("student-feedback.png",))
    assert Path(SHOTS / "instructor-dashboard.png").is_file()
