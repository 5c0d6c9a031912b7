"""Tables: reading CSV/TSV/Parquet files against a schema, the table modality, table_mlp, and a
trained run reading new rows with its own schema."""

from __future__ import annotations

import contextlib
import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.backbones import create_backbone
from selfsup.cli import main
from selfsup.data import load_dataset
from selfsup.data.modalities import get_modality
from selfsup.errors import ConfigError, DataError


def write_table(path: Path, n: int = 120, seed: int = 0) -> Path:
    """A table with a numeric column that tells the class, a noisy one with missing cells, a text
    categorical column tied to the class, an integer column, an id and a label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    lines = ["id,a,b,color,size,label"]
    colors = np.array(["red", "green", "blue"])
    for i in range(n):
        b = "" if i % 7 == 0 else f"{rng.normal():.4f}"
        color = "" if i % 11 == 0 else colors[(y[i] + (rng.random() < 0.2)) % 3]
        lines.append(f"s{i},{y[i] + 0.3 * rng.normal():.4f},{b},{color},{rng.integers(1, 5)},{'xyz'[y[i]]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_schema_inferred_and_values_encoded(tmp_path):
    path = write_table(tmp_path / "t.csv")
    data = load_dataset(f"table:{path}", options={"label": "label", "id": "id"})
    train = data.train
    schema = train.data_info
    assert [c["name"] for c in schema["columns"]] == ["a", "b", "color", "size"]
    assert [c["type"] for c in schema["columns"]] == ["numeric", "numeric", "categorical", "numeric"]
    assert schema["columns"][2]["categories"] == ["blue", "green", "red"]
    assert train.modality == "table" and train.sample_shape == (4,) and data.test is None
    assert train.class_names == ["x", "y", "z"]
    lines = path.read_text().splitlines()[1:]
    x = train.x.numpy()
    for i in (0, 1, 11, 50):
        _, a, b, color, size, label = lines[i].split(",")
        assert x[i, 0] == pytest.approx(float(a))
        assert math.isnan(x[i, 1]) if b == "" else x[i, 1] == pytest.approx(float(b))
        assert math.isnan(x[i, 2]) if color == "" else x[i, 2] == ["blue", "green", "red"].index(color)
        assert x[i, 3] == float(size)
        assert int(train.labels[i]) == "xyz".index(label)
    assert train.sample_id(3) == "s3"


def test_type_overrides_ignore_and_unknown_columns(tmp_path):
    path = write_table(tmp_path / "t.csv")
    data = load_dataset(f"table:{path}", options={"label": "label", "ignore": ["id", "b"], "categorical": ["size"]})
    columns = data.train.data_info["columns"]
    assert [c["name"] for c in columns] == ["a", "color", "size"]
    assert columns[2] == {"name": "size", "type": "categorical", "categories": ["1", "2", "3", "4"]}
    with pytest.raises(ConfigError, match="data.categorical names column 'nope'"):
        load_dataset(f"table:{path}", options={"categorical": ["nope"]})
    with pytest.raises(DataError, match="label column 'target' is not in t.csv"):
        load_dataset(f"table:{path}", options={"label": "target"})
    with pytest.raises(ConfigError, match="data.label applies to tables"):
        load_dataset("wine", options={"label": "label"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("a,b\n1,2\n", "has 1 data row"),
        ("a,b\n" + "".join(f"{i},{i}\n" for i in range(30)) + "3,x\n", r"column 'b' of .* is numeric, but row 31 holds 'x'"),
        ("a,b\n1,\n2,\n3,\n", "column 'b' of .* has no values"),
        ("a,a\n1,2\n3,4\n", "two columns named 'a'|has no column"),
        ("a,label\n1,x\n2,\n", r"row 2: the label \(column 'label'\) is empty"),
    ],
)
def test_bad_tables_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises((DataError, ConfigError), match=message) as error:
        load_dataset(f"table:{path}", options={"label": "label"} if "label" in text else None)
    assert "\n" not in str(error.value)


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"table:{tmp_path / 'none.csv'}")
    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(DataError, match="not a .csv, .tsv or .parquet"):
        load_dataset(f"table:{tmp_path / 't.json'}")


def test_series_csv_error_points_to_tables(tmp_path):
    path = write_table(tmp_path / "t.csv")
    with pytest.raises(DataError, match=r"read it as one with --data table:"):
        load_dataset(str(path))


def test_parquet_and_train_test_files_share_one_schema(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(write_table(tmp_path / "src.csv"), keep_default_na=False, na_values=[""])
    frame.iloc[:80].to_parquet(tmp_path / "d_TRAIN.parquet")
    test = frame.iloc[80:].copy()
    test.loc[test.index[0], "color"] = "purple"  # a category the training file does not have
    test.to_parquet(tmp_path / "d_TEST.parquet")
    with pytest.warns(UserWarning, match="1 category the run was not trained on .*'purple'"):
        data = load_dataset(str(tmp_path / "d_TRAIN.parquet"), options={"label": "label", "id": "id"})
    assert data.test is not None and len(data.test) == 40
    assert data.test.data_info["columns"] == data.train.data_info["columns"]
    assert math.isnan(float(data.test.x[0, 2]))  # unseen -> missing
    assert data.train.x[:, 3].tolist() == frame["size"].iloc[:80].astype(float).tolist()


def test_reference_schema_reads_new_rows_the_runs_way(tmp_path):
    path = write_table(tmp_path / "t.csv")
    schema = load_dataset(f"table:{path}", options={"label": "label", "id": "id"}).train.data_info
    new = tmp_path / "new.csv"
    new.write_text("size,color,a,b,extra\n2,green,0.5,,7\n3,blue,1.5,1.0,8\n")  # other order, no label, extra column
    data = load_dataset(f"table:{new}", reference=schema)
    assert data.train.labels is None
    np.testing.assert_array_equal(data.train.x[1].numpy(), np.array([1.5, 1.0, 0.0, 3.0], dtype=np.float32))
    (tmp_path / "short.csv").write_text("a,color\n1,red\n2,red\n")
    with pytest.raises(DataError, match="has no column 'b', which the run was trained with"):
        load_dataset(f"table:{tmp_path / 'short.csv'}", reference=schema)


def test_modality_standardises_numeric_and_keeps_category_indices(tmp_path):
    data = load_dataset(f"table:{write_table(tmp_path / 't.csv')}", options={"label": "label", "id": "id"})
    modality = get_modality("table", data.train.data_info)
    x = data.train.x
    mean, std = modality.statistics([x])
    z = modality.standardize(x, mean, std)
    numeric = [0, 1, 3]
    observed = ~torch.isnan(x[:, numeric])
    expected = (x[:, numeric] - mean[numeric]) / std[numeric]
    assert torch.allclose(z[:, numeric][observed], expected[observed])
    assert (z[:, numeric][~observed] == 0).all()  # a missing value at the mean
    codes = z[:, 2]
    assert torch.equal(codes[~torch.isnan(x[:, 2])], x[:, 2][~torch.isnan(x[:, 2])])
    assert (codes[torch.isnan(x[:, 2])] == 3).all()  # missing -> the extra slot K
    raw = modality.raw_features(x, z)
    assert raw.shape == (len(x), 3 + 4)  # three numeric, one categorical one-hot with a missing slot
    assert torch.equal(raw[:, 2:6].sum(1), torch.ones(len(x)))
    assert modality.backbone_inputs() == {"cardinalities": [0, 0, 3, 0]}
    features, categorical = modality.tree_features(x)
    assert categorical == [False, False, True, False] and torch.equal(torch.isnan(features), torch.isnan(x))


def test_table_mlp_embeds_each_categorical_column():
    torch.manual_seed(0)
    mlp = create_backbone("table_mlp", (3,), hidden_dims=[16], cardinalities=[0, 2, 0], category_dim=4)
    mlp.eval()
    x = torch.tensor([[0.5, 0.0, 1.0], [0.5, 1.0, 1.0], [0.5, 2.0, 1.0], [0.5, 7.0, 1.0]])
    out = mlp(x)
    assert out.shape == (4, 16)
    assert not torch.allclose(out[0], out[1])  # another category, another embedding
    assert torch.allclose(out[2], out[3])  # out-of-range indices are "missing" (slot K = 2)
    with pytest.raises(ConfigError, match="2 cardinalities for 3 columns"):
        create_backbone("table_mlp", (3,), cardinalities=[0, 2])


@pytest.mark.slow
def test_pretrain_evaluate_and_embed_new_rows_from_the_cli(tmp_path):
    path = write_table(tmp_path / "t.csv", n=160)
    run = tmp_path / "run"
    common = [sys.executable, "-m", "selfsup.cli"]
    done = subprocess.run(
        common + ["pretrain", "--data", f"table:{path}", "--set", "data.label=label", "--set", "data.id=id",
                  "--method", "simclr", "--epochs", "2", "--batch-size", "32", "-o", str(run)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "schema.json").is_file()
    assert "cardinalities:\n    - 0\n    - 0\n    - 3\n    - 0" in (run / "config.yaml").read_text()
    new = tmp_path / "new.csv"
    new.write_text("id,a,b,color,size\nn1,0.5,,purple,2\nn2,1.0,0.2,red,1\n")
    out = tmp_path / "e.npy"
    done = subprocess.run(common + ["embed", str(run), f"table:{new}", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.startswith("warning: column 'color' of ")
    assert "new.csv holds 1 category the run was not trained on ('purple')" in done.stderr
    assert "return load_table" not in done.stderr  # one line, without Python's source line
    assert np.load(out).shape == (2, 256)
    (tmp_path / "bad.csv").write_text("a,color\n1,red\n2,red\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # the CLI's main in process: a user error, no interpreter start
        code = main(["embed", str(run), f"table:{tmp_path / 'bad.csv'}", "-o", str(tmp_path / "f.npy")])
    assert code == 2 and err.getvalue().startswith("error: ") and "has no column 'b'" in err.getvalue()


def test_resume_reads_the_table_with_the_checkpoints_schema(tmp_path):
    from selfsup.config import RunConfig
    from selfsup.rundir import load_run
    from selfsup.train.runner import pretrain

    path = write_table(tmp_path / "t.csv", n=64)
    config = RunConfig.from_dict({
        "data": {"name": f"table:{path}", "params": {"label": "label", "id": "id"}},
        "method": {"name": "simclr"}, "train": {"epochs": 1, "batch_size": 32}, "eval": {"after_training": False},
    })
    pretrain(config, tmp_path / "run")
    path.write_text(path.read_text() + "s999,0.1,0.2,violet,2,x\n")  # the file gains a category
    with pytest.warns(UserWarning, match="'violet'"):
        pretrain(config, tmp_path / "run", resume=True, epochs=2)
    _, method, meta = load_run(tmp_path / "run")
    assert meta["data_info"]["columns"][2]["categories"] == ["blue", "green", "red"]

    # An export carries the schema: raw rows with NaN and category indices in, the run's embeddings out.
    from selfsup.export import export_encoder, load_exported

    pytest.importorskip("safetensors")
    export_encoder(tmp_path / "run", tmp_path / "enc.safetensors", "safetensors")
    exported = load_exported(tmp_path / "enc.safetensors")
    rows = torch.tensor([[0.5, float("nan"), 1.0, 2.0], [1.5, 0.3, float("nan"), 4.0]])
    with torch.no_grad():
        assert torch.allclose(exported(rows), method.encoder(rows), atol=1e-5)
    assert exported.encoder.modality.info == meta["data_info"]


def test_vector_modality_puts_a_missing_value_at_the_mean():
    modality = get_modality("vector")
    x = torch.tensor([[1.0, float("nan")], [3.0, 4.0], [5.0, 8.0]])
    mean, std = modality.statistics([x])
    assert torch.allclose(mean, torch.tensor([3.0, 6.0]))  # NaN left out of the statistics
    z = modality.standardize(x, mean, std)
    assert z[0, 1] == 0 and torch.isfinite(z).all()
    assert torch.allclose(z[:, 0], (x[:, 0] - 3.0) / 2.0)


@pytest.mark.parametrize("recipe", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*-wine.yaml")))
def test_wine_recipes_train_with_their_monitors(recipe, tmp_path):
    """The tabular recipes on wine, cut to 2 epochs, with the monitors (which embed the method's
    own views: SubTab's mark columns missing) on every epoch."""
    from selfsup.config import RunConfig, load_yaml
    from selfsup.train.runner import pretrain

    config = RunConfig.from_dict(load_yaml(Path(__file__).resolve().parents[1] / "recipes" / recipe))
    config.train.epochs, config.train.monitor_every_n_epochs, config.train.progress_bar = 2, 1, False
    result = pretrain(config, tmp_path / "run", evaluate=False)
    records = result.metrics["monitors"]
    z = result.method.encoder(load_dataset("wine").train.x[:16])
    assert torch.isfinite(z).all()
    assert len(records) == 2 and all(math.isfinite(r["alignment"]) for r in records)
