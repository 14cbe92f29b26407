"""The web page at `/`, in a real headless Chromium (Debian `chromium` + `chromium-driver`, driven
by Selenium) against a real uvicorn server: load the page, submit an input, read the predictions."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from tests._deploy_runs import image_run, text_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

# Skipped on a machine without Chromium, never in CI (.ci/run installs it; CI=true there).
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and os.environ.get("CI") != "true",
    reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """uvicorn in a background thread, stopped at exit."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"):  # a fake microphone (a beeping tone), permission granted
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait_text(driver, selector: str, wanted: tuple[str, ...], timeout: float = 30) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, selector).text in wanted)
    return driver.find_element(By.CSS_SELECTOR, selector).text


def _predictions(driver) -> list[tuple[str, str, str]]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#results .pred")
    return [(r.find_element(By.CSS_SELECTOR, ".label").text, r.find_element(By.CSS_SELECTOR, ".score").text,
             r.find_element(By.CSS_SELECTOR, ".fill").get_attribute("style")) for r in rows]  # fmt: skip


def test_upload_an_image_and_read_the_predictions(browser, tmp_path_factory):
    from selenium.webdriver.common.by import By

    from graftkit.deploy.serve import create_app

    run = image_run(tmp_path_factory)
    image = sorted((tmp_path_factory.getbasetemp() / "deploy-runs" / "images" / "dog").glob("*.png"))[0]
    with _Server(create_app(run)) as url:
        browser.get(url)
        assert _wait_text(browser, "#status", ("ready",)) == "ready"
        card = browser.find_element(By.ID, "card").text
        assert "cat" in card and "accuracy" in card and "Model card" in card  # the model card beside the input
        browser.find_element(By.ID, "file").send_keys(str(image))  # what picking a file does
        assert _wait_text(browser, "#status", ("done", "error")) == "done", browser.find_element(By.ID, "error").text
        preds = _predictions(browser)
        assert {label for label, _, _ in preds} == {"cat", "dog", "fox"}
        scores = [float(score.rstrip("%")) for _, score, _ in preds]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 100) < 0.5
        assert all("width" in style for _, _, style in preds)  # probabilities drawn as bars
        assert browser.find_element(By.ID, "preview").get_attribute("src").startswith("blob:")


def test_type_a_text_and_read_the_predictions(browser, tmp_path_factory, tiny_bert_dir):
    from selenium.webdriver.common.by import By

    from graftkit.deploy.serve import create_app

    with _Server(create_app(text_run(tmp_path_factory, tiny_bert_dir))) as url:
        browser.get(url)
        _wait_text(browser, "#status", ("ready",))
        assert browser.find_element(By.ID, "file").is_displayed() is False
        browser.find_element(By.ID, "submit").click()  # empty: refused in the page, nothing sent
        assert "type some text" in browser.find_element(By.ID, "error").text
        browser.find_element(By.ID, "text").send_keys("the movie was very good good")
        browser.find_element(By.ID, "submit").click()
        assert _wait_text(browser, "#status", ("done", "error")) == "done"
        assert {label for label, _, _ in _predictions(browser)} == {"negative", "positive"}


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory) -> Path:
    """A wakehubert_tiny probe on tones (3 pitches), clips up to 2 s, trained once for this module."""
    import graftkit
    from tests.audio_data import make_audio_folder

    base = tmp_path_factory.mktemp("web-audio")
    data = make_audio_folder(base / "tones", per_class=6)
    old = os.environ.get("GRAFTKIT_CACHE")  # the suite's cache isolation is per test; this fixture is per module
    os.environ["GRAFTKIT_CACHE"] = str(base / "cache")
    try:
        return graftkit.fit(data, model="wakehubert_tiny", out=base / "run", epochs=5, batch_size=8, max_seconds=2.0, offline=True).dir
    finally:
        if old is None:
            os.environ.pop("GRAFTKIT_CACHE", None)
        else:
            os.environ["GRAFTKIT_CACHE"] = old


class _Uploads:
    """Records what reaches the server's audio decoder (name and the first bytes of each upload)."""

    def __init__(self, monkeypatch) -> None:
        from graftkit.deploy import serve

        self.seen: list[tuple[str, bytes, int]] = []
        original = serve.decode_audio_upload

        def spy(data, name, sample_rate, max_seconds):
            wave = original(data, name, sample_rate, max_seconds)
            self.seen.append((name, bytes(data[:12]), len(wave)))
            return wave

        monkeypatch.setattr(serve, "decode_audio_upload", spy)


def test_record_from_the_microphone_and_read_the_prediction(browser, audio_run, monkeypatch):
    from selenium.webdriver.common.by import By

    from graftkit.deploy.serve import create_app

    uploads = _Uploads(monkeypatch)
    with _Server(create_app(audio_run)) as url:
        browser.get(url)
        assert _wait_text(browser, "#status", ("ready",)) == "ready"
        assert browser.find_element(By.ID, "audio-input").is_displayed() and not browser.find_element(By.ID, "image-input").is_displayed()
        assert "audio, 16000 Hz mono" in browser.find_element(By.ID, "card").text
        record = browser.find_element(By.ID, "record")
        record.click()
        _wait_text(browser, "#record", ("■ Stop",), timeout=10)
        time.sleep(1.2)  # about a second of the fake microphone's beeps (the page would stop by itself at 2 s)
        assert record.text == "■ Stop"
        record.click()
        assert _wait_text(browser, "#status", ("done", "error"), timeout=60) == "done", browser.find_element(By.ID, "error").text
        assert {label for label, _, _ in _predictions(browser)} == {"low", "mid", "high"}
        assert "→ WAV" in browser.find_element(By.ID, "record-status").text
    assert len(uploads.seen) == 1
    name, head, samples = uploads.seen[0]
    assert name == "recording.wav" and head[:4] == b"RIFF" and head[8:12] == b"WAVE"  # encoded in the page
    assert samples > 16000 * 0.5  # at least half a second of audio reached the model (at 16 kHz)


def test_upload_an_audio_file_and_read_the_prediction(browser, audio_run, monkeypatch, tmp_path):
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from graftkit.deploy.serve import create_app
    from tests.audio_data import tone

    clip = tmp_path / "high.flac"
    sf.write(clip, tone(2400, 0.5), 16000)
    uploads = _Uploads(monkeypatch)
    with _Server(create_app(audio_run)) as url:
        browser.get(url)
        _wait_text(browser, "#status", ("ready",))
        browser.find_element(By.ID, "audio-file").send_keys(str(clip))
        assert _wait_text(browser, "#status", ("done", "error")) == "done", browser.find_element(By.ID, "error").text
        assert _predictions(browser)[0][0] == "high"
        assert browser.find_element(By.ID, "playback").get_attribute("src").startswith("blob:")
    assert [(n, h[:4]) for n, h, _ in uploads.seen] == [("high.flac", b"fLaC")]


def test_a_recording_stops_by_itself_at_the_runs_clip_length(browser, audio_run, monkeypatch):
    from selenium.webdriver.common.by import By

    from graftkit.deploy.serve import create_app

    uploads = _Uploads(monkeypatch)
    with _Server(create_app(audio_run)) as url:
        browser.get(url)
        _wait_text(browser, "#status", ("ready",))
        assert "up to 2 s" in browser.find_element(By.ID, "record-status").text
        browser.find_element(By.ID, "record").click()  # and never stop it
        assert _wait_text(browser, "#status", ("done", "error"), timeout=60) == "done", browser.find_element(By.ID, "error").text
        assert browser.find_element(By.ID, "record").text == "● Record"
    (_, _, samples), = uploads.seen
    assert 16000 * 1.0 < samples <= 16000 * 2.6  # about the run's 2 s (MediaRecorder stops a little late)
