"""The web page in a real browser: headless Chromium through Selenium, against the real server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from catdog_pl.cli import main
from catdog_pl.data.inputs import expand_inputs
from catdog_pl.inference.predictor import Predictor

from .helpers import CONFIG, QUIET
from .serving import Server, tiny_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytest.importorskip("litserve", reason="the [serve] extra (litserve, python-multipart) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        f"chromium or chromedriver not found ({CHROMIUM}, {CHROMEDRIVER}): apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(server, browser, checkpoint, data, test accuracy) with the page open; the checkpoint is a copy of the tiny
    model that ``python -m catdog_pl test`` has tested."""
    tiny, data = tiny_model(tmp_path_factory)
    root = tmp_path_factory.mktemp("browser")
    checkpoint = root / "model.ckpt"
    checkpoint.write_bytes(tiny.read_bytes())
    cli = main(["test", "--config", str(CONFIG), "--data.data_dir", str(data), "--ckpt_path", str(checkpoint),
                "--trainer.logger", "false", *QUIET])  # fmt: skip
    accuracy = float(cli.trainer.callback_metrics["test/acc"])
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={root / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    with Server("--ckpt_path", str(checkpoint), log=root / "server.log") as server:
        browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
        try:
            browser.get(server.url + "/")
            yield server, browser, checkpoint, data, accuracy
        finally:
            browser.quit()


def results(browser, count: int) -> list:
    """The page's result cards once ``count`` of them have an answer (a label or an error)."""

    def answered(driver):
        cards = driver.find_elements(By.CSS_SELECTOR, "#results .result")
        done = [card for card in cards if card.get_attribute("data-state") in ("done", "error")]
        return done if len(done) >= count else False

    return WebDriverWait(browser, 30).until(answered)


def test_upload_through_the_page_shows_predicts_label(page):
    server, browser, checkpoint, data, _ = page
    photo = expand_inputs(data / "test_set" / "dogs")[0]
    expected = Predictor.from_checkpoint(checkpoint).predict(photo)
    browser.find_element(By.ID, "files").send_keys(photo)
    (card,) = results(browser, 1)
    assert card.get_attribute("data-state") == "done"
    assert card.find_element(By.CLASS_NAME, "label").text == expected.label
    assert card.find_element(By.CLASS_NAME, "name").text == Path(photo).name
    width = card.find_element(By.CLASS_NAME, "fill").value_of_css_property("width")
    assert float(width.removesuffix("px")) > 0  # the confidence bar is drawn
    assert "keras_cnn" in browser.find_element(By.ID, "model").text


def test_several_photos_at_once_each_get_their_answer_or_error(page, tmp_path):
    server, browser, checkpoint, data, _ = page
    photos = expand_inputs(data / "test_set" / "cats")[:2]
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are not pixels")
    before = len(browser.find_elements(By.CSS_SELECTOR, "#results .result"))
    browser.find_element(By.ID, "files").send_keys("\n".join([*photos, str(bad)]))
    cards = results(browser, before + 3)
    by_name = {card.get_attribute("data-file"): card for card in cards}
    expected = {Path(row.path).name: row.label for row in Predictor.from_checkpoint(checkpoint).predict_many(photos)}
    for name, label in expected.items():
        assert by_name[name].find_element(By.CLASS_NAME, "label").text == label
    assert by_name["notes.jpg"].get_attribute("data-state") == "error"
    assert "not an image" in by_name["notes.jpg"].find_element(By.CLASS_NAME, "error").text


def test_the_page_names_the_classes_and_shows_the_tested_accuracy_above_the_drop_zone(page):
    """The title is the model's classes, the model's line the accuracy ``test`` recorded, and the drop zone starts
    below that line (it was an inline box whose padding covered it)."""
    server, browser, _, _, accuracy = page
    model = browser.find_element(By.ID, "model")
    WebDriverWait(browser, 10).until(lambda driver: "test accuracy" in model.text)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Cat or dog?" and browser.title == "catdog_pl: Cat or dog?"
    assert f"test accuracy {100 * accuracy:.1f} %" in model.text and "16 photos of data (test_set)" in model.text
    drop = browser.find_element(By.ID, "drop")
    assert model.rect["y"] + model.rect["height"] <= drop.rect["y"]
