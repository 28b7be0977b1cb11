"""The search page in headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by selenium):
type a Russian query, see highlighted results, open the article with the passage marked.
Saves benchmarks/results/serve_page.png and serve_article.png (shown in the README)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed: pip install 'ragkit[server]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install 'ragkit[browser-test]'")

from serve_process import serving  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "benchmarks" / "results"


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"{' / '.join(names)} not found: install Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chrome, driver_path = _binary("chromium", "chromium-browser"), _binary("chromedriver")
    profile = tempfile.mkdtemp(prefix="ragkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1280,900", "--lang=ru-RU"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_search_page_in_chromium(browser, news_index):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with serving("--index", str(news_index)) as url:
        browser.get(url + "/")
        assert browser.title.startswith("Поиск по архиву")
        box = browser.find_element(By.NAME, "q")
        box.send_keys("технопарки Москвы")
        box.send_keys(Keys.ENTER)
        WebDriverWait(browser, 30).until(lambda d: "q=" in d.current_url)
        results = browser.find_elements(By.CSS_SELECTOR, "li.result")
        assert results, browser.page_source[:2000]
        first = results[0]
        assert first.find_element(By.CSS_SELECTOR, "h2 a").text == "Технопарки Москвы расширяются"
        assert first.find_element(By.CSS_SELECTOR, ".date").text == "2025-10-22"
        assert first.find_element(By.CSS_SELECTOR, ".score").text.startswith("оценка ")
        marks = {m.text.lower() for m in browser.find_elements(By.CSS_SELECTOR, ".passage mark")}
        assert {"технопарки", "москвы"} <= marks, marks
        assert "Найдено фрагментов" in browser.find_element(By.CSS_SELECTOR, ".summary").text
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / "serve_page.png"))

        # the dense mode and a date filter work from the form too
        browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=dense]").click()
        browser.find_element(By.NAME, "since").send_keys("2025-01-01")  # ISO dates, whatever the browser's locale
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 30).until(lambda d: "mode=dense" in d.current_url)
        assert "since=2025-01-01" in browser.current_url
        assert browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=dense]").is_selected()
        dates = [d.text for d in browser.find_elements(By.CSS_SELECTOR, "li.result .date")]
        assert dates and all(d >= "2025-01-01" for d in dates), dates

        box = browser.find_element(By.NAME, "q")
        box.clear()
        box.send_keys("Центр коллективного использования")
        browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=hybrid]").click()
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(browser, 30).until(lambda d: "mode=hybrid" in d.current_url)
        browser.find_element(By.CSS_SELECTOR, "li.result h2 a").click()
        WebDriverWait(browser, 30).until(lambda d: "/view/" in d.current_url)
        span = browser.find_element(By.CSS_SELECTOR, "#passage.span")
        article = browser.find_element(By.CSS_SELECTOR, "article .text").text
        assert span.text.startswith("Директор по внешним коммуникациям") or "Центр коллективного" in span.text, span.text
        assert span.text in article and len(article) > len(span.text) + 1000  # the whole article, the passage marked
        marked = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#passage mark")]
        assert "Центр" in marked and "коллективного" in marked, marked
        browser.save_screenshot(str(SHOTS / "serve_article.png"))

        browser.set_window_size(390, 844)  # a phone
        browser.get(url + "/?q=" + "ключевая ставка")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px screen"
        browser.save_screenshot(str(SHOTS / "serve_phone.png"))
