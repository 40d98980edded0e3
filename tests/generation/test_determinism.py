"""The same spec, seed and model give byte-identical MIDI in any process, whatever its hash seed."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from generation.composer.compose import compose
from generation.composer.prompts import parse_prompt
from generation.composer.training import model_load

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = (
    "tense orchestral underscore, 120 bpm, D minor, 6/8, 1:30, build to a hit at 00:01:05:12 @ 24 fps, end soft",
    "hopeful strings and piano, 2 minutes, hits at 00:00:30;00 and 00:01:00;02 @ 29.97 fps",
    "dark hybrid trailer, 5/4, 140 bpm, 45 s, big finish",
)
DIGESTS = """
import hashlib
from generation.composer.compose import compose
from generation.composer.prompts import parse_prompt
from generation.composer.training import model_load
model, _ = model_load()
for prompt in {prompts!r}:
    print(hashlib.sha256(compose(parse_prompt(prompt).spec, seed=2**64 - 1, model=model).midi).hexdigest())
"""


def test_another_process_with_another_hash_seed_writes_the_same_bytes():
    model, _ = model_load()
    here = [
        hashlib.sha256(compose(parse_prompt(prompt).spec, seed=2**64 - 1, model=model).midi).hexdigest()
        for prompt in PROMPTS
    ]
    for hash_seed in ("0", "12345"):
        result = subprocess.run(
            [sys.executable, "-c", DIGESTS.format(prompts=PROMPTS)],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert result.stdout.split() == here
    assert len(set(here)) == len(PROMPTS)
