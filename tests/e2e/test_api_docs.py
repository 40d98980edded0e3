"""The new user's first walk, in a real browser: open the API docs, authorise with a token, upload a MIDI file,
and download its rendered audio."""

import json

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from cueledger.celery import app as celery_app
from library.models import Cue
from tests.factories import midi_sketch, user_in_role


@pytest.fixture
def render_inline():
    """No worker runs beside the live server here, so rendering runs in the request (the worker path is covered by
    the integration tests and the `make run` test)."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def css(driver, selector: str, timeout: float = 20):
    return WebDriverWait(driver, timeout).until(ready.element_to_be_clickable((By.CSS_SELECTOR, selector)))


def test_upload_through_the_docs_page_and_download_the_audio(
    browser, live_server, transactional_db, tmp_path, render_inline
):
    producer = user_in_role("producer")
    midi = tmp_path / "opening.mid"
    midi.write_bytes(midi_sketch(bars=4, drums=True))

    browser.get(f"{live_server.url}/api/docs/")
    WebDriverWait(browser, 30).until(
        ready.text_to_be_present_in_element((By.CSS_SELECTOR, ".info .title"), "Cueledger API")
    )

    css(browser, "button.authorize").click()
    token_scheme = "//div[contains(@class, 'auth-container')][.//h4[contains(., 'tokenAuth')]]"
    WebDriverWait(browser, 10).until(ready.element_to_be_clickable((By.XPATH, f"{token_scheme}//input")))
    browser.find_element(By.XPATH, f"{token_scheme}//input").send_keys(f"Token {producer.api_token}")
    browser.find_element(By.XPATH, f"{token_scheme}//button[contains(@class, 'authorize')]").click()
    css(browser, ".modal-ux button.btn-done").click()

    operation = css(browser, "#operations-cues-cues_create")
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
    css(browser, "#operations-cues-cues_create .try-out__btn").click()
    css(browser, "#operations-cues-cues_create input[type=file]", timeout=10)
    browser.find_element(By.CSS_SELECTOR, "#operations-cues-cues_create input[type=file]").send_keys(str(midi))
    title = browser.find_element(By.CSS_SELECTOR, '#operations-cues-cues_create tr[data-property-name="title"] input')
    title.clear()
    title.send_keys("Opening titles")
    css(browser, "#operations-cues-cues_create button.execute").click()

    result = "#operations-cues-cues_create .live-responses-table tr.response"
    status = css(browser, f"{result} .response-col_status")
    assert status.text.split()[0] == "201", repr(status.text)
    body_text = browser.find_element(By.CSS_SELECTOR, f"{result} .response-col_description pre").text
    created = json.loads(body_text)
    assert created["title"] == "Opening titles"
    cue = Cue.objects.get(pk=created["id"])
    assert cue.created_by == producer and cue.status == Cue.Status.READY

    download = browser.execute_async_script(
        """
        const [url, token, done] = arguments;
        fetch(url, {headers: {Authorization: token}}).then(async (response) => {
            const bytes = new Uint8Array(await response.arrayBuffer());
            done({status: response.status, type: response.headers.get("Content-Type"), size: bytes.length,
                  sha256: response.headers.get("ETag")});
        }).catch((error) => done({error: String(error)}));
        """,
        f"{live_server.url}/api/v1/cues/{cue.pk}/audio/?format=flac",
        f"Token {producer.api_token}",
    )
    assert download == {"status": 200, "type": "audio/flac", "size": cue.audio.size, "sha256": f'"{cue.audio_id}"'}
