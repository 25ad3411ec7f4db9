"""``sace app``: the session behind the page (both models, the judge's verdicts, one attack), the page itself
driven in Debian's headless Chromium (a prompt gives two grids and the verdicts; the screenshot is checked),
and the CLI staying free of gradio until the command runs."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sace.adapters import adapter_set, detach_adapters, load_adapter
from sace.errors import SaceError
from sace.generate import generate
from sace.reporting.chromium import find_chromium

CHROMIUM = find_chromium()                 # the one lookup of sace's report screenshots ($SACE_CHROMIUM first)
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def session(fashion, erased_adapter):
    from sace.app import Session

    load_adapter(fashion, erased_adapter)
    try:
        yield Session(fashion)
    finally:
        detach_adapters(fashion)


def test_seeds_are_parsed_or_refused():
    from sace.app import parse_seeds

    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("5, 1,9") == [5, 1, 9] and parse_seeds("7") == [7]
    for bad in ("", "a", "-1", "0-40"):
        with pytest.raises(SaceError):
            parse_seeds(bad)


def test_the_session_draws_both_models_and_judges_every_image(fashion, session):
    assert session.concept == "sneaker" and session.judge.concept == "sneaker"   # the adapter's concept decided
    c = session.compare("a photo of a sneaker", [0, 1, 2, 3])
    assert c.original.shape == c.erased.shape == (4, 3, 32, 32)
    with adapter_set(fashion).disabled():
        assert torch.equal(c.original, generate(fashion, ["a photo of a sneaker"] * 4, [0, 1, 2, 3]))
    assert torch.equal(c.erased, generate(fashion, ["a photo of a sneaker"] * 4, [0, 1, 2, 3]))
    # the verdicts are the judge's: the original draws sneakers, the erased model (check: ACC_e 0) does not
    assert c.flags_original == [bool(x) for x in session.judge.flag(c.original)]
    assert sum(c.flags_original) >= 3 and sum(c.flags_erased) < sum(c.flags_original)
    rows = c.verdict_rows()
    assert len(rows) == 8 and rows[0][:2] == ["original", "0"] and rows[4][:2] == ["erased", "0"]
    assert {r[2] for r in rows} <= {"concept shown", "concept absent"}


def test_the_attack_tab_runs_one_attack_against_the_adapter(session):
    r = session.attack("vector", n_prompts=1, eval_seeds=2, budget=3)
    assert 0.0 <= r["asr"] <= 1.0 and r["attempts"] == 2 and len(r["found"]) == 1
    assert "concept-vector against the erased model: ASR" in r["line"]
    with pytest.raises(SaceError, match="unknown attack"):
        session.attack("nope")


def test_sace_help_does_not_import_gradio():
    code = ("import sys; from sace.cli import app; app(['--help'], standalone_mode=False); "
            "print('gradio' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("False") and "export" in r.stdout and "app" in r.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="Debian's chromium and chromium-driver are not installed (scripts/install.sh installs them)")
def test_the_page_in_headless_chromium(erased_adapter, tmp_path):
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sace", "app", "--adapter", str(erased_adapter), "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    driver = None
    try:
        line = ""
        while "ready at" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "sace app exited before it was ready"
            assert time.perf_counter() - t0 < 240, "sace app did not start"
        started = time.perf_counter() - t0
        print(f"sace app ready after {started:.1f} s (process start to listening): {line.strip()}")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--window-size=1400,1100", f"--user-data-dir={tmp_path / 'profile'}"):
            opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 180)
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#prompt textarea")))
        assert "sace" in driver.title
        box.clear()
        box.send_keys("a photo of a sneaker")
        t1 = time.perf_counter()
        driver.find_element(By.CSS_SELECTOR, "#run").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#grid-original img")) == 1
                   and len(d.find_elements(By.CSS_SELECTOR, "#grid-erased img")) == 1
                   and "concept" in d.find_element(By.CSS_SELECTOR, "#verdicts").text)
        print(f"two grids and the verdicts after {time.perf_counter() - t1:.1f} s")
        verdicts = driver.find_element(By.CSS_SELECTOR, "#verdicts").text
        assert len(re.findall(r"concept (shown|absent)", verdicts)) == 8, verdicts
        assert "original" in verdicts and "erased" in verdicts
        summary = driver.find_element(By.CSS_SELECTOR, "#summary").text
        assert "a photo of a sneaker" in summary and "fashion-classifier" in summary
        # the screenshot: the right size, not blank, and both grids drawn (non-uniform pixels in each)
        shot = tmp_path / "app.png"
        driver.save_screenshot(str(shot))
        im = np.asarray(Image.open(shot).convert("RGB")).astype(np.float32)
        assert im.shape[0] >= 900 and im.shape[1] >= 1200, im.shape
        assert im.std() > 10
        for sel in ("#grid-original img", "#grid-erased img"):
            el = driver.find_element(By.CSS_SELECTOR, sel)
            r = el.rect
            assert r["width"] > 100 and r["height"] > 100, (sel, r)
            crop = im[int(r["y"]):int(r["y"] + r["height"]), int(r["x"]):int(r["x"] + r["width"])]
            assert crop.size and crop.std() > 20, (sel, crop.std())
        Path(os.environ.get("SACE_APP_SCREENSHOT", tmp_path / "keep.png")).write_bytes(shot.read_bytes())
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
