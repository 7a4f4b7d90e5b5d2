"""The README's quick start, run for real: its curl request against the running service must give
the output the README shows (values rounded to two decimals there)."""

import json
import re
from pathlib import Path

import httpx
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _quick_start() -> tuple[dict, dict]:
    text = README.read_text()
    m = re.search(r"```bash\ncurl -s localhost:3000/v1/score .*?-d '(?P<body>.*?)'\n```\n.*?```json\n(?P<out>.*?)```",
                  text, re.S)
    assert m, "README: the /v1/score curl example and the JSON it gives were not found"
    return json.loads(m.group("body")), json.loads(m.group("out"))


def _close(got, want, path="") -> None:
    """Every value the README shows is in the real answer: numbers within its rounding."""
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        for key, value in want.items():
            assert key in got, f"{path}.{key} missing"
            _close(got[key], value, f"{path}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for k, (g, w) in enumerate(zip(got, want)):
            _close(g, w, f"{path}[{k}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=0.0051), path
    else:
        assert got == want, path


def test_readme_curl_example_gives_what_the_readme_shows(fgrm_service):
    body, shown = _quick_start()
    with httpx.Client(base_url=fgrm_service.base_url, timeout=60.0) as client:
        r = client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    _close(r.json(), shown)
