"""Render a run's report.html to a PNG with headless Chromium, to check the page as a person sees it.

    python scripts/screenshot_report.py runs/simclr-digits/report.html -o report.png
    python scripts/screenshot_report.py runs/simclr-digits -o report.png --width 1280 --height 4000
    python scripts/screenshot_report.py runs/simclr-digits -o docs/images/report-digits.png --trim --palette

Chromium runs with a fresh, temporary profile and no network features (the page is
self-contained, so it needs none). On Debian: ``apt-get install chromium``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH (or at /usr/bin/chromium), else ``None``."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def screenshot(html: str | Path, output: str | Path, width: int = 1280, height: int = 4000, timeout: float = 120) -> Path:
    """Render ``html`` (a report.html or the run directory holding it) to the PNG ``output``."""
    html = Path(html)
    if html.is_dir():
        html = html / "report.html"
    if not html.is_file():
        raise FileNotFoundError(f"{html} does not exist; write it first with: selfsup report RUN_DIR")
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found; install it (Debian: apt-get install chromium)")
    output = Path(output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="selfsup-chromium-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={width},{height}",
            f"--screenshot={output}", html.resolve().as_uri(),
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 or not output.is_file():
        raise RuntimeError(f"chromium failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return output


def shrink(path: str | Path, trim: bool = True, palette: bool = True) -> Path:
    """Trim the empty page background below the content and/or save with a 256-colour palette."""
    from PIL import Image, ImageChops

    path = Path(path)
    image = Image.open(path).convert("RGB")
    if trim:
        background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
        box = ImageChops.difference(image, background).getbbox()
        if box is not None:
            image = image.crop((0, 0, image.width, min(image.height, box[3] + 24)))
    if palette:
        image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="report.html, or the run directory that holds it")
    parser.add_argument("-o", "--output", type=Path, default=Path("report.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--trim", action="store_true", help="cut the empty background below the page")
    parser.add_argument("--palette", action="store_true", help="save with 256 colours (a much smaller file)")
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.report, args.output, args.width, args.height)
        if args.trim or args.palette:
            shrink(path, trim=args.trim, palette=args.palette)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
