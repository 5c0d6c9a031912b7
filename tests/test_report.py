"""The run report: a self-contained HTML page and its PNG figures, on tiny runs (seconds on a CPU)."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selfsup.cli import main
from selfsup.config import RunConfig
from selfsup.evaluate.report import FIGURES_DIR, REPORT_FILE, collapse_alarms, monitor_series, write_report
from selfsup.evaluate.run import evaluate_run
from selfsup.train.runner import pretrain

SECTIONS = ("evaluation", "training_curves", "monitors", "spectrum", "embedding_map", "config")
FIGURES = ("training_curves", "monitors", "spectrum", "embedding_map")
ROOT = Path(__file__).resolve().parents[1]


def tiny_run(run_dir: Path, data: str, epochs: int = 2, batch_size: int = 64) -> Path:
    config = RunConfig(data=data)
    config.train.epochs = epochs
    config.train.batch_size = batch_size
    config.train.monitor_every_n_epochs = 1
    config.train.progress_bar = False
    pretrain(config, run_dir=run_dir, evaluate=False)
    return run_dir


def inlined_pngs(page: str) -> list[Image.Image]:
    images = []
    for encoded in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page):
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        image.load()
        assert image.format == "PNG"
        images.append(image)
    return images


def assert_self_contained(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE), "external URL"
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs of SimCLR on wine (labeled vectors, with a test split), not evaluated."""
    return tiny_run(tmp_path_factory.mktemp("report") / "wine", "wine")


def test_report_of_a_run_not_evaluated_yet(wine_run: Path) -> None:
    path = write_report(wine_run, max_points=120)
    assert path == wine_run / REPORT_FILE
    page = path.read_text()
    assert_self_contained(page)
    for section in SECTIONS:
        assert f"id='{section}'" in page, section
    assert "Not evaluated yet" in page and "selfsup evaluate RUN_DIR" in page
    for setting in ("simclr", "wine", "Batch size".lower(), "learning rate", "seed", "training time"):
        assert setting in page.lower(), setting
    images = inlined_pngs(page)
    assert len(images) == len(FIGURES)
    assert all(image.width >= 600 and image.height >= 300 for image in images)
    for name in FIGURES:
        png = wine_run / FIGURES_DIR / f"{name}.png"
        assert Image.open(png).format == "PNG", name
    assert "Colours are the true labels" in page and "t-SNE" in page
    assert "Collapse alarm" not in page


def test_report_of_an_evaluated_run(wine_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "evaluated"
    shutil.copytree(wine_run, run)
    evaluate_run(run, probes=("knn",))
    page = write_report(run, max_points=120).read_text()
    assert "Not evaluated yet" not in page
    table = page[page.index("<table>") : page.index("</table>")]
    for row in ("pretrained", "random-init", "raw input", "kNN", "RankMe"):
        assert row in table, row
    assert re.search(r"\d+\.\d%", table)


def test_monitors_and_collapse_alarm_from_any_record_keys(wine_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "alarm"
    shutil.copytree(wine_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    for record in metrics["monitors"]:
        record.update(alpha_req=1.1, alignment=0.8, uniformity=-2.0, online={"knn_accuracy": 0.7}, collapse=True)
    metrics["collapse_alarm"] = {"epoch": 2, "message": "RankMe fell below 5"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(run, max_points=60).read_text()
    assert "Collapse alarm" in page and "RankMe fell below 5" in page
    assert page.index("Collapse alarm") < page.index("id='evaluation'")  # at the top
    for title in ("RankMe (effective rank)", "α-ReQ", "Alignment", "Uniformity", "Online kNN accuracy"):
        assert title in page, title


def test_monitor_series_and_alarms_parsing() -> None:
    records = [
        {"epoch": 1, "step": 5, "rankme": 3.0, "embedding_std": 0.1, "online": {"knn": 0.5}, "collapse": False, "note": "x"},
        {"epoch": 2, "step": 10, "rankme": 2.0, "embedding_std": 0.05, "online": {"knn": 0.6}, "collapse": True},
        {"epoch": 3, "step": 15, "rankme": 1.0, "embedding_std": "nan", "collapse": True},
    ]
    axis, series = monitor_series(records)
    assert axis == "epoch"
    assert set(series) == {"rankme", "embedding_std", "online.knn"}
    assert series["rankme"][0].tolist() == [1, 2, 3] and series["online.knn"][1].tolist() == [0.5, 0.6]
    alarms = collapse_alarms({"monitors": records, "collapse_alarm": None})
    assert alarms == [([2.0, 3.0], "collapse flagged (collapse)")]
    assert collapse_alarms({"collapse_alarms": [{"epoch": 4, "reason": "std < 0.01"}]}) == [([4.0], "std < 0.01")]
    assert collapse_alarms({"monitors": [{"epoch": 1, "rankme": 2.0}]}) == []
    # The collapse alarm's own entry in metrics.json (train/monitors.py: CollapseAlarm.report()).
    assert collapse_alarms({"collapse": {"detected": False, "rank_fraction": 0.01, "std_threshold": 0.05}}) == []
    detected = {"detected": True, "kind": "complete", "epoch": 3, "message": "embedding std 0.001 < 0.05", "stopped": False}
    assert collapse_alarms({"collapse": detected}) == [([3.0], "embedding std 0.001 < 0.05")]
    assert collapse_alarms({"collapse_settings": {"std_threshold": 0.05}}) == []  # settings, not an alarm


def test_report_on_unlabeled_data(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run = tiny_run(tmp_path / "run", str(tmp_path / "x.npy"), epochs=1, batch_size=16)
    page = write_report(run).read_text()
    assert_self_contained(page)
    assert len(inlined_pngs(page)) == len(FIGURES)
    assert "no labels" in page and "not coloured" in page and "Colours are the true labels" not in page
    assert "Not evaluated yet" in page
    evaluate_run(run)  # RankMe only
    page = write_report(run).read_text()
    assert "No probe table: probes need labels" in page
    table = page[page.index("<table>") : page.index("</table>")]
    assert "kNN" not in table and "linear" not in table and "RankMe" in table


def selfsup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfsup.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_report(wine_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "cli"
    shutil.copytree(wine_run, run)
    shutil.rmtree(run / FIGURES_DIR, ignore_errors=True)
    result = selfsup("report", str(run), "--max-points", "50")
    assert result.returncode == 0, result.stderr
    assert "report.html" in result.stdout
    assert (run / REPORT_FILE).is_file() and len(list((run / FIGURES_DIR).glob("*.png"))) == len(FIGURES)

    # Bad run directories, through the same entry point in this process (no second torch import).
    for missing, fragment in ((tmp_path / "nope", "does not exist"), (tmp_path, "not a selfsup run directory")):
        assert main(["report", str(missing)]) == 2
        stderr = capsys.readouterr().err
        assert stderr.startswith("error: ") and fragment in stderr and "Traceback" not in stderr, stderr


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Chromium (apt-get install chromium)")
def test_screenshot_renders_the_report(wine_run: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("screenshot_report", ROOT / "scripts" / "screenshot_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not (wine_run / REPORT_FILE).is_file():
        write_report(wine_run, max_points=60)
    out = module.screenshot(wine_run, tmp_path / "shot.png", width=1000, height=1600)
    image = Image.open(out).convert("L")
    assert image.size == (1000, 1600)
    assert np.asarray(image).std() > 10  # something was drawn, not a blank page


def test_evaluation_tables_split_few_label_and_risk_columns() -> None:
    from selfsup.evaluate.report import _evaluation_html

    results = {
        "pretrained": {"linear": 0.9, "10-shot": {"mean": 0.8, "std": 0.05, "draws": 5}, "approx err": 0.01},
        "random-init": {"linear": 0.7, "10-shot": {"mean": 0.6, "std": 0.1, "draws": 5}, "approx err": 0.02},
    }
    page = _evaluation_html({"evaluation": {"data": "toy", "note": "n", "results": results}}, labeled=True)
    assert page.count("<table>") == 3  # probes, few labels, risk
    assert "<b>80.0±5.0%</b>" in page and "60.0±10.0%" in page  # mean ± std, best mean in bold
    assert "<b>90.0%</b>" in page  # the best accuracy in bold
    assert "<b>1.0%</b>" in page and "<b>2.0%</b>" not in page  # an error: the lowest in bold
