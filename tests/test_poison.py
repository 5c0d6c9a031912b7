"""Simulated backdoor attacks (data/poison.py), the attack success rate (evaluate/attack.py), the
poisoned-sample detectors (evaluate/detect.py), data.exclude, and the bad input of
``selfsup poison`` / ``scan`` / ``pretrain --exclude`` through the CLI's ``main`` in process."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.cli import _config_from_args, build_parser, main
from selfsup.data import data_options, load_dataset
from selfsup.data.poison import (
    Attack, add_ctrl_trigger, ctrl_perturbation, ctrl_positions, dct2, idct2, make_patch, paste_patch, patch_side,
    poison_images, poison_splits, random_locations, rgb_to_ycbcr, ycbcr_to_rgb, write_poisoned,
)
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.attack import attack_probe, attack_success_rate
from selfsup.evaluate.report import scan_figures
from selfsup.evaluate.scan import read_scan
from selfsup.rundir import load_run_config
from selfsup.evaluate.detect import (
    PatchSearchOptions, density_scores, detection_metrics, flag_top, kmeans_clusters, patchsearch_scores, rank_scores,
    spectral_scores,
)


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


# ----------------------------------------------------------------------------------------------
# Triggers
# ----------------------------------------------------------------------------------------------


def test_dct_round_trip_and_ycbcr_round_trip() -> None:
    x = torch.rand(2, 3, 12, 10, dtype=torch.float64) * 255
    assert torch.allclose(idct2(dct2(x)), x, atol=1e-9)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-9)
    grey = torch.full((1, 3, 4, 4), 77.0, dtype=torch.float64)
    ycbcr = rgb_to_ycbcr(grey)
    assert torch.allclose(ycbcr[:, 0], grey[:, 0]) and torch.allclose(ycbcr[:, 1:], torch.full_like(ycbcr[:, 1:], 128.0))


@pytest.mark.parametrize("size,expected", [(32, ((15, 15), (31, 31))), (28, ((13, 13), (27, 27))), (8, ((3, 3), (7, 7)))])
def test_ctrl_positions_follow_the_stated_rule(size: int, expected: tuple) -> None:
    assert ctrl_positions(size, size) == expected


def test_ctrl_changes_exactly_the_two_luminance_coefficients_of_a_grey_image() -> None:
    x = 60 + 130 * torch.rand(5, 1, 28, 28, dtype=torch.float64)
    change = dct2(ctrl_perturbation(x, magnitude=50.0)) - dct2(x)
    expected = torch.zeros(28, 28, dtype=torch.float64)
    expected[13, 13] = expected[27, 27] = 50.0
    assert torch.allclose(change, expected.expand_as(change), atol=1e-9)


def test_ctrl_changes_only_the_chrominance_coefficients_of_a_colour_image() -> None:
    x = 60 + 130 * torch.rand(3, 3, 16, 16, dtype=torch.float64)
    change = dct2(rgb_to_ycbcr(ctrl_perturbation(x, magnitude=100.0))) - dct2(rgb_to_ycbcr(x))
    expected = torch.zeros(3, 16, 16, dtype=torch.float64)
    for channel in (1, 2):  # Cb and Cr; the luminance is untouched
        expected[channel, 7, 7] = expected[channel, 15, 15] = 100.0
    assert torch.allclose(change, expected.expand_as(change), atol=1e-8)


def test_ctrl_trigger_is_nearly_invisible_and_deterministic() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(40, 216, (8, 1, 28, 28), generator=generator, dtype=torch.uint8)
    triggered = add_ctrl_trigger(images)  # the default magnitude, 100 on 0..255
    diff = triggered.double() - images.double()
    psnr = 10 * math.log10(255**2 / float((diff**2).mean()))
    assert psnr > 30  # two coefficients of 784 moved: about 34 dB
    assert diff.abs().max() <= 2 * 2 * 100 / 28 + 1  # each basis function is at most 2/N in size
    assert diff.abs().max() > 0
    assert torch.equal(add_ctrl_trigger(images), triggered)


def test_patch_is_pasted_at_the_stated_locations_and_nowhere_else() -> None:
    generator = torch.Generator().manual_seed(3)
    images = torch.zeros(4, 3, 20, 20, dtype=torch.uint8)
    side = patch_side(20, 20)
    assert side == round(50 / 224 * 20) == 4
    patch = make_patch(3, side, generator)
    assert patch.shape == (3, 4, 4) and patch.dtype == torch.uint8
    where = random_locations(4, 20, 20, side, generator)
    assert ((where >= 0) & (where <= 20 - side)).all()
    out = paste_patch(images, patch, where)
    for image, (r, c) in zip(out, where.tolist()):
        assert torch.equal(image[:, r : r + side, c : c + side], patch)
        outside = image.clone()
        outside[:, r : r + side, c : c + side] = 0
        assert not outside.any()


def test_poison_images_rate_target_and_seed() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (200, 1, 16, 16), generator=generator, dtype=torch.uint8)
    labels = torch.arange(200) % 4
    out, chosen, spec = poison_images(images, labels, "patch", target_class=2, rate=0.1, seed=5)
    assert len(chosen) == 20 == spec.num_poisoned
    assert (labels[chosen] == 2).all()
    changed = (out != images).flatten(1).any(dim=1)
    assert set(torch.nonzero(changed).flatten().tolist()) <= set(chosen.tolist())
    assert changed[chosen].float().mean() > 0.9  # a random patch could equal the pixels under it, never all of them
    side = len(spec.patch[0])
    for i in chosen.tolist():  # each poisoned image differs only inside one side x side square
        rows, cols = torch.nonzero((out[i] != images[i])[0], as_tuple=True)
        if len(rows):
            assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
    again, chosen_again, _ = poison_images(images, labels, "patch", 2, 0.1, seed=5)
    assert torch.equal(again, out) and torch.equal(chosen_again, chosen)
    other, chosen_other, _ = poison_images(images, labels, "patch", 2, 0.1, seed=6)
    assert not torch.equal(other, out)


def test_poison_splits_and_manifest(tmp_path: Path) -> None:
    splits = load_dataset("digits")
    arrays, chosen, spec = poison_splits(splits, "ctrl", "3", 0.02, seed=0)
    n = len(splits.train)
    assert len(chosen) == round(0.02 * n)
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (n, 1, 8, 8)
    assert np.array_equal(arrays["y_train"], splits.train.labels.numpy())  # not relabelled
    assert (arrays["y_train"][chosen.numpy()] == 3).all()
    clean_test = (splits.test.x.numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(arrays["x_test"], clean_test)  # the test split stays clean
    npz, manifest, description = write_poisoned(tmp_path / "p.npz", arrays, chosen, spec)
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == n and {r["id"] for r in rows if r["poisoned"] == "1"} == {str(i) for i in chosen.tolist()}
    assert json.loads(description.read_text())["target_class"] == 3
    reread = load_dataset(f"arrays:{npz}")
    assert len(reread.train) == n and reread.test is not None
    assert reread.train.sample_id(int(chosen[0])) == str(int(chosen[0]))  # manifest ids are the arrays' ids


# ----------------------------------------------------------------------------------------------
# Attack success rate
# ----------------------------------------------------------------------------------------------


def test_attack_success_rate_of_a_hand_made_probe() -> None:
    weights = torch.eye(3)  # class = the largest coordinate

    def probe(z: torch.Tensor) -> torch.Tensor:
        return (z @ weights).argmax(dim=1)

    labels = torch.tensor([0, 0, 1, 1, 2, 2])  # two images of the target class 2 do not count
    triggered = torch.tensor([[0, 0, 1.0], [1, 0, 0], [0, 0, 2], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    assert attack_success_rate(probe(triggered), labels, target_class=2) == pytest.approx(2 / 4)
    with pytest.raises(DataError, match="target class"):
        attack_success_rate(torch.tensor([2, 2]), torch.tensor([2, 2]), 2)


def test_attack_probe_sees_a_trigger_that_moves_features_to_the_target() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 4
    train_y = torch.arange(400) % 4
    test_y = torch.arange(200) % 4
    train_z = centres[train_y] + torch.randn(400, 8, generator=generator)
    test_z = centres[test_y] + torch.randn(200, 8, generator=generator)
    others = test_y != 1
    moved = test_z[others] + (centres[1] - centres[test_y[others]])  # the trigger pulls to class 1
    hit = attack_probe(train_z, train_y, test_z, test_y, moved, test_y[others], target_class=1)
    miss = attack_probe(train_z, train_y, test_z, test_y, test_z[others], test_y[others], target_class=1)
    assert hit.clean_accuracy > 0.9 and hit.asr > 0.9
    assert miss.asr < 0.1 and miss.asr == pytest.approx(hit.clean_target_rate)


# ----------------------------------------------------------------------------------------------
# Detectors
# ----------------------------------------------------------------------------------------------


def planted_embeddings(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian clusters of 200 in 16-D and 30 planted points: tight, inside cluster 0 but
    offset along one direction. Returns embeddings [630, 16] and the planted mask."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(16)[:3] * 12
    clean = torch.cat([c + torch.randn(200, 16, generator=g) for c in centres])
    planted = centres[0] + 6 * torch.eye(16)[5] + 0.1 * torch.randn(30, 16, generator=g)
    z = torch.cat([clean, planted])
    order = torch.randperm(len(z), generator=g)
    truth = torch.zeros(len(z), dtype=torch.bool)
    truth[200 * 3 :] = True
    return z[order], truth[order]


def test_density_and_spectral_rank_a_planted_tight_group_first() -> None:
    z, truth = planted_embeddings()
    density = density_scores(z, k=10)
    assert truth[rank_scores(density) <= 30].all()
    clusters, centres = kmeans_clusters(z, 3, seed=0)
    assert torch.allclose(centres.norm(dim=1), torch.ones(3))
    assert len(torch.unique(clusters[truth])) == 1  # the planted points sit in their host's cluster
    spectral = spectral_scores(z, clusters)
    assert truth[rank_scores(spectral) <= 30].float().mean() >= 0.9
    metrics = detection_metrics(spectral, flag_top(spectral, 30 / len(z)), truth)
    assert metrics["auroc"] > 0.95 and metrics["recall"] >= 0.9 and metrics["flagged"] == 30


def test_rank_flag_and_metrics_conventions() -> None:
    scores = torch.tensor([0.1, 0.9, 0.5, 0.9, -1.0])
    assert rank_scores(scores).tolist() == [4, 1, 3, 2, 5]  # ties: the earlier sample first
    assert flag_top(scores, 0.4).tolist() == [False, True, False, True, False]
    assert flag_top(scores, 0.99, minimum=0.0).tolist() == [True, True, True, True, False]
    truth = torch.tensor([False, True, False, True, False])
    m = detection_metrics(scores, flag_top(scores, 0.6), truth)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 1.0 and m["auroc"] == 1.0
    with pytest.raises(ConfigError, match="flag-rate"):
        flag_top(scores, 1.5)


class TriggerEncoder(nn.Module):
    """A hand-made 'backdoored' encoder: four quadrant means of the image, and a fifth feature that
    is 5 where a 3x3 window holds the trigger (a linear matched filter, rectified so that clean
    images give 0), so the trigger dominates the embedding wherever it is pasted."""

    def __init__(self, trigger: torch.Tensor) -> None:
        super().__init__()
        t = trigger.float().flatten() / 255
        self.register_buffer("pattern", t - t.mean())
        self.peak = float((self.pattern * t).sum())
        self.embed_dim = 5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        correlation = (F.unfold(x, 3) * self.pattern[None, :, None]).sum(dim=1) / self.peak  # [N, L], 1 at the trigger
        match = 10 * F.relu(correlation.max(dim=1).values - 0.5)
        quadrants = F.adaptive_avg_pool2d(x, 2).flatten(1)
        return torch.cat([quadrants, match[:, None]], dim=1)


def test_patchsearch_finds_the_images_carrying_the_trigger() -> None:
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(300, 1, 12, 12, generator=g) * 0.25 * 255).to(torch.uint8)
    images[150:] += 120  # two kinds of clean image
    trigger = torch.tensor([[[255, 0, 255], [0, 255, 0], [255, 0, 255]]], dtype=torch.uint8)
    poisoned = torch.randperm(300, generator=g)[:20]
    images[poisoned] = paste_patch(images[poisoned], trigger, random_locations(20, 12, 12, 3, g))
    encoder = TriggerEncoder(trigger)
    embeddings = encoder(images)
    options = PatchSearchOptions(num_clusters=6, flip_set_size=60, window_fraction=0.25, seed=0)
    found = patchsearch_scores(encoder, lambda positions: images[positions].float() / 255, embeddings, options)
    truth = torch.zeros(300, dtype=torch.bool)
    truth[poisoned] = True
    assert found.window_side == 3 and 50 <= found.flip_set_size <= 60  # 10 per cluster, fewer in a small one
    assert found.scored[truth].all()  # the poisons' cluster is never pruned
    # Each poison's window pulls flip images into its cluster (the clean-background half or the
    # bright half of them: two poison clusters), more than any clean image's window does.
    assert found.scores[truth].min() > 0.15 and found.scores[truth].max() > 0.5
    assert found.scores[truth].min() > found.scores[~truth].max()
    for i in poisoned.tolist():  # the candidate window is where the trigger is
        r, c = found.windows[i].tolist()
        assert torch.equal(images[i, :, r : r + 3, c : c + 3], trigger)
    assert detection_metrics(found.scores, flag_top(found.scores, 20 / 300), truth)["auroc"] > 0.99


# ----------------------------------------------------------------------------------------------
# data.exclude
# ----------------------------------------------------------------------------------------------


def test_exclude_leaves_out_the_flagged_ids(tmp_path: Path) -> None:
    scan = tmp_path / "scan.csv"
    scan.write_text("id,score,rank,flagged\n5,0.9,1,1\n7,0.5,2,0\n11,0.4,3,1\n")
    train = load_dataset("digits", options={"exclude": str(scan)}).train
    ids = {train.sample_id(i) for i in range(len(train))}
    assert len(train) == 1347 - 2 and "5" not in ids and "11" not in ids and "7" in ids
    listed = tmp_path / "ids.csv"
    listed.write_text("id\n5\n7\n")  # no flagged column: every listed id
    assert len(load_dataset("digits", options={"exclude": str(listed)}).train) == 1347 - 2
    subset = load_dataset("digits", options={"train_subset": 100}).train
    two = [subset.sample_id(3), subset.sample_id(50)]  # ids are the dataset's, not the subset's positions
    listed.write_text("id\n" + "\n".join(two) + "\n")
    smaller = load_dataset("digits", options={"train_subset": 100, "exclude": str(listed)}).train
    assert len(smaller) == 98 and not {smaller.sample_id(i) for i in range(98)} & set(two)


def test_exclude_is_recorded_as_an_absolute_path_in_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert data_options({"exclude": "flagged.csv"}).exclude == str(tmp_path / "flagged.csv")
    args = build_parser().parse_args(["pretrain", "--data", "digits", "--exclude", "flagged.csv"])
    config = _config_from_args(args)
    assert config.data.name == "digits" and config.data.params["exclude"] == "flagged.csv"
    code, _, err = run_cli("pretrain", "--resume", str(tmp_path), "--exclude", "flagged.csv")
    assert code == 2 and "--exclude" in err


# ----------------------------------------------------------------------------------------------
# Bad input through the command line: one line each
# ----------------------------------------------------------------------------------------------


def test_poison_bad_input(tmp_path: Path) -> None:
    out = str(tmp_path / "p.npz")
    assert_one_line_error(*run_cli("poison", "digits", "--attack", "blend", "--target-class", "3", "-o", out)[::2],
                          "unknown attack 'blend'", "ctrl, patch")
    for rate in ("0", "1.5", "-0.1"):
        assert_one_line_error(*run_cli("poison", "digits", "--attack", "patch", "--target-class", "3", "--rate", rate,
                                       "-o", out)[::2], "--rate", "(0, 1)")
    assert_one_line_error(*run_cli("poison", "digits", "--attack", "patch", "--target-class", "12", "-o", out)[::2],
                          "target class '12'", "digits")
    assert_one_line_error(*run_cli("poison", "digits", "--attack", "patch", "--target-class", "3", "--rate", "0.5",
                                   "-o", out)[::2], "lower --rate")
    assert_one_line_error(*run_cli("poison", "wine", "--attack", "ctrl", "--target-class", "0", "-o", out)[::2],
                          "wine is vector data", "images only")
    assert_one_line_error(*run_cli("poison", "digits", "--attack", "ctrl", "--target-class", "3", "-o",
                                   str(tmp_path / "p.csv"))[::2], "must end in .npz")
    assert not list(tmp_path.iterdir())  # nothing written


def test_exclude_and_scan_bad_input(tmp_path: Path) -> None:
    base = ["pretrain", "--data", "digits", "--epochs", "1", "--no-progress", "-o", str(tmp_path / "run")]
    assert_one_line_error(*run_cli(*base, "--exclude", str(tmp_path / "missing.csv"))[::2], "missing.csv does not exist")
    no_id = tmp_path / "no_id.csv"
    no_id.write_text("sample,flagged\n3,1\n")
    assert_one_line_error(*run_cli(*base, "--exclude", str(no_id))[::2], "no 'id' column", "sample, flagged")
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,flagged\n3,1\n99999,1\n")
    assert_one_line_error(*run_cli(*base, "--exclude", str(unknown))[::2], "'99999'", "not in the training split")
    bad_flag = tmp_path / "bad_flag.csv"
    bad_flag.write_text("id,flagged\n3,maybe\n")
    assert_one_line_error(*run_cli(*base, "--exclude", str(bad_flag))[::2], "line 2", "flagged is 'maybe'")
    assert not (tmp_path / "run").exists()
    assert_one_line_error(*run_cli("scan", str(tmp_path / "no_run"))[::2], "no_run")
    assert_one_line_error(*run_cli("scan", str(tmp_path), "--detector", "magic")[::2], "unknown detector 'magic'")


# ----------------------------------------------------------------------------------------------
# The three commands end to end: poison -> pretrain -> scan -> pretrain --exclude
# ----------------------------------------------------------------------------------------------

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "simclr-digits.yaml"


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits upscaled to 16x16 (a set the test writes), 3% of it poisoned with the patch trigger
    (class 3), and one epoch of SimCLR on it."""
    tmp = tmp_path_factory.mktemp("poisoned")
    digits = load_dataset("digits")

    def upscale(source) -> np.ndarray:
        x = F.interpolate(source.x, size=16, mode="bilinear", align_corners=False)
        return x.mul(255).round().clamp(0, 255).to(torch.uint8).numpy()

    np.savez(tmp / "digits16.npz", x_train=upscale(digits.train), y_train=digits.train.labels.numpy(),
             x_test=upscale(digits.test), y_test=digits.test.labels.numpy())
    code, out, err = run_cli("poison", f"arrays:{tmp / 'digits16.npz'}", "--attack", "patch", "--target-class", "3",
                             "--rate", "0.03", "-o", str(tmp / "poisoned.npz"))
    assert code == 0, err
    assert "40 of class 3 with the patch trigger" in out
    code, _, err = run_cli("pretrain", "-c", str(RECIPE), "--data", f"arrays:{tmp / 'poisoned.npz'}", "--epochs", "1",
                           "--batch-size", "128", "--no-eval", "--no-progress", "-o", str(tmp / "run"))
    assert code == 0, err
    return tmp


def test_scan_finds_the_planted_samples_and_pretrain_excludes_them(poisoned_run: Path) -> None:
    run, manifest = poisoned_run / "run", poisoned_run / "poisoned.manifest.csv"
    code, out, err = run_cli("scan", str(run), "--detector", "outlier", "--manifest", str(manifest))
    assert code == 0, err
    scan = read_scan(run / "scan.csv")
    with manifest.open() as handle:
        planted = {r["id"] for r in csv.DictReader(handle) if r["poisoned"] == "1"}
    truth = torch.tensor([i in planted for i in scan["id"]])
    assert len(scan["id"]) == 1347 and len(planted) == 40
    metrics = detection_metrics(torch.from_numpy(scan["score"]), torch.from_numpy(scan["flagged"]), truth)
    assert metrics["auroc"] >= 0.9, metrics
    assert scan["flagged"].sum() == round(0.05 * 1347) and sorted(scan["rank"]) == list(range(1, 1348))
    assert f"AUROC {metrics['auroc']:.3f}" in out
    assert (run / "scan.png").read_bytes()[:4] == b"\x89PNG"
    assert [f.name for f in scan_figures(run)] == ["scan_scores", "scan_top"]

    code, _, err = run_cli("pretrain", "--data", f"arrays:{poisoned_run / 'poisoned.npz'}", "--exclude",
                           str(run / "scan.csv"), "--epochs", "1", "--batch-size", "128", "--no-eval", "--no-progress",
                           "--set", "train.max_steps=2", "-o", str(poisoned_run / "defended"))
    assert code == 0, err
    config = load_run_config(poisoned_run / "defended")
    assert config.data.params["exclude"] == str((run / "scan.csv").absolute())  # recorded for a resume
    train = load_dataset(config.data.name, options=config.data.params).train
    kept = {train.sample_id(i) for i in range(len(train))}
    flagged = set(scan["id"][scan["flagged"]])
    assert len(train) == 1347 - len(flagged) and not kept & flagged


def test_patchsearch_through_the_command_line(poisoned_run: Path) -> None:
    arrays = np.load(poisoned_run / "poisoned.npz")
    small = poisoned_run / "small.npz"
    np.savez(small, x_train=arrays["x_train"][:40], y_train=arrays["y_train"][:40])
    out_csv = poisoned_run / "small_scan.csv"
    code, out, err = run_cli("scan", str(poisoned_run / "run"), "--data", f"arrays:{small}", "--clusters", "2",
                             "--flip-set", "4", "--flag-rate", "0.1", "-o", str(out_csv))
    assert code == 0, err
    scan = read_scan(out_csv)
    assert len(scan["id"]) == 40 and scan["flagged"].sum() <= 4
    assert (poisoned_run / "small_scan.png").is_file()
    code, _, err = run_cli("scan", str(poisoned_run / "run"), "--data", f"arrays:{small}", "-o", str(out_csv))
    assert_one_line_error(code, err, "already exists", "--force")


def test_evaluate_attack_reports_asr_beside_clean_accuracy(poisoned_run: Path) -> None:
    run, attack = poisoned_run / "run", poisoned_run / "poisoned.attack.json"
    code, out, err = run_cli("evaluate", str(run), "--attack", str(attack))
    assert code == 0, err
    assert "ASR" in out and "pretrained" in out and "random-init" in out
    record = json.loads((run / "metrics.json").read_text())["attack"]
    assert record["attack"] == "patch" and set(record["results"]) == {"pretrained", "random-init"}
    for result in record["results"].values():
        assert 0 <= result["asr"] <= 1 and 0.1 < result["clean_accuracy"] <= 1
        assert result["num_triggered"] == 450 - 46  # the test images of the nine other classes
    assert_one_line_error(*run_cli("evaluate", str(run), "--attack", str(poisoned_run / "nope.json"))[::2],
                          "nope.json does not exist")
