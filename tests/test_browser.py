"""The browser page of `asr serve` (asr/server/page/), driven in Debian's Chromium by Playwright against the real
server on 127.0.0.1: live transcription from a fake microphone that plays a real recording, file upload with the
word table and a subtitle download, the recorder worklet's resampling, and no script errors. Offline; skipped
where Chromium or Playwright is missing (.ci/run installs Chromium).

Set ASR_SCREENSHOT=1 to rewrite docs/serving-page.png from the page as these tests leave it; otherwise the
screenshot goes to the test's temporary folder, so that a test run does not change the checkout."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from asr.catalog import models_dir

sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install playwright)")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "english-dev-example.wav"
SCREENSHOT = REPO / "docs" / "serving-page.png"
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)"),
    pytest.mark.skipif(not (models_dir() / "english" / "model.pt").is_file(), reason="needs the bundled english model"),
]

TRANSCRIPT = "document.getElementById('transcript').dataset"
SHOWN_FINALS = "[...document.querySelectorAll('#finals li')].map(li => li.dataset.text).filter(t => t).join(' ')"


@pytest.fixture(scope="module")
def transcriber():
    from asr.transcribe import Transcriber

    return Transcriber.load("english")


@pytest.fixture(scope="module")
def server_url(transcriber):
    """The real app, page included, under uvicorn on a free port of 127.0.0.1, in a background thread."""
    from asr.server.app import create_app, running
    from asr.server.page import add_page
    from asr.server.settings import ServerSettings

    app = create_app(transcriber, ServerSettings())
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        add_page(app)
    with running(app) as port:
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def browser_page(server_url):
    """(page, script errors so far): Chromium with a fake microphone that plays the example once, in real time,
    then silence; the page's console errors and uncaught exceptions are collected for the last test."""
    # Chromium's fake capture reads a 16-bit PCM WAV, which the example is.
    assert soundfile.info(EXAMPLE).subtype == "PCM_16"
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={EXAMPLE}%noloop", "--no-sandbox", "--disable-gpu",
            "--autoplay-policy=no-user-gesture-required"]
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        page.goto(server_url)
        page.wait_for_selector("body[data-ready]")
        yield page, errors
        browser.close()


def _screenshot(page, tmp_path: Path) -> None:
    path = SCREENSHOT if os.environ.get("ASR_SCREENSHOT") == "1" else tmp_path / SCREENSHOT.name
    page.screenshot(path=path, full_page=True)
    assert path.stat().st_size > 10_000


def test_live_transcription_from_the_microphone(browser_page, transcriber, tmp_path):
    import jiwer

    from asr.server.app import stream_factory
    from asr.server.settings import ServerSettings
    from asr.server.streams import samples

    page, _ = browser_page
    sent: list[bytes] = []  # the binary messages the page sends, as Chromium's DevTools report them
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)
                                          if isinstance(payload, bytes) else None))
    duration = soundfile.info(EXAMPLE).duration
    started = time.monotonic()
    page.click("#record")
    page.wait_for_function(f"Number({TRANSCRIPT}.partials) > 0", timeout=60_000)
    page.wait_for_function(f"Number({TRANSCRIPT}.finals) > 0", timeout=60_000)
    page.wait_for_timeout(max(0.0, duration + 1.5 - (time.monotonic() - started)) * 1000)
    assert page.get_attribute("#transcript", "data-state") == "recording", page.inner_text("#live-status")
    page.click("#record")  # Stop
    page.wait_for_selector("#transcript[data-state=done]", timeout=60_000)
    assert not page.is_visible("#live-status.error"), page.inner_text("#live-status")
    assert int(page.get_attribute("#transcript", "data-partials-before-first-final")) >= 1
    assert page.inner_text("#partial") == ""  # the last final replaced it
    shown = page.evaluate(SHOWN_FINALS)
    _screenshot(page, tmp_path)

    # The page sent the whole recording, from its first sample, as 16 kHz float32: it is found in what was sent,
    # sample for sample (0.998 correlation: Chromium resamples it 16 -> 48 -> 16 kHz on the way). A start lost
    # while the connection opened, another rate or another sample format would not be.
    audio = np.concatenate([samples(message, "<f4") for message in sent])
    wave = soundfile.read(EXAMPLE, dtype="float32")[0]
    assert len(audio) >= len(wave)
    n = len(audio) + len(wave)  # cross-correlation by FFT: np.correlate takes a minute on this
    correlation = np.fft.irfft(np.fft.rfft(audio, n) * np.conj(np.fft.rfft(wave, n)), n)
    lag = int(np.argmax(correlation[:len(audio) - len(wave) + 1]))
    heard = audio[lag:lag + len(wave)]
    assert np.dot(heard, wave) / (np.linalg.norm(heard) * np.linalg.norm(wave)) > 0.95

    # What the page shows is what the server's stream makes of what the page sent...
    stream = stream_factory(transcriber, ServerSettings())()
    events = [event for message in sent for event in stream.accept(samples(message, "<f4"))] + stream.finish()
    assert shown == " ".join(e["text"] for e in events if e["type"] == "final" and e["text"])
    # ...and close to the offline transcript. Streaming cuts at pauses where the offline path may not, and this
    # small model's transcript moves with the cuts and with a shift of a few milliseconds, as a microphone's start
    # brings: over 35 simulated captures (the example delayed 0-1 s, resampled 16-48-16 kHz as Chromium's fake
    # device does), the final text was 0-0.33 WER from the offline transcript of the same audio, and 0-0.57 from
    # that of the file itself. The bounds leave room for that; garbled audio gives about 1.
    assert jiwer.wer(transcriber.transcribe(audio, 16000).text, shown) <= 0.4
    assert jiwer.wer(transcriber.transcribe(EXAMPLE).text, shown) <= 0.75


def test_file_upload_shows_the_transcript_words_and_subtitles(browser_page, transcriber, tmp_path):
    page, _ = browser_page
    offline = transcriber.transcribe(EXAMPLE)
    page.set_input_files("#file-input", EXAMPLE)
    page.wait_for_selector("#file-result:not([hidden])", timeout=60_000)
    assert page.inner_text("#file-text") == offline.text
    assert page.locator("#words tbody tr").count() == len(offline.words)
    assert page.locator("#words tbody tr.low").count() == sum(w.confidence < 0.5 for w in offline.words)
    assert page.is_visible("#file-warning") == (offline.warning is not None)

    with page.expect_download(timeout=60_000) as download:
        page.click("#download-srt")
    assert download.value.suggested_filename == "english-dev-example.srt"
    assert Path(download.value.path()).read_text().startswith("1\n00:00:")
    _screenshot(page, tmp_path)


RESAMPLED_TONE = """async (rate) => {
  // 2 s of a 440 Hz tone at `rate` through the recorder worklet, rendered offline: what comes out at 16 kHz.
  const context = new OfflineAudioContext(1, 2 * rate, rate);
  await context.audioWorklet.addModule("page/recorder-worklet.js");
  const recorder = new AudioWorkletNode(context, "recorder", { channelCount: 1, channelCountMode: "explicit" });
  const blocks = [];
  recorder.port.onmessage = (event) => blocks.push(Array.from(event.data));
  const tone = new OscillatorNode(context, { frequency: 440 });
  tone.connect(recorder).connect(context.destination);
  tone.start();
  await context.startRendering();
  await new Promise((resolve) => setTimeout(resolve, 200));  // the last blocks' messages
  return blocks;
}"""


@pytest.mark.parametrize("rate", [48000, 44100, 16000])
def test_the_recorder_sends_16_khz_from_any_context_rate(browser_page, rate):
    """Where a browser cannot run the AudioContext at 16 kHz, the worklet resamples (linear interpolation)."""
    page, _ = browser_page
    blocks = page.evaluate(RESAMPLED_TONE, rate)
    assert {len(b) for b in blocks} == {1600}  # 100 ms blocks
    out = np.concatenate(blocks)
    assert len(out) == 32000
    t = np.arange(len(out)) / 16000
    # fit a sine and cosine of 440 Hz at 16 kHz: the resampled tone is that, to within 0.1 % of full scale
    basis = np.stack([np.sin(2 * np.pi * 440 * t), np.cos(2 * np.pi * 440 * t)], axis=1)
    fitted = basis @ np.linalg.lstsq(basis, out, rcond=None)[0]
    assert np.sqrt(np.mean((out - fitted) ** 2)) < 1e-3


def test_the_page_has_no_script_errors(browser_page, server_url):
    page, errors = browser_page
    page.goto(server_url)  # a fresh load as well as whatever the tests above did
    page.wait_for_selector("body[data-ready]")
    assert page.inner_text("#live-status") == "Press Record and speak."
    assert errors == []
