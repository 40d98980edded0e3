"""`make run` from an empty var/: demo users and cues, the web server and the embedded worker, then Ctrl-C."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile

from tests.factories import midi_sketch

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base: str, token: str, path: str, *, data: bytes | None = None, content_type: str | None = None):
    request = urllib.request.Request(base + path, data=data, headers={"Authorization": f"Token {token}"})
    if content_type:
        request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own local server
        return response.status, response.headers, response.read()


def multipart(fields: dict, file_field: str, filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = "cueledger-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: audio/midi\r\n\r\n".encode()
        + payload
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def make_run(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "MAKEFLAGS")}
    env.update(CUELEDGER_VAR_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1")
    log = (tmp_path / "make-run.log").open("w+")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"BIND=127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield process, f"http://127.0.0.1:{port}", tmp_path / "var", log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_make_run_serves_the_demo_from_an_empty_var_and_stops_on_ctrl_c(make_run):
    process, base, var, log = make_run

    def printed() -> str:
        log.seek(0)
        return log.read()

    credentials = wait_for(lambda: re.search(r"^\s+producer\s+demo-producer\s+\S+\s+(\w{40})$", printed(), re.M),
                           120, "the demo credentials")  # fmt: skip
    token = credentials.group(1)
    assert json.loads((var / "demo-credentials.json").read_text())["producer"]["token"] == token

    def demo_ready():
        body = json.loads(call(base, token, "/api/v1/cues/")[2])
        return body["count"] == 5 and all(cue["status"] == "ready" for cue in body["results"])

    wait_for(demo_ready, 180, "the demo cues to render (one composed by the worker first)")
    cues = {cue["title"]: cue["id"] for cue in json.loads(call(base, token, "/api/v1/cues/")[2])["results"]}

    def verdicts():
        found = {title: json.loads(call(base, token, f"/api/v1/cues/{i}/similarity/")[2]) for title, i in cues.items()}
        return (
            {title: body["verdict"] for title, body in found.items()}
            if all(body["verdict"] for body in found.values())
            else None
        )

    # One demo cue quotes a demo reference work in another key and tempo; the others are unrelated to both, and the
    # composed one copies none of the composer's own training works (they are reference works too).
    assert wait_for(verdicts, 120, "the demo cues' similarity checks") == {
        "Letters Never Sent": "flag",
        "Night Approach": "pass",
        "Morning Lift": "pass",
        "Chase Through the Market": "pass",
        "The Long Corridor": "pass",
    }
    generated = json.loads(call(base, token, f"/api/v1/cues/{cues['The Long Corridor']}/")[2])
    assert generated["source"] == "generated" and generated["licence_constraints"]["commercial_use"] is None
    card = json.loads(call(base, token, "/api/v1/generators/")[2])["results"][0]
    assert card["memorisation_guard"]["training_works_registered"] == len(card["works"])

    body, content_type = multipart(
        {"title": "Uploaded at run time", "moods": "warm"}, "midi", "a.mid", midi_sketch(bars=4)
    )
    status, _headers, created = call(base, token, "/api/v1/cues/", data=body, content_type=content_type)
    cue = json.loads(created)
    assert status == 201 and cue["status"] == "analysing"
    wait_for(lambda: json.loads(call(base, token, f"/api/v1/cues/{cue['id']}/")[2])["status"] == "ready", 60,
             "the uploaded cue to render")  # fmt: skip
    status, headers, audio = call(base, token, f"/api/v1/cues/{cue['id']}/audio/?format=flac")
    assert status == 200 and headers["Content-Type"] == "audio/flac"
    info = soundfile.info(io.BytesIO(audio))  # the Content Credentials ride in an ID3v2 tag before the FLAC stream
    assert (info.format, info.samplerate) == ("FLAC", 44_100)
    assert call(base, token, "/api/docs/")[0] == 200

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    process.wait(timeout=60)
    leftovers = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], printed()
    with pytest.raises(OSError):
        call(base, token, "/api/v1/me/")
