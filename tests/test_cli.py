import json
import re

import pytest

from membed import strategies
from membed.__main__ import main


def test_strategies_json_lists_every_registered_strategy(capsys):
    assert main(["strategies", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == strategies.names()
    assert all(r["description"] for r in rows)
    qr = next(r for r in rows if r["name"] == "qr")
    assert set(qr["options"]) == {"num_buckets", "combiner", "partitions"}


def test_strategies_table(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in strategies.names():
        assert name in out


@pytest.mark.parametrize(
    "dataset, baseline, efficient",
    [("ml-100k", 168_000, 52_944), ("ml-latest-small", 661_376, 267_904)],
)
def test_reproduce_dry_run_counts(movielens_dir, capsys, dataset, baseline, efficient):
    assert main(["reproduce", "--dataset", dataset, "--dry-run", "--json", "--data-dir", str(movielens_dir)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == dataset
    assert [(m["name"], m["params"]) for m in result["models"]] == [
        ("baseline", baseline), ("memory_efficient", efficient)
    ]


def test_train_synthetic_json(capsys):
    argv = ["train", "--dataset", "synthetic", "--num-users", "300", "--num-items", "200", "--num-ratings",
            "5000", "--user", "qr:num_buckets=20", "--item", "mixed_dim:boundaries=20,80,dims=16,8,4",
            "--dim", "16", "--epochs", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    (model,) = result["models"]
    assert model["name"] == "qr+mixed_dim" and len(model["val_mse"]) == 2
    assert model["val_mse"][1] < model["val_mse"][0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["reproduce", "--dataset", "ml-5m", "--dry-run"], "Unknown dataset 'ml-5m'. Use one of: ml-100k"),
        (["train", "--dataset", "synthetic", "--user", "nope", "--item", "full"], "Unknown strategy 'nope'"),
        (["train", "--dataset", "synthetic", "--user", "qr:combiner=max", "--item", "full", "--dry-run"],
         "invalid `combiner`: 'max'"),
        (["train", "--dataset", "synthetic", "--user", "qr:bogus=1", "--item", "full"], "Unknown option 'bogus'"),
        (["reproduce", "--dataset", "ml-100k", "--epochs", "0"], "invalid --epochs: 0"),
        (["reproduce", "--dataset", "ml-100k", "--data-dir", "/nonexistent/membed-data", "--dry-run"],
         "Invalid --data-dir: '/nonexistent/membed-data' is not a folder."),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_missing_dataset_without_download_says_how_to_provide_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMBED_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMBED_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["reproduce", "--dataset", "ml-1m", "--dry-run", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert f"$MEMBED_DATA_DIR {tmp_path} holds no ml-* folder (it is empty)" in err
    # The command's own flags, not load_movielens' arguments.
    assert err.rstrip().endswith("folder holding ml-1m/, pass --data-dir, or drop --no-download.")
    assert "data_dir" not in err and "download=True" not in err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    for flag, default in [("--epochs", "3"), ("--dim", "64"), ("--batch-size", "128"), ("--seed", "42"),
                          ("--num-users", "10000"), ("--num-items", "5000"), ("--num-ratings", "200000"),
                          ("--rank", "8"), ("--noise-sigma", "0.3")]:
        assert re.search(rf"{flag} \S+ \w[^()]* \(default: {re.escape(default)}\)", out), flag


def test_train_takes_an_optimizer_and_its_step_size(capsys):
    argv = ["train", "--dataset", "synthetic", "--num-users", "300", "--num-items", "200", "--num-ratings",
            "20000", "--user", "full", "--item", "full", "--epochs", "2", "--optimizer", "rowwise_adagrad", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["optimizer"], result["learning_rate"]) == ("rowwise_adagrad", 0.1)
    val_mse = result["models"][0]["val_mse"]
    assert val_mse[1] < val_mse[0]


def test_an_unknown_optimizer_is_a_one_line_error(capsys):
    argv = ["train", "--dataset", "synthetic", "--user", "full", "--item", "full", "--optimizer", "nope"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown --optimizer 'nope'") and "rowwise_adagrad" in err and "\n" not in err
