"""Label-free model selection: grid parsing, ranking, Spearman, resuming, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from selfsup.cli import main
from selfsup.config import RunConfig
from selfsup.errors import ConfigError
from selfsup.train.sweep import SweepResult, SweepRun, grid_points, parse_grid, run_sweep, spearman


def test_parse_grid_commas_and_yaml_lists() -> None:
    grid = parse_grid(["train.lr=0.001,3e-3", "method.temperature=[0.1, 0.2]", "backbone.hidden_dims=[[16],[32, 8]]"])
    assert grid == {"train.lr": [0.001, 0.003], "method.temperature": [0.1, 0.2], "backbone.hidden_dims": [[16], [32, 8]]}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["train.lr"], "key=v1,v2"),
        (["=1,2"], "empty key"),
        (["train.lr=1", "train.lr=2"], "given twice"),
        (["train.lr="], "no values"),
        (["train.lr=[1, 2"], "YAML"),
        ([], "at least one"),
    ],
)
def test_parse_grid_errors(entries: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid(entries)


def test_grid_points_is_the_product_in_order() -> None:
    points = grid_points({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(points) == 6
    assert points[0] == {"a": 1, "b": "x"} and points[1] == {"a": 1, "b": "y"} and points[-1] == {"a": 2, "b": "z"}


def test_spearman_closed_forms() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # d = ranks differ by (0, 0, 1, -1): rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def _runs(values: list[tuple[float, float, float | None]]) -> list[SweepRun]:
    return [
        SweepRun(f"{i:02d}", {"x": i}, f"/r/{i}", "finished", {"rankme": r, "alpha_req": a}, acc)
        for i, (r, a, acc) in enumerate(values)
    ]


def test_selection_regret_and_alpha_orientation() -> None:
    runs = _runs([(10.0, 3.0, 0.80), (50.0, 0.6, 0.90), (30.0, 1.05, 0.95)])
    by_rank = SweepResult(Path("."), "rankme", "linear", runs)
    assert by_rank.chosen_without_labels().name == "01"  # highest RankMe
    assert by_rank.chosen_with_labels().name == "02"
    summary = by_rank.summary()
    assert summary["regret"] == pytest.approx(0.05)
    assert summary["spearman"] == pytest.approx(0.5)  # ranks (1,3,2) vs (1,2,3)
    by_alpha = SweepResult(Path("."), "alpha_req", "linear", runs)
    assert by_alpha.chosen_without_labels().name == "02"  # alpha closest to 1
    assert by_alpha.summary()["regret"] == pytest.approx(0.0)
    failed = SweepRun("03", {"x": 3}, "/r/3", "failed: loss nan")
    assert SweepResult(Path("."), "rankme", "linear", [*runs, failed]).chosen_without_labels().name == "01"


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four Gaussian blobs in 12 dimensions: 160 train and 80 test samples with labels."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 12)) * 3
    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 4
        return (centres[y] + rng.normal(size=(n, 12))).astype(np.float32), y
    x, y = draw(160)
    xt, yt = draw(80)
    path = tmp_path_factory.mktemp("data") / "blobs.npz"
    np.savez(path, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return path


def _base(data: Path) -> RunConfig:
    return RunConfig.from_dict({
        "data": str(data), "backbone": {"name": "mlp"},
        "train": {"epochs": 2, "batch_size": 32, "progress_bar": False, "warmup_epochs": 0},
    })


def test_sweep_runs_ranks_writes_and_resumes(blobs: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    lines: list[str] = []
    result = run_sweep(_base(blobs), {"train.lr": [1e-3, 1e-2]}, out, log=lines.append)
    assert [r.status for r in result.runs] == ["finished", "finished"]
    for run in result.runs:
        assert run.signals["rankme"] > 1.0 and math.isfinite(run.signals["alpha_req"])
        assert 0.25 < run.accuracy <= 1.0  # above chance on 4 classes
        assert (Path(run.run_dir) / "metrics.json").is_file()
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["summary"]["chosen_without_labels"] == result.chosen_without_labels().name
    assert "Spearman" in (out / "sweep.md").read_text()
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Rerunning the same sweep trains nothing and keeps the numbers.
    again = run_sweep(_base(blobs), {"train.lr": [1e-3, 1e-2]}, out, log=lines.append)
    assert [r.signals for r in again.runs] == [r.signals for r in result.runs]
    assert sum("finished earlier" in line for line in lines) == 2
    # Another grid in the same directory is refused.
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(_base(blobs), {"train.lr": [5e-3]}, out)


def test_bad_grid_key_fails_before_training(blobs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grid point"):
        run_sweep(_base(blobs), {"train.lr": [1e-3], "method.no_such_knob": [1]}, tmp_path / "s")
    assert not (tmp_path / "s" / "runs").exists()
    with pytest.raises(ConfigError, match="signal"):
        run_sweep(_base(blobs), {"train.lr": [1e-3]}, tmp_path / "s", signal="accuracy")


def test_sweep_cli(blobs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main([
        "sweep", "--data", str(blobs), "--backbone", "mlp", "--epochs", "1", "--batch-size", "32", "--no-progress",
        "--grid", "method.temperature=0.1,0.5", "-o", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Chosen without labels (rankme)" in printed and "| 01-temperature=0.5 |" in printed
    assert main(["sweep", "--data", str(blobs), "--grid", "train.lr", "-o", str(tmp_path / "x")]) == 2
