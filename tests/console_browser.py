"""The console in a real headless browser: Debian's Chromium driven by Selenium through Debian's
chromedriver (given by path, so Selenium never downloads a driver)."""

import os
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# a laptop's screen
WINDOW = (1366, 900)
WAIT_S = 60.0


def chromium_installed() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def chromium(window: tuple[int, int] = WINDOW) -> webdriver.Chrome:
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={window[0]},{window[1]}", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(service=ChromeService(executable_path=str(CHROMEDRIVER)), options=options)


class Console:
    """One browser tab on a server's console."""

    def __init__(self, driver: webdriver.Chrome, base_url: str):
        self.driver, self.base_url = driver, base_url

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def sign_in(self, key: str) -> None:
        """Sign in on the page open now, as the user of `key`."""
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.refresh()
        field = self.wait(lambda d: _shown(d, "#api-key"))
        field.send_keys(key)
        self.driver.find_element(By.CSS_SELECTOR, "#signin button[type=submit]").click()
        self.wait(lambda d: _shown(d, "#content"))

    def wait(self, condition, timeout: float = WAIT_S):
        """`condition(driver)` once it is truthy; the pages re-render their tables as they poll, so
        an element found a moment ago may be gone: then it is asked again."""
        ignored = (StaleElementReferenceException, NoSuchElementException)
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2, ignored_exceptions=ignored).until(condition)

    def click(self, selector: str, by: str = By.CSS_SELECTOR) -> None:
        """Click the element once it is there (found afresh if a re-render replaced it)."""

        def clicked(driver) -> bool:
            driver.find_element(by, selector).click()
            return True

        self.wait(clicked)

    def curve_points(self, metric: str) -> int:
        """How many points the metric's chart draws (its polylines' vertices)."""
        return self.driver.execute_script(
            """const figure = [...document.querySelectorAll('#charts figure')].find(f => f.dataset.metric === arguments[0]);
               if (!figure) return 0;
               return [...figure.querySelectorAll('polyline')]
                 .reduce((n, line) => n + line.getAttribute('points').trim().split(/\\s+/).length, 0);""",
            metric,
        )

    def texts(self, selector: str) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, selector)]


def _shown(driver, selector: str):
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found[0] if found and found[0].is_displayed() else None
