"""A student's first contact, in a real browser: ``ussnb lab`` on a finished smoke run, JupyterLab in headless
Chromium (driven by playwright, pointed at the system Chromium — no browser download), the fresh copies of
notebooks 01, 03, 05 and 06 run cell by cell (Run → Run All Cells), and their widgets clicked.

05: the class picker renders; a class is selected and "separate" clicked; a progress bar, an ``<audio>``
element whose source loads (metadata read by the browser) and the figure appear; an unknown class typed into
the filter is answered by a message, not a traceback. 01, 03, 06: the panel renders and reacts to one
interaction. Screenshots go to ``browser-artifacts/*.png`` (git-ignored). JupyterLab and every process it
started (kernels included) are stopped, also on failure; one left running fails the test.

``USSNB_TEST_LAB_RUN=RUN_DIR`` (with ``USSNB_DATA`` of that run) opens an existing smoke run instead of building
one — for working on this test only.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ussnb.system_packages import install_command

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "browser-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    import playwright.sync_api  # noqa: F401

    PLAYWRIGHT = True
except ImportError:
    PLAYWRIGHT = False

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason=f"Chromium not found: {install_command(['chromium'])} "
                                                "(as root: make install-system)"),
    pytest.mark.skipif(not PLAYWRIGHT, reason='playwright not installed: pip install -e ".[dev]"'),
]

NOTEBOOK_TIMEOUT = 240_000  # ms for one notebook's "run all" on a busy 2-core machine


# ------------------------------------------------------------------------------------------ processes
def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(stat.parent.name))
    return out


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def lab_run(request):
    given = os.environ.get("USSNB_TEST_LAB_RUN")
    if given:
        return Path(given), Path(os.environ["USSNB_DATA"])
    run, _ = request.getfixturevalue("smoke_run")
    return run, run.parent / "data"


@pytest.fixture(scope="module")
def lab(lab_run, tmp_path_factory):
    """``ussnb lab RUN --threads 1`` in its own session: yields (url, run_dir); stops it and checks that nothing it
    started is left running."""
    run, data = lab_run
    config = tmp_path_factory.mktemp("jupyter-config")
    settings = config / "lab" / "user-settings" / "@jupyterlab"
    (settings / "apputils-extension").mkdir(parents=True)
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no "news?" toast over the screenshots
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))  # every cell in the DOM, so prompts and outputs can be read
    env = os.environ | {"USSNB_DATA": str(data), "PYTHONPATH": str(REPO), "JUPYTER_CONFIG_DIR": str(config),
                        "JUPYTER_RUNTIME_DIR": str(config / "runtime"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ussnb.cli", "lab", str(run), "--threads", "1", "--reset"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None:
            url = next((m.group(1) for ln in list(lines) for m in [re.match(r"JupyterLab: (\S+)", ln)] if m), None)
            assert proc.poll() is None, "ussnb lab exited:\n" + "".join(lines)
            assert time.monotonic() < deadline, "ussnb lab printed no URL within 180 s:\n" + "".join(lines)
            time.sleep(0.3)
        out = "".join(lines)
        assert url.startswith("http://127.0.0.1:") and "token=" in url
        assert "lab/05_hierarchical_separation.ipynb" in out and "05_hierarchical_separation/05_hier" in out
        yield url, run, lines, lambda: started.update(_descendants(proc.pid))
    finally:
        started |= _descendants(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # ussnb lab stops JupyterLab, JupyterLab its kernels
            try:
                proc.wait(45)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(p) for p in started | {proc.pid}):
            time.sleep(0.3)
        left = sorted(p for p in started | {proc.pid} if _alive(p))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.wait(10)
        assert not left, f"processes left running after stopping ussnb lab: {left}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


# ------------------------------------------------------------------------------------------ helpers
ALL_DONE = """() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent || '');
  const errors = [...document.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent)
      .filter(t => t.includes('Traceback (most recent call last)'));
  if (errors.length) return 'ERROR ' + errors[0].slice(0, 3000);
  return cells.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p)) ? 'done' : '';
}"""


def _open(browser, url: str, notebook: str):
    base, token = url.split("/lab", 1)[0], url.split("token=", 1)[1]
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(60_000)
    # a workspace of its own, reset: only this notebook open in the page
    page.goto(f"{base}/lab/workspaces/ussnb-test-{notebook[:2]}/tree/lab/{notebook}?reset&token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=90_000)
    assert page.locator(".jp-NotebookPanel").count() == 1
    return page


def _run_all(page) -> None:
    """Run → Run All Cells, as a student does (the menu opens once the page has the focus)."""
    page.bring_to_front()
    item = page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    for _ in range(10):
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        try:
            item.wait_for(timeout=3000)
            break
        except Exception:  # noqa: BLE001 — the menu closed again (focus moved): open it anew
            page.keyboard.press("Escape")
    else:
        _shot(page, "failed-run-menu")
        raise AssertionError(f"the Run menu shows no 'Run All Cells' ({page.url})")
    item.click()


def _panel(page, name: str, css: str):
    """The widget panel ``css`` of notebook ``name`` once every cell has run (a cell's traceback fails)."""
    handle = page.wait_for_function(ALL_DONE, timeout=NOTEBOOK_TIMEOUT, polling=500)
    state = handle.json_value()
    assert state == "done", f"{name}: a cell failed:\n{state}"
    panel = page.locator(css)
    panel.wait_for()
    return panel


DECODED = "root => Promise.all([...root.querySelectorAll('img')].map(i => i.decode().catch(() => null)))"


def _shot(locator_or_page, name: str) -> Path:
    """A screenshot once every image in it is decoded (a figure caught half drawn tells nothing)."""
    is_locator = hasattr(locator_or_page, "element_handle")  # a Locator: the element is the function's argument
    page = locator_or_page.page if is_locator else locator_or_page
    if is_locator:
        locator_or_page.scroll_into_view_if_needed()
        locator_or_page.evaluate(DECODED)
    else:
        page.evaluate(f"({DECODED})(document)")
    # a busy machine paints a large image in tiles, late: keep the first of two identical screenshots
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    shots: list[bytes] = []
    for _ in range(25):  # three identical screenshots in a row, 0.7 s apart (at most ~17 s)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        shot = locator_or_page.screenshot()
        shots = (shots + [shot])[-3:]
        if len(shots) == 3 and shots[0] == shots[1] == shots[2]:
            break
        page.wait_for_timeout(700)
    path.write_bytes(shot)
    return path


def _texts(locator) -> list[str]:
    """Inner texts, with the non-breaking spaces of <option> labels as plain spaces."""
    return [t.replace("\xa0", " ") for t in locator.all_inner_texts()]


def _image_sources(panel) -> list[str]:
    return panel.locator(".widget-output img").evaluate_all(
        "imgs => imgs.filter(i => i.naturalWidth > 0).map(i => i.src)")


# ------------------------------------------------------------------------------------------ the test
NOTEBOOKS = {"01": "01_weak_labels_and_sed.ipynb", "03": "03_query_conditions.ipynb",
             "05": "05_hierarchical_separation.ipynb", "06": "06_evaluation.ipynb"}


def test_notebooks_in_jupyterlab_in_chromium(lab, browser):
    url, run, lines, note_processes = lab
    t0 = time.monotonic()
    timings = {}
    # the four notebooks run at once (one kernel each, 1 torch thread): the slow ones overlap
    pages = {key: _open(browser, url, nb) for key, nb in NOTEBOOKS.items()}
    _shot(pages["05"], "lab-05-opened")
    for key, page in pages.items():
        _run_all(page)
    note_processes()  # the kernels are running now

    # 05: pick a class, separate, hear and see it
    page = pages["05"]
    panel = _panel(page, "05", ".ussnb-separation-picker")
    timings["05 run all"] = round(time.monotonic() - t0, 1)
    select = panel.locator(".widget-select-multiple select")
    options = _texts(select.locator("option"))
    assert len(options) >= 2, options
    choice = options[-1]  # not one of the preselected (detected) classes, necessarily
    select.select_option(choice)  # by value: the class name
    assert select.evaluate("s => [...s.selectedOptions].map(o => o.value)") == [choice]
    t1 = time.monotonic()
    panel.locator("button.widget-button", has_text="separate").click()
    audio = panel.locator(".widget-output audio")
    audio.first.wait_for(timeout=120_000)
    page.wait_for_function("a => a.currentSrc.length > 0 && a.readyState >= 1 && a.duration > 0",
                           arg=audio.first.element_handle(), timeout=30_000)
    page.wait_for_function("p => [...p.querySelectorAll('.widget-output img')].some(i => i.naturalWidth > 300)",
                           arg=panel.element_handle(), timeout=60_000)
    # the status line is set after the player and the figure render (a loaded machine shows the gap): wait for it
    page.wait_for_function("p => !p.querySelector('.ussnb-status').innerText.includes('separating')",
                           arg=panel.element_handle(), timeout=60_000)
    timings["05 separate"] = round(time.monotonic() - t1, 1)
    assert audio.count() == 1, "one player for the one picked class"
    assert choice in panel.locator(".widget-output .ussnb-track").inner_text().replace("\xa0", " ")
    assert panel.locator(".widget-output .widget-hprogress, .widget-output .progress").count() >= 1, \
        "no progress bar in the output area"
    assert "1 separated" in panel.locator(".ussnb-status").inner_text()
    assert panel.locator(".ussnb-message").count() == 0, panel.locator(".ussnb-message").all_inner_texts()
    duration = audio.first.evaluate("a => a.duration")
    assert duration > 1.0, duration
    wav = next((run / "lab" / "05_hierarchical_separation" / "queries").glob("*.wav"))
    assert wav.stat().st_size > 10_000
    _shot(panel, "lab-05-separated")
    _shot(page, "lab-05-page")
    # an unknown class typed into the filter: a message, not a traceback
    panel.locator(".widget-text input").fill("no such sound")
    panel.locator("button.widget-button", has_text="separate").click()
    message = panel.locator(".widget-output .ussnb-message")
    message.wait_for(timeout=60_000)
    assert "unknown class 'no such sound'" in message.inner_text()
    assert "Traceback" not in panel.inner_text()
    _shot(panel, "lab-05-unknown-class")

    # 01: another clip → another figure and player
    page = pages["01"]
    panel = _panel(page, "01", ".ussnb-clip-picker")
    page.wait_for_function("p => [...p.querySelectorAll('.widget-output img')].some(i => i.naturalWidth > 300)",
                           arg=panel.element_handle())
    before = _image_sources(panel)
    assert panel.locator(".widget-output audio").count() == 1
    dropdown = panel.locator(".widget-dropdown select")
    clips = _texts(dropdown.locator("option"))
    dropdown.select_option(index=1)
    page.wait_for_function("([p, old]) => { const s = [...p.querySelectorAll('.widget-output img')]"
                           ".filter(i => i.naturalWidth > 300).map(i => i.src); return s.length && s[0] !== old; }",
                           arg=[panel.element_handle(), before[0]])
    _shot(panel, "lab-01-clip-picker")

    # 03: another class → its own row first in the table
    page = pages["03"]
    panel = _panel(page, "03", ".ussnb-similar-classes")
    dropdown = panel.locator(".widget-dropdown select")
    names = _texts(dropdown.locator("option"))
    dropdown.select_option(names[-1])  # by value (the label shows non-breaking spaces)
    page.wait_for_function("([p, n]) => { const c = p.querySelector('.widget-output table caption');"
                           " return c && c.textContent.replace(/\\u00a0/g, ' ').includes(n); }",
                           arg=[panel.element_handle(), names[-1]])
    first_row = _texts(panel.locator(".widget-output table tr").nth(1))[0]
    assert first_row.startswith(names[-1]) and "1.000" in first_row, first_row
    _shot(panel, "lab-03-similar-classes")

    # 06: filter the classes → fewer rows, a figure; nonsense → a message
    page = pages["06"]
    panel = _panel(page, "06", ".ussnb-class-filter")
    timings["all run"] = round(time.monotonic() - t0, 1)
    rows = panel.locator(".widget-output table tbody tr th")
    rows.first.wait_for()
    classes = rows.all_inner_texts()
    assert len(classes) >= 2, classes
    word = classes[0]
    expected = [c for c in classes if word.lower() in c.lower()]
    assert len(expected) < len(classes), (word, classes)
    panel.locator(".widget-text input").fill(word)
    page.wait_for_function("([p, n]) => p.querySelectorAll('.widget-output table tbody tr').length === n",
                           arg=[panel.element_handle(), len(expected)])
    assert rows.all_inner_texts() == expected
    assert len(_image_sources(panel)) == 1
    _shot(panel, "lab-06-class-filter")
    panel.locator(".widget-text input").fill("zzzz-no-class")
    panel.locator(".ussnb-message").wait_for()
    assert "matches 'zzzz-no-class'" in panel.locator(".ussnb-message").inner_text()

    note_processes()
    for p in pages.values():
        p.close()
    timings["total"] = round(time.monotonic() - t0, 1)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=1))
    print("browser test timings (s):", timings)
