"""Tests of selfsup.data.timeseries: aeon's shipped UCR/UEA datasets, .ts/.csv/.tsv files and
arrays of series (small files written in tmp_path), the missing-value helpers and bad input."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data import list_datasets, list_timeseries_datasets, load_dataset
from selfsup.data.timeseries import (
    SHIPPED_DATASETS, fill_missing, load_series_arrays, load_series_csv, load_ts, load_ucr, observed_mask,
    pad_series, series_dataset,
)
from selfsup.errors import ConfigError, DataError

needs_aeon = pytest.mark.skipif(importlib.util.find_spec("aeon") is None, reason='needs pip install "selfsup[timeseries]"')


def aeon_file(name: str, split: str) -> Path:
    import aeon.datasets

    return Path(aeon.datasets.__file__).parent / "data" / name / f"{name}_{split}.ts"


# ----------------------------------------------------------------------------------------------
# Missing values and padding
# ----------------------------------------------------------------------------------------------


def test_observed_mask_and_fill_missing() -> None:
    nan = float("nan")
    x = torch.tensor([
        [[1.0, nan, 3.0, 4.0], [5.0, 6.0, 7.0, nan]],   # channel 0 misses t=1, channel 1 misses t=3
        [[1.0, 2.0, nan, nan], [1.0, 2.0, nan, nan]],   # a series of length 2, padded
    ])
    expected = torch.tensor([[True, False, True, False], [True, True, False, False]])
    assert torch.equal(observed_mask(x), expected)
    assert torch.equal(observed_mask(x[0]), expected[0])  # one series [C, T] -> [T]
    filled = fill_missing(x, -1.0)
    assert not torch.isnan(filled).any() and torch.isnan(x).sum() == 6  # input untouched
    assert torch.equal(filled == -1.0, torch.isnan(x))
    assert torch.equal(filled[~torch.isnan(x)], x[~torch.isnan(x)])
    assert torch.equal(fill_missing(x)[1, :, 2:], torch.zeros(2, 2))
    with pytest.raises(DataError, match="observed_mask expects"):
        observed_mask(torch.zeros(3))


def test_pad_series_pads_at_the_end_with_nan() -> None:
    series = [np.ones((2, 3)), np.full((2, 5), 2.0), np.arange(4.0)[None].repeat(2, 0)]
    out = pad_series(series)
    assert out.shape == (3, 2, 5) and out.dtype == np.float32
    lengths = observed_mask(torch.from_numpy(out)).sum(1)
    assert lengths.tolist() == [3, 5, 4]
    assert np.isnan(out[0, :, 3:]).all() and (out[0, :, :3] == 1).all()
    assert pad_series([np.arange(3.0), np.arange(2.0)]).shape == (2, 1, 3)  # univariate [T_i]
    assert pad_series([np.ones(2)], length=6).shape == (1, 1, 6)
    with pytest.raises(DataError, match="series 1 has 3"):
        pad_series([np.ones((2, 4)), np.ones((3, 4))])
    with pytest.raises(DataError, match="cannot pad to length 2"):
        pad_series([np.ones(4)], length=2)


# ----------------------------------------------------------------------------------------------
# Series held in memory: validation
# ----------------------------------------------------------------------------------------------


def test_series_dataset_shapes_and_labels() -> None:
    data = series_dataset(np.arange(12.0).reshape(3, 4), y=["b", "a", "b"], name="mine")
    assert data.x.shape == (3, 1, 4) and data.x.dtype == torch.float32 and data.modality == "timeseries"
    assert data.class_names == ["a", "b"] and data.y.tolist() == [1, 0, 1]
    multi = series_dataset(torch.zeros(2, 3, 5), y=torch.tensor([0, 1]), class_names=["no", "yes"])
    assert multi.sample_shape == (3, 5) and multi.y.tolist() == [0, 1]
    numeric = series_dataset(np.zeros((4, 2)), y=[10, 2, 2, 10])  # numeric order, not string order
    assert numeric.class_names == ["2", "10"] and numeric.y.tolist() == [1, 0, 0, 1]


def test_ragged_list_without_padding_is_refused() -> None:
    with pytest.raises(DataError, match="ragged.*pad_series"):
        series_dataset([[1.0, 2.0, 3.0], [1.0, 2.0]])
    with pytest.raises(DataError, match="ragged.*pad_series"):
        series_dataset(np.array([np.ones(3), np.ones(2)], dtype=object))
    padded = series_dataset(pad_series([[1.0, 2.0, 3.0], [1.0, 2.0]]))  # the fix the message names
    assert observed_mask(padded.x).sum(1).tolist() == [3, 2]


def test_nan_only_series_and_inf_are_refused_by_index() -> None:
    x = np.random.default_rng(0).normal(size=(4, 2, 6))
    x[2] = np.nan
    with pytest.raises(DataError, match=r"series 2 .*no observed timestamp \(every value is NaN"):
        series_dataset(x)
    x[2] = 0.0
    x[3, 1] = np.nan  # one channel all missing: no timestamp has every channel
    with pytest.raises(DataError, match="series 3 .*channel 1 is all NaN"):
        series_dataset(x)
    x[3, 1] = 0.0
    x[1, 0, 4] = np.inf
    with pytest.raises(DataError, match="series 1 .*infinite value at channel 0, timestamp 4"):
        series_dataset(x)
    x[1, 0, 4] = 1e300  # finite in float64, infinite in float32
    with pytest.raises(DataError, match="too large for float32"):
        series_dataset(x)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5)])
def test_wrong_dimensions_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match=r"must be \[N, T\] \(univariate\) or \[N, C, T\]"):
        series_dataset(np.zeros(shape))


def test_non_numeric_series_are_refused() -> None:
    with pytest.raises(DataError, match="must be numbers"):
        series_dataset(np.array([["a", "b"], ["c", "d"]]))


# ----------------------------------------------------------------------------------------------
# .npy / .npz through series:PATH
# ----------------------------------------------------------------------------------------------


def test_npy_univariate_becomes_n_1_t(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(7, 11)).astype(np.float32)
    x[3, 8:] = np.nan  # a shorter series, padded
    np.save(tmp_path / "s.npy", x)
    data = load_dataset(f"series:{tmp_path / 's.npy'}")
    assert data.test is None and data.train.x.shape == (7, 1, 11) and data.train.modality == "timeseries"
    assert torch.equal(torch.nan_to_num(data.train.x[:, 0], 99.0), torch.nan_to_num(torch.from_numpy(x), 99.0))
    assert observed_mask(data.train.x)[3].sum() == 8


def test_npz_splits_multivariate_padded_to_one_length(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x_train, x_test = rng.normal(size=(6, 3, 10)), rng.normal(size=(4, 3, 12))
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=np.array(["up", "down"] * 3),
             x_test=x_test, y_test=np.array(["down", "up", "up", "down"]))
    data = load_series_arrays(tmp_path / "d.npz")
    assert data.test is not None
    assert data.train.x.shape == (6, 3, 12) and data.test.x.shape == (4, 3, 12)
    assert torch.isnan(data.train.x[:, :, 10:]).all() and not torch.isnan(data.test.x).any()
    assert data.train.class_names == ["down", "up"] and data.test.y.tolist() == [0, 1, 1, 0]
    assert torch.allclose(data.train.x[:, :, :10], torch.from_numpy(x_train).float())

    np.savez(tmp_path / "xy.npz", x=x_train, y=np.array([3.0, 1.0, 3.0, 1.0, 3.0, 1.0]))
    xy = load_dataset(f"series:{tmp_path / 'xy.npz'}")
    assert xy.train.class_names == ["1", "3"] and xy.train.y.tolist() == [1, 0, 1, 0, 1, 0]


def test_npz_bad_input(tmp_path: Path) -> None:
    np.save(tmp_path / "ragged.npy", np.array([np.ones(3), np.ones(2)], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="ragged.npy holds an object array.*pad every series at the end with NaN"):
        load_dataset(f"series:{tmp_path / 'ragged.npy'}")
    x = np.zeros((5, 8))
    x[4] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(DataError, match=r"nan.npy: series 4 \(index 4\) has no observed timestamp"):
        load_dataset(f"series:{tmp_path / 'nan.npy'}")
    x[4] = -np.inf
    np.save(tmp_path / "inf.npy", x)
    with pytest.raises(DataError, match="inf.npy: series 4 .*infinite"):
        load_dataset(f"series:{tmp_path / 'inf.npy'}")
    np.save(tmp_path / "4d.npy", np.zeros((2, 1, 3, 4)))
    with pytest.raises(DataError, match=r"4d.npy has shape \(2, 1, 3, 4\)"):
        load_dataset(f"series:{tmp_path / '4d.npy'}")
    np.savez(tmp_path / "chan.npz", x_train=np.zeros((2, 3, 5)), x_test=np.zeros((2, 2, 5)))
    with pytest.raises(DataError, match="3 channel.*but .*'x_test'.* has 2"):
        load_dataset(f"series:{tmp_path / 'chan.npz'}")
    np.savez(tmp_path / "labels.npz", x=np.zeros((3, 4)), y=np.array([0, 1]))
    with pytest.raises(DataError, match="2 labels but .* has 3 series"):
        load_dataset(f"series:{tmp_path / 'labels.npz'}")
    np.savez(tmp_path / "keys.npz", a=np.zeros((3, 4)))
    with pytest.raises(DataError, match="found: 'a'"):
        load_dataset(f"series:{tmp_path / 'keys.npz'}")
    np.savez(tmp_path / "unseen.npz", x_train=np.zeros((2, 4)), y_train=[0, 1], x_test=np.zeros((1, 4)), y_test=[5])
    with pytest.raises(DataError, match="label.*5 that never occur"):
        load_dataset(f"series:{tmp_path / 'unseen.npz'}")


def test_missing_paths(tmp_path: Path) -> None:
    for spec in (f"series:{tmp_path / 'no.npy'}", str(tmp_path / "no.csv"), str(tmp_path / "no_TRAIN.ts"),
                 f"ucr:{tmp_path / 'Foo' / 'Foo_TRAIN.ts'}"):
        with pytest.raises(DataError, match="does not exist"):
            load_dataset(spec)
    with pytest.raises(ConfigError, match="no path after 'series:'"):
        load_dataset("series:")
    with pytest.raises(DataError, match="not a time-series file"):
        (tmp_path / "notes.txt").write_text("hi")
        load_dataset(f"series:{tmp_path / 'notes.txt'}")


# ----------------------------------------------------------------------------------------------
# CSV / TSV
# ----------------------------------------------------------------------------------------------


def test_csv_with_label_column_missing_cells_and_unequal_rows(tmp_path: Path) -> None:
    (tmp_path / "walk_TRAIN.csv").write_text(
        "t0,t1,class,t2,t3\n"
        "1.0,2.0,run,3.0,4.0\n"
        "\n"                       # blank lines are skipped
        "5,,walk,7,8\n"            # an empty cell is a missing value
        "9,10,run\n"               # a shorter row, padded at the end
        "0.5,NaN,walk,?,1.5\n"
    )
    (tmp_path / "walk_TEST.csv").write_text("t0,t1,class,t2,t3,t4\n1,2,walk,3,4,5\n")
    data = load_dataset(str(tmp_path / "walk_TRAIN.csv"))
    assert data.test is not None and data.train.modality == "timeseries"
    nan = float("nan")
    expected = torch.tensor([[1, 2, 3, 4, nan], [5, nan, 7, 8, nan], [9, 10, nan, nan, nan], [0.5, nan, nan, 1.5, nan]])
    assert data.train.x.shape == (4, 1, 5) and data.test.x.shape == (1, 1, 5)  # one length: the test row has 5
    assert torch.allclose(data.train.x[:, 0], expected, equal_nan=True)
    assert data.train.class_names == ["run", "walk"] and data.train.y.tolist() == [0, 1, 0, 1]
    assert data.test.y.tolist() == [1] and torch.equal(data.test.x[0, 0], torch.arange(1.0, 6.0))


def test_csv_without_header_is_unlabeled_and_trailing_empty_columns_dropped(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_text("0.1,0.2,0.3,\n0.4,0.5,,\n")
    data = load_series_csv(tmp_path / "u.csv")
    assert data.test is None and data.train.y is None and data.train.x.shape == (2, 1, 3)
    assert observed_mask(data.train.x).sum(1).tolist() == [3, 2]


def test_csv_labels_first_without_header_warns(tmp_path: Path) -> None:
    rows = [f"{c},{0.1 * i:.2f},{0.3 * i + 0.05:.2f}" for i, c in enumerate([1, 2, 1, 2, 1, 2])]
    (tmp_path / "ucr.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="looks like class labels.*add a header row"):
        data = load_series_csv(tmp_path / "ucr.csv")
    assert data.train.y is None and data.train.x.shape == (6, 1, 3)


def test_tsv_is_the_ucr_archive_layout(tmp_path: Path) -> None:
    (tmp_path / "Toy").mkdir()
    (tmp_path / "Toy" / "Toy_TRAIN.tsv").write_text("2\t0.5\t1.5\t2.5\n1\t-1\t-2\tNaN\n2\t3\t4\t5\n")
    (tmp_path / "Toy" / "Toy_TEST.tsv").write_text("1\t7\t8\t9\n")
    data = load_dataset(f"ucr:{tmp_path / 'Toy'}")  # a directory Name/ with Name_TRAIN.tsv
    assert data.train.x.shape == (3, 1, 3) and data.train.class_names == ["1", "2"]
    assert data.train.y.tolist() == [1, 0, 1] and data.test.y.tolist() == [0]
    assert torch.equal(data.train.x[0, 0], torch.tensor([0.5, 1.5, 2.5]))
    assert torch.isnan(data.train.x[1, 0, 2])


def test_csv_bad_input_names_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("label,a,b\nx,1,2\ny,3,oops\n")
    with pytest.raises(DataError, match=r"bad.csv, line 3, column 3 \('b'\): 'oops' is not a number"):
        load_dataset(str(bad))
    bad.write_text("1,2,3\n4,five,6\n")
    with pytest.raises(DataError, match="line 2, column 2: 'five' is not a number.*header row"):
        load_dataset(str(bad))
    bad.write_text("label,a,b\nx,1,2\n,3,4\n")
    with pytest.raises(DataError, match=r"line 3: the label \(column 1 \('label'\)\) is empty"):
        load_dataset(str(bad))
    bad.write_text("label,a,b\nx,1,2\ny,,\nx,5,6\n")
    with pytest.raises(DataError, match=r"the series on line 3 \(row 1\) has no observed timestamp"):
        load_dataset(str(bad))
    bad.write_text("label,a,b\nx,1,inf\n")
    with pytest.raises(DataError, match="the series on line 2 .*infinite"):
        load_dataset(str(bad))
    bad.write_text("label,class,a\nx,y,1\n")
    with pytest.raises(DataError, match="line 1: the header has 2 label columns"):
        load_dataset(str(bad))
    bad.write_text("label,a,b\n")
    with pytest.raises(DataError, match="has a header but no data rows"):
        load_dataset(str(bad))
    (tmp_path / "two_TRAIN.csv").write_text("label,a\nx,1\n")
    (tmp_path / "two_TEST.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="two_TRAIN.csv has a label column but .*two_TEST.csv has none"):
        load_dataset(str(tmp_path / "two_TRAIN.csv"))


# ----------------------------------------------------------------------------------------------
# .ts files (aeon's reader)
# ----------------------------------------------------------------------------------------------

UNIVARIATE_TS = """# a comment
@problemName Toy
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 4
@classLabel true a b
@data
1.0,2.0,3.0,4.0:b
5.0,6.0,7.0,8.0:a
0.5,0.25,0.125,0.0625:b
"""

UNEQUAL_TS = """@problemName Ragged
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true 1 2 10
@data
1.0,2.0,3.0:4.0,5.0,6.0:10
1.5,?,2.5,3.5,4.5:0.0,1.0,2.0,3.0,4.0:2
7.0,8.0:9.0,10.0:1
"""


@needs_aeon
def test_ts_train_and_sibling_test(tmp_path: Path) -> None:
    (tmp_path / "Toy_TRAIN.ts").write_text(UNIVARIATE_TS)
    (tmp_path / "Toy_TEST.ts").write_text(UNIVARIATE_TS.replace("1.0,2.0,3.0,4.0:b", "9.0,9.0,9.0,9.0:a"))
    data = load_dataset(str(tmp_path / "Toy_TRAIN.ts"))
    assert data.test is not None and data.train.x.shape == (3, 1, 4) and data.test.x.shape == (3, 1, 4)
    assert torch.equal(data.train.x[2, 0], torch.tensor([0.5, 0.25, 0.125, 0.0625]))
    assert data.train.class_names == ["a", "b"] and data.train.y.tolist() == [1, 0, 1]
    assert data.test.y.tolist() == [0, 0, 1] and torch.equal(data.test.x[0, 0], torch.full((4,), 9.0))
    with pytest.warns(UserWarning, match="looks like a test split"):
        only = load_ts(tmp_path / "Toy_TEST.ts")
    assert only.test is None and len(only.train) == 3


@needs_aeon
def test_ts_unequal_lengths_and_missing_values(tmp_path: Path) -> None:
    (tmp_path / "ragged.ts").write_text(UNEQUAL_TS)
    data = load_dataset(str(tmp_path / "ragged.ts"))
    x = data.train.x
    assert data.test is None and x.shape == (3, 2, 5)
    assert observed_mask(x).tolist() == [[True, True, True, False, False], [True, False, True, True, True],
                                         [True, True, False, False, False]]
    assert torch.equal(x[0, 1, :3], torch.tensor([4.0, 5.0, 6.0])) and torch.isnan(x[0, :, 3:]).all()
    assert torch.isnan(x[1, 0, 1]) and not torch.isnan(x[1, 1]).any()  # '?' is missing in one channel only
    assert data.train.class_names == ["1", "2", "10"] and data.train.y.tolist() == [2, 1, 0]


@needs_aeon
def test_corrupt_ts_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ts"
    bad.write_text(UNIVARIATE_TS.replace("5.0,6.0,7.0,8.0:a", "5.0,six,7.0,8.0:a"))
    with pytest.raises(DataError, match=r"bad.ts, line 11: not a readable .ts file \(could not convert"):
        load_dataset(str(bad))
    bad.write_text(UNIVARIATE_TS.replace("5.0,6.0,7.0,8.0:a", "5.0,6.0:7.0,8.0:a"))
    with pytest.raises(DataError, match=r"bad.ts, line 11: .*(dimensions|Expecting univariate)"):
        load_dataset(str(bad))
    bad.write_text(UNIVARIATE_TS.replace("5.0,6.0,7.0,8.0:a", "5.0,6.0,7.0:a"))
    with pytest.raises(DataError, match=r"bad.ts, line 11: .*@equalLength false"):
        load_dataset(str(bad))
    bad.write_text(UNIVARIATE_TS + "\n")  # a trailing blank line: aeon reads it as an empty series
    with pytest.raises(DataError, match=r"bad.ts, line 13: .*that line is blank: remove it"):
        load_dataset(str(bad))
    bad.write_text(UNIVARIATE_TS.replace("5.0,6.0,7.0,8.0:a", "5.0,6.0,7.0,8.0:c"))
    with pytest.raises(DataError, match=r"bad.ts, line 11: class label 'c' is not among .*@classLabel true a b"):
        load_dataset(str(bad))
    bad.write_text(UNIVARIATE_TS.replace("@data\n", ""))
    with pytest.raises(DataError, match="bad.ts has no '@data' line"):
        load_dataset(str(bad))
    bad.write_text(UNIVARIATE_TS.split("@data")[0] + "@data\n")
    with pytest.raises(DataError, match="holds no series"):
        load_dataset(str(bad))
    bad.write_bytes(b"@data\n\xff\xfe\x00\x01:a\n")
    with pytest.raises(DataError, match="bad.ts"):
        load_dataset(str(bad))


@needs_aeon
def test_ts_all_missing_series_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.ts"
    path.write_text(UNIVARIATE_TS.replace("5.0,6.0,7.0,8.0:a", "?,?,?,?:a").replace("@missing false", "@missing true"))
    with pytest.raises(DataError, match=r"m.ts: series 1 \(index 1\) has no observed timestamp"):
        load_dataset(str(path))


def test_missing_aeon_is_a_config_error_with_the_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)
    with pytest.raises(ConfigError, match=r'pip install "selfsup\[timeseries\]"'):
        load_dataset("ucr:GunPoint")
    (tmp_path / "t.ts").write_text(UNIVARIATE_TS)
    with pytest.raises(ConfigError, match=r'pip install "selfsup\[timeseries\]"'):
        load_dataset(str(tmp_path / "t.ts"))
    (tmp_path / "ok.csv").write_text("1,2\n3,4\n")  # CSV needs no aeon
    assert load_dataset(str(tmp_path / "ok.csv")).train.x.shape == (2, 1, 2)


# ----------------------------------------------------------------------------------------------
# aeon's shipped UCR/UEA datasets
# ----------------------------------------------------------------------------------------------


@needs_aeon
def test_gunpoint_official_split_matches_aeons_files() -> None:
    from aeon.datasets import load_from_ts_file

    data = load_dataset("ucr:GunPoint")
    assert data.test is not None
    assert data.train.x.shape == (50, 1, 150) and data.test.x.shape == (150, 1, 150)
    assert data.train.x.dtype == torch.float32 and data.train.modality == "timeseries"
    assert data.train.name == "GunPoint" and data.train.class_names == ["1", "2"] and data.train.num_classes == 2
    for part, split in ((data.train, "TRAIN"), (data.test, "TEST")):
        raw, labels = load_from_ts_file(str(aeon_file("GunPoint", split)))
        assert torch.equal(part.x, torch.from_numpy(raw.astype(np.float32)))
        assert part.y.tolist() == [int(v) - 1 for v in labels]
    assert torch.bincount(data.train.y).tolist() == [24, 26]


@needs_aeon
def test_japanese_vowels_is_nan_padded_and_the_mask_gives_the_lengths() -> None:
    from aeon.datasets import load_from_ts_file

    data = load_dataset("uea:JapaneseVowels")
    assert data.test is not None
    assert data.train.x.shape == (270, 12, 29) and data.test.x.shape == (370, 12, 29)
    assert len(data.train.class_names) == 9
    for part, split in ((data.train, "TRAIN"), (data.test, "TEST")):
        raw, _ = load_from_ts_file(str(aeon_file("JapaneseVowels", split)))
        lengths = [a.shape[1] for a in raw]
        mask = observed_mask(part.x)
        assert mask.sum(1).tolist() == lengths
        assert all(bool(mask[i, : n].all()) for i, n in enumerate(lengths))  # padding only at the end
        i = int(np.argmin(lengths))
        assert torch.equal(part.x[i, :, : lengths[i]], torch.from_numpy(raw[i].astype(np.float32)))
    assert min(observed_mask(data.train.x).sum(1)) == 7 and max(observed_mask(data.test.x).sum(1)) == 29


@needs_aeon
def test_names_are_case_insensitive_and_both_prefixes_work() -> None:
    motions = load_ucr("basicmotions")
    assert motions.train.x.shape == (40, 6, 100) and motions.train.name == "BasicMotions"
    assert motions.train.class_names == ["badminton", "running", "standing", "walking"]
    assert torch.equal(load_dataset("ucr:BasicMotions").train.x, motions.train.x)
    italy = load_dataset("uea:italypowerdemand")
    assert italy.train.x.shape == (67, 1, 24) and italy.test.x.shape == (1029, 1, 24)


def test_unknown_ucr_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'GunPoint'.*GunPoint, ItalyPowerDemand, ArrowHead.*_TRAIN.ts"):
        load_dataset("ucr:GunPiont")
    with pytest.raises(ConfigError, match="unknown UCR/UEA dataset 'Coffee'.*JapaneseVowels"):
        load_dataset("ucr:Coffee")
    with pytest.raises(ConfigError, match="no name after 'ucr:'"):
        load_dataset("ucr:")
    with pytest.raises(ConfigError, match="Did you mean 'ucr:GunPoint'"):
        load_dataset("gunpoint")


def test_listing() -> None:
    names = list_timeseries_datasets()
    assert len(names) == 7 and "ucr:GunPoint" in names and "uea:JapaneseVowels" in names
    assert {n.split(":")[1] for n in names} == set(SHIPPED_DATASETS)
    assert not set(names) & set(list_datasets())  # the built-in list is unchanged


def test_no_warning_on_clean_files(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("target,a,b,c\n0,0.1,0.2,0.3\n1,0.4,0.5,0.6\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset(str(tmp_path / "c.csv"))
    assert data.train.y.tolist() == [0, 1]
