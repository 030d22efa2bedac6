"""Figures for `tryon studio`, measured in a real browser: frames per second delivered to the
page vs generated, time to first frame, and the latency from each garment click to the first
frame of the new garment.

    python examples/bench_studio.py --seconds 10 --clicks 3

Starts `tryon studio --port 0` (127.0.0.1, the demo student by default), opens the page in
Debian's headless chromium (Playwright), uploads an example person, motion video and two
garments, starts a stream and clicks the other garment `--every` seconds after the previous
click's first frame was shown (live lines are applied one per chunk, so faster clicks would
queue), then prints one JSON object:

- `delivered_fps`: frames drawn on the page per second, first to last frame (the page's
  own clock); the server paces frames at the video's fps, so this is at most that.
- `generated_fps`: frames the model made per second of generation, chunks after the first
  (the server's clock, leaving out any time it waited for the browser).
- `first_frame_s`: from the Start click to the first frame drawn (setup and first chunk).
- `click_to_frame_s`: per click, from the click to the first frame drawn wearing the garment
  (the page's clock); `server_click_to_frame_s`: from the click reaching the server to that
  frame being written.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    tryon = Path(sys.executable).with_name("tryon")
    process = subprocess.Popen([str(tryon), "studio", "--port", "0", "--model", model], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = process.stdout.readline()
    if "open http://" not in line:
        process.kill()
        raise SystemExit(f"tryon studio did not start: {line!r} {process.stderr.read()}")
    return process, line.split("open ", 1)[1].strip()


def run(page, url: str, seconds: float, clicks: int, every: float) -> dict:
    page.goto(url)
    page.wait_for_function("window.studio.session !== null")
    page.set_input_files("#user-file", str(EXAMPLES / "sample_00001" / "user.png"))
    page.set_input_files("#motion-file", str(EXAMPLES / "sample_00001" / "motion.mp4"))
    page.wait_for_function("window.studio.hasUser")
    for count, (path, category) in enumerate([(EXAMPLES / "sample_00001" / "garment_dress.png", "dress"),
                                              (EXAMPLES / "sample_00002" / "garment_top.png", "top")], start=1):
        page.select_option("#garment-category", category)
        page.set_input_files("#garment-file", str(path))
        page.wait_for_function(f"document.querySelectorAll('#shelf .garment').length === {count}")
    page.fill("#seconds", f"{seconds:g}")
    page.click("#start")
    page.wait_for_function("window.studio.stats.framesShown > 0", timeout=0)
    for click in range(clicks):  # each click after the previous one's frame is shown: no backlog of clicks
        time.sleep(every)
        if page.evaluate("window.studio.stats.done !== null"):
            break
        page.click(f"#shelf .garment:nth-child({2 if click % 2 == 0 else 1})")
        page.wait_for_function(f"window.studio.stats.switchLatenciesMs.length > {click} "
                               "|| window.studio.stats.done !== null", timeout=0)
    page.wait_for_function("window.studio.stats.done !== null", timeout=0)
    stats = page.evaluate("window.studio.stats")
    done = stats["done"]
    return {
        "frames": done["frames"],
        "fps": page.evaluate("window.studio.fps"),
        "delivered_fps": round(stats["meanShownFps"], 2),
        "generated_fps": done["generated_fps"],
        "first_frame_s": round(stats["firstFrameMs"] / 1000, 2),
        "first_chunk_s": done["first_chunk_s"],
        "click_to_frame_s": [round(ms / 1000, 2) for ms in stats["switchLatenciesMs"]],
        "server_click_to_frame_s": done["server_switch_latencies_s"],
        "switch_frames": stats["switchFrames"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "weights" / "demo-student"))
    parser.add_argument("--seconds", type=float, default=12)
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--every", type=float, default=1.0,
                        help="seconds from a click's first frame shown to the next click")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    process, url = start_server(args.model)
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=args.chromium)
            figures = run(browser.new_page(), url, args.seconds, args.clicks, args.every)
            browser.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    print(json.dumps({"model": Path(args.model).name, "cpu_count": os.cpu_count(), **figures}, indent=2))


if __name__ == "__main__":
    main()
