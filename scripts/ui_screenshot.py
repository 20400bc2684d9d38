"""Take the README's screenshot of the MLflow UI showing a sweep (headless Chromium, Debian's package).

Not part of balance-lab or its tests; needs `apt install chromium` and `pip install playwright`
(in any environment; the browser is the system one, nothing is downloaded). With a `balance-lab ui`
running:

    python scripts/ui_screenshot.py http://127.0.0.1:5000 paper_main docs/ui.png
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
import urllib.request


def experiment_id(base: str, name: str) -> str:
    query = urllib.parse.urlencode({"experiment_name": name})
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}") as response:
        return json.loads(response.read())["experiment"]["experiment_id"]


def main(base: str, experiment: str, out: str) -> None:
    from playwright.sync_api import sync_playwright

    eid = experiment_id(base, experiment)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"{base}/#/experiments/{eid}/runs")
        page.get_by_text(f"{experiment}-sweep").first.wait_for(timeout=30_000)
        for attempt in (
            lambda: page.get_by_role("button", name=re.compile("^close", re.I)).last.click(timeout=2000),
            lambda: page.get_by_text("Model training").first.click(timeout=2000),
        ):
            try:
                attempt()
            except Exception as exc:  # noqa: BLE001 - cosmetic steps; the screenshot is still useful
                print(f"skipped a cosmetic step: {type(exc).__name__}", file=sys.stderr)
        page.wait_for_timeout(1500)
        # expand the sweep's parent row (the [+] left of its name) to show its nested runs
        box = page.get_by_text(f"{experiment}-sweep").first.bounding_box()
        page.mouse.click(box["x"] - 32, box["y"] + box["height"] / 2)
        page.wait_for_timeout(1500)
        page.screenshot(path=out)
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
