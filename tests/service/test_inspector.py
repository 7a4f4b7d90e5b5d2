"""The reward inspector (GET /inspect) in a real browser against the real `fgrm serve`.

Headless Chromium is Debian's `chromium` (`make test` installs it when missing and run as
root), driven by Playwright for Python through `executable_path`: no browser is downloaded.
What the page shows is checked against what the API answers for the same request: segments,
totals and the mix after a weight moves, and the service's own error message for bad input.
Screenshots go to runs/inspector/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest

from service.inspect_examples import OUT as EXAMPLES_FILE
from service.inspect_examples import build, render
from service.inspector import ASSETS, STATIC
from tests.conftest import REPO, start_service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package puts it there
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "runs" / "inspector"
KEY = "inspector-test-key"
EXAMPLES = json.loads(EXAMPLES_FILE.read_text())["examples"]


def fmt(x: float) -> str:
    """The page's number format: sign and three decimals."""
    return ("-" if x < 0 else "+") + f"{abs(x):.3f}"


# ----------------------------------------------------------------------------- without a browser

def test_examples_file_is_what_the_generator_writes():
    assert EXAMPLES_FILE.read_text(encoding="utf-8") == render(build()), \
        "service/static/inspect/examples.json is stale: run `python -m service.inspect_examples`"
    assert 3 <= len(EXAMPLES) <= 8 and all(len(e["responses"]) == 2 for e in EXAMPLES)


def test_the_page_and_its_files_are_served_and_nothing_else_under_inspect(fgrm_service):
    with httpx.Client(base_url=fgrm_service.base_url, timeout=30) as http:
        page = http.get("/inspect", follow_redirects=True)
        assert page.status_code == 200 and page.url.path == "/inspect/", page.text[:300]
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
        # every file the page names is one of ours, at our mount; nothing from elsewhere
        refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert refs and all(r.startswith("/inspect/") or r.startswith("data:") or r.startswith("#") for r in refs), refs
        for name, media in ASSETS.items():
            r = http.get(f"/inspect/{name}")
            assert r.status_code == 200 and r.headers["content-type"] == media, name
            assert r.content == (STATIC / name).read_bytes(), name
        missing = http.get("/inspect/secrets.txt")
        assert missing.status_code == 404 and missing.json()["error"]["kind"] == "not_found", missing.text
        # an HTML page, not an API: it stays out of the OpenAPI document (and so out of schemathesis)
        assert not [p for p in http.get("/docs.json").json()["paths"] if p.startswith("/inspect")]


# ----------------------------------------------------------------------------- in a browser

@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (`make test` does it when run as root)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


class Page:
    """A browser tab on one service, recording what would show a broken page: script errors and
    any request that leaves the service's origin."""

    def __init__(self, browser, base_url: str, width: int = 1280, height: int = 800):
        self.base_url = base_url
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        self.page.on("request", lambda r: r.url.startswith((base_url, "data:"))
                     or self.problems.append(f"request outside the service: {r.url}"))

    def open(self) -> "Page":
        self.page.goto(self.base_url + "/inspect")
        return self

    def ready(self) -> "Page":
        self.page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        return self

    def load_example(self, index: int) -> None:
        self.page.select_option("#example", str(index))
        self.page.click("#load-example")

    def score(self, press=None) -> dict:
        with self.page.expect_response("**/v1/score", timeout=60_000) as answer:
            (press or (lambda: self.page.click("#score")))()
        return answer.value

    def shot(self, name: str, full_page: bool = True) -> None:
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)

    def close(self) -> None:
        self.context.close()
        assert not self.problems, self.problems


@pytest.fixture
def tab(browser, fgrm_service):
    opened = Page(browser, fgrm_service.base_url)
    yield opened
    opened.close()


def marks(page, i: int) -> list[dict]:
    return page.eval_on_selector_all(f"#text-{i} mark.seg", "els => els.map(e => ({text: e.textContent, "
                                     "reward: Number(e.dataset.reward), tip: e.dataset.tip}))")


def value(page, selector: str) -> float:
    return float(page.get_attribute(selector, "data-value"))


def test_the_page_shows_what_score_and_mix_answer(tab, fgrm_service):
    page, http = tab.open().ready().page, httpx.Client(base_url=fgrm_service.base_url, timeout=120)
    types = http.get("/v1/feedback-types").json()["types"]
    for t in types:  # model version, runtime and provider as the service reports them
        shown = page.text_content(f"#models-body li[data-type='{t['name']}']")
        assert t["model_version"] in shown and t["runtime"] in shown and t["provider"] in shown, shown
    # and how far to trust each, from the CV the checkpoint records (the shipped one's figures)
    shown = {t["name"]: page.text_content(f"#models-body li[data-type='{t['name']}']") for t in types}
    assert shown["relevance"].endswith("; CV ROC-AUC 0.72 ± 0.01 (lexical 0.63), 0.89 with a reference"), shown
    assert shown["factuality"].endswith("; CV ROC-AUC 0.90 ± 0.02 (lexical 0.78)"), shown
    assert shown["completeness"].endswith("; CV pairs ordered 0.55 ± 0.04 (prefer-earlier 0.61), 0.63 with a "
                                          "reference"), shown
    # the reference hint says what this server's checkpoint does with one, not what the page assumes
    assert page.text_content("#reference-policy") == (
        "Read by relevance (only one of 10 or more distinct content words), completeness. One with under "
        "30 % of its content words in the question and passages is ignored as another question's.")
    assert sorted(page.eval_on_selector_all("#profile option", "os => os.map(o => o.value)")) == \
        sorted(http.get("/v1/profiles").json()["profiles"])

    example = EXAMPLES[0]
    tab.load_example(0)
    answer = tab.score()
    assert answer.status == 200
    sent = answer.request.post_data_json
    # the page sent the example as it is: question, one passage per block, both responses
    assert [(it["question"], it["passages"], it["response"]) for it in sent["items"]] == \
        [(example["question"], example["passages"], r) for r in example["responses"]]
    assert not any("reference" in it for it in sent["items"])  # an empty reference box sends none
    scored = answer.json()
    assert http.post("/v1/score", json=sent).json() == scored  # the same request from outside the page
    page.wait_for_selector("#columns[data-results='2']")

    for t in types:
        page.click(f"#tab-{t['name']}")
        assert page.get_attribute(f"#tab-{t['name']}", "aria-selected") == "true"
        for i, result in enumerate(scored["results"]):
            want = result["types"][t["name"]]
            got = marks(page, i)
            assert [m["text"] for m in got] == [s["text"] for s in want["segments"]], (t["name"], i)
            assert [m["reward"] for m in got] == [s["reward"] for s in want["segments"]], (t["name"], i)
            for m, s in zip(got, want["segments"]):
                assert f"reward {fmt(s['reward'])}" in m["tip"] and f"chars {s['start']}–{s['end']}" in m["tip"]
                for key in ("p_error", "score", "p_bad"):
                    if key in s:
                        assert f"{key} {s[key]:.3f}" in m["tip"], m["tip"]
            cell = f"#result-{i} td[data-role='type-total'][data-type='{t['name']}']"
            assert value(page, cell) == want["total"] and page.text_content(cell) == fmt(want["total"])
    for i, result in enumerate(scored["results"]):
        assert value(page, f"#mixed-{i}") == result["mixed"]["total"]
        assert page.text_content(f"#headline-{i}") == fmt(result["mixed"]["total"])
        bars = page.eval_on_selector_all(f"#chart-{i} rect.bar", "els => els.length")
        assert bars == sum(1 for r in result["token_rewards"] if r != 0) > 0
    tab.shot("scored")
    page.click(f"#tab-{types[0]['name']}")
    page.hover("#text-0 mark.seg.neg >> nth=0")  # the README's picture: a penalised segment explained
    assert page.is_visible("#tip")
    tab.shot("inspector", full_page=False)

    # a weight moves (by keyboard): the page re-mixes through /v1/mix, never /v1/score
    mixes, score_calls = [], []
    page.on("response", lambda r: mixes.append(r) if r.url.endswith("/v1/mix") else
            (score_calls.append(r) if r.url.endswith("/v1/score") else None))
    page.click("#tab-mixed")
    page.focus("#w-completeness")
    start = float(page.input_value("#w-completeness"))
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    target = round(start + 0.5, 6)
    page.wait_for_function("w => Number(document.querySelector('#w-completeness').value) === w", arg=target)
    page.wait_for_function("() => document.body.dataset.mixApplied && "
                           "document.querySelector('#weight-0-completeness').textContent === '%.2f'" % target)
    final = [m for m in mixes if m.request.post_data_json["weights"]["completeness"] == pytest.approx(target)]
    assert final and not score_calls
    mixed = final[-1].json()
    assert http.post("/v1/mix", json=final[-1].request.post_data_json).json() == mixed
    for i, (result, remixed) in enumerate(zip(scored["results"], mixed["results"])):
        page.wait_for_function("([sel, v]) => Number(document.querySelector(sel).dataset.value) === v",
                               arg=[f"#mixed-{i}", remixed["mixed"]["total"]])
        weights = remixed["mixed"]["weights"]
        assert weights["completeness"] == pytest.approx(target)
        assert remixed["mixed"]["total"] == pytest.approx(sum(weights[k] * t["total"] for k, t in result["types"].items()))
        assert remixed["mixed"]["total"] != result["mixed"]["total"]  # completeness now counts
        assert page.text_content(f"#weighted-{i}-completeness") == fmt(target * result["types"]["completeness"]["total"])
        # the mixed highlight follows the weights: one mark per event of the new mix
        assert [m["reward"] for m in marks(page, i)] == [e["reward"] for e in remixed["mixed"]["events"]]
    tab.shot("remixed")


def test_a_reference_typed_in_the_page_is_sent_and_scored_with_it(tab, fgrm_service):
    page = tab.open().ready().page
    tab.load_example(0)
    reference = EXAMPLES[0]["passages"][0].split(". ")[0] + "."
    page.fill("#reference", reference)
    answer = tab.score()
    assert answer.status == 200
    sent = answer.request.post_data_json
    assert [it["reference"] for it in sent["items"]] == [reference] * len(EXAMPLES[0]["responses"])
    scored = answer.json()
    assert httpx.post(fgrm_service.base_url + "/v1/score", json=sent, timeout=120).json() == scored
    plain = {**sent, "items": [{k: v for k, v in it.items() if k != "reference"} for it in sent["items"]]}
    without = httpx.post(fgrm_service.base_url + "/v1/score", json=plain, timeout=120).json()
    p_error = lambda res: [s["p_error"] for s in res["results"][0]["types"]["relevance"]["segments"]]  # noqa: E731
    assert p_error(scored) != p_error(without)  # the reference heads scored it
    page.wait_for_selector("#columns[data-results='2']")
    page.click("#tab-relevance")
    want = scored["results"][0]["types"]["relevance"]["segments"]
    assert [m["reward"] for m in marks(page, 0)] == [s["reward"] for s in want]
    assert "not read" not in page.text_content("#status")  # read by every type that can read one
    # a name from the passage alone is under the relevance floor: the page says relevance did not read it
    page.fill("#reference", "Mother Abbess")
    assert tab.score().json()["results"][0]["types"]["relevance"]["reference"] == "too_short"
    page.wait_for_function("document.querySelector('#status').textContent.includes('not read')")
    assert page.text_content("#status").endswith("The reference was not read by relevance (too short).")
    # one that is not in the question or passages is another question's: no type reads it
    page.fill("#reference", "Paris")
    assert tab.score().json()["results"][0]["types"]["completeness"]["reference"] == "unrelated"
    page.wait_for_function("document.querySelector('#status').textContent.includes('completeness (')")
    assert page.text_content("#status").endswith(
        "The reference was not read by relevance (shares too little with the question and passages), "
        "completeness (shares too little with the question and passages).")


def test_bad_input_shows_the_services_own_words(tab, fgrm_service):
    page = tab.open().ready().page
    tab.load_example(1)
    page.fill("#question", "why? " * 1000)  # over max_question_chars
    answer = tab.score()
    assert answer.status == 400
    body = httpx.post(fgrm_service.base_url + "/v1/score", json=answer.request.post_data_json, timeout=60).json()
    assert answer.json() == body and body["error"]["field"] == "items[0].question"
    page.wait_for_selector("#error:not([hidden])")
    assert page.text_content("#error-kind") == body["error"]["kind"] == "invalid_input"
    assert page.text_content("#error-field") == body["error"]["field"]
    assert page.text_content("#error-message") == body["error"]["message"]
    assert page.get_attribute("#question", "aria-invalid") == "true"
    assert page.get_attribute("#error", "role") == "alert"
    tab.shot("bad-input")


def test_keyboard_alone_scores_and_reads_a_segment(tab):
    page = tab.open().ready().page
    tab.load_example(2)
    page.focus("#response-1")
    for _ in range(12):  # the weights, then Score: every control on the way takes the focus in turn
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "score":
            break
    assert page.evaluate("document.activeElement.id") == "score"
    assert tab.score(press=lambda: page.keyboard.press("Enter")).status == 200
    page.wait_for_selector("#columns[data-results='2']")
    page.focus("#tab-relevance")
    page.keyboard.press("ArrowRight")  # tabs: arrows move between feedback types
    assert page.evaluate("document.activeElement.id") == "tab-factuality"
    assert page.get_attribute("#text-0", "data-view") == "factuality"
    page.keyboard.press("Tab")  # out of the tab list, into the first segment
    focused = page.evaluate("[document.activeElement.tagName, document.activeElement.dataset.tip]")
    assert focused[0] == "MARK" and page.is_visible("#tip") and page.text_content("#tip") == focused[1]
    page.keyboard.press("Escape")
    assert not page.is_visible("#tip")

    # a profile sets every weight at once and re-mixes
    profiles = httpx.get(tab.base_url + "/v1/profiles", timeout=30).json()["profiles"]
    other = next(name for name in profiles if name != page.input_value("#profile"))
    page.select_option("#profile", other)
    for name, w in profiles[other].items():
        page.wait_for_function("([id, w]) => document.getElementById(id).textContent === w",
                               arg=[f"weight-0-{name}", f"{w:.2f}"])
        assert float(page.input_value(f"#w-{name}")) == pytest.approx(w)


def test_narrow_window_and_characters_outside_the_bmp(browser, fgrm_service):
    """Readable at 400 px wide (no sideways scroll), and segments cut right after an emoji: the
    service counts code points, JavaScript UTF-16 units."""
    narrow = Page(browser, fgrm_service.base_url, width=400, height=860).open().ready()
    try:
        narrow.load_example(3)
        narrow.page.fill("#response-1", "🎵 Bob Marley sang reggae 🇯🇲, ska and rocksteady. He was from Jamaica. 🙂")
        answer = narrow.score()
        assert answer.status == 200
        narrow.page.wait_for_selector("#columns[data-results='2']")
        for t, want in answer.json()["results"][1]["types"].items():
            narrow.page.click(f"#tab-{t}")
            assert [m["text"] for m in marks(narrow.page, 1)] == [s["text"] for s in want["segments"]], t
        assert narrow.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        narrow.shot("narrow")
    finally:
        narrow.close()


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("inspector-locked"), api_key=KEY) as handle:
        yield handle


def test_with_an_api_key_the_page_loads_and_sends_the_key(browser, locked):
    tab = Page(browser, locked.base_url).open()
    try:
        page = tab.page
        page.wait_for_selector("#error:not([hidden])")  # the page is open; the API is not
        refused = httpx.get(locked.base_url + "/v1/feedback-types", timeout=30).json()["error"]
        assert page.text_content("#error-kind") == refused["kind"] == "unauthorized"
        assert page.text_content("#error-message") == refused["message"]
        page.fill("#api-key", KEY)
        page.keyboard.press("Tab")  # the key takes effect when the field is left
        tab.ready()
        assert page.is_hidden("#error")
        tab.load_example(0)
        answer = tab.score()
        assert answer.status == 200 and answer.request.headers["authorization"] == f"Bearer {KEY}"
    finally:
        tab.close()
