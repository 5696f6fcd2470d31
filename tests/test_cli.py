"""The command line: listings, and bad input answered with one line, exit 2 and no output."""

from __future__ import annotations

import pytest

import fakedata
from lifelong.cli import main


def _fails(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_list_and_data_commands(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "hps" in out and "split-cifar100" in out and "mnist" in out
    assert main(["data", "list"]) == 0
    assert main(["data", "describe", "split-digits"]) == 0
    assert "8" in capsys.readouterr().out


def test_help_on_every_command(capsys):
    for argv in (["--help"], ["run", "--help"], ["list", "--help"], ["data", "--help"],
                 ["data", "describe", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0


@pytest.mark.parametrize("argv", [
    ["run", "--benchmark", "split-mnist", "--learner", "nope"],
    ["run", "--benchmark", "nope", "--learner", "hps"],
    ["run", "--benchmark", "split-mnist", "--learner", "hps", "learner.lr=-1"],
    ["run", "--benchmark", "split-mnist", "--learner", "hps", "learner.lrr=0.1"],
    ["run", "--benchmark", "split-mnist", "--learner", "hps", "epochs=many"],
    ["run", "--benchmark", "split-mnist", "--learner", "hps", "--root", "/tmp"],
    ["run", "--benchmark", "split-cifar100", "--learner", "hps"],
    ["run", "--benchmark", "split-cifar100", "--learner", "hps", "--root", "/no/such/dir"],
    ["run", "--benchmark", "split-mnist", "--learner", "hps", "--config", "/no/such.yaml"],
    ["run", "--learner", "hps"],
    ["run", "--resume", "/no/such/run"],
    ["data", "describe", "nope"],
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, argv):
    out = tmp_path / "out"
    _fails(capsys, [*argv, "--out", str(out)] if argv[0] == "run" else argv)
    assert not out.exists()


def test_corrupt_and_wrong_format_data(capsys, tmp_path):
    cifar = fakedata.write_cifar100(tmp_path / "c", train_per_class=5, test_per_class=2)
    (cifar / "train").write_bytes(b"this is not a pickle")
    _fails(capsys, ["data", "describe", "split-cifar100", "--root", str(tmp_path / "c")])
    stl = fakedata.write_stl10(tmp_path / "s", train_per_class=2, test_per_class=2)
    (stl / "train_X.bin").write_bytes(b"\0" * 1000)  # not a whole number of images
    _fails(capsys, ["data", "describe", "stl10-lifelong", "--root", str(tmp_path / "s")])
    # A directory in another format (image folders where CIFAR pickles are expected).
    fakedata.write_image_tree(tmp_path / "f", {"Product": {"a": 2}})
    _fails(capsys, ["data", "describe", "split-cifar100", "--root", str(tmp_path / "f")])
    out = tmp_path / "out"
    _fails(capsys, ["run", "--benchmark", "split-cifar100", "--learner", "hps", "--root",
                    str(tmp_path / "c"), "--out", str(out)])
    assert not out.exists()


def test_too_few_classes_for_the_protocol(capsys, tmp_path):
    fakedata.write_image_tree(tmp_path, {"Product": {f"c{i}": 10 for i in range(20)},
                                         "Real World": {f"c{i}": 10 for i in range(65)}})
    _fails(capsys, ["data", "describe", "office-home", "--root", str(tmp_path),
                    "benchmark.grouping=random"])


def test_existing_run_directory_and_resume_with_another_config(capsys, tmp_path):
    out = tmp_path / "run"
    base = ["run", "--benchmark", "synthetic", "--learner", "hps", "--quiet", "--out", str(out)]
    assert main([*base, "epochs=1"]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in out.iterdir())
    _fails(capsys, [*base, "epochs=1"])  # exists: neither overwritten nor resumed
    _fails(capsys, ["run", "--resume", str(out), "epochs=2"])  # a different config
    _fails(capsys, ["run", "--resume", str(out), "learner.lr=0.5"])
    assert sorted(p.name for p in out.iterdir()) == before
    assert main([*base, "epochs=1", "--overwrite"]) == 0
    # --overwrite refuses to delete a directory that is not a run directory.
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    _fails(capsys, ["run", "--benchmark", "synthetic", "--learner", "hps", "--out",
                    str(tmp_path / "precious"), "--overwrite"])
    assert (tmp_path / "precious" / "notes.txt").exists()


def test_overrides_may_follow_options_and_describe_takes_a_seed(capsys):
    assert main(["data", "describe", "split-digits", "seed=3", "benchmark.class_order=random",
                 "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main(["data", "describe", "split-digits", "benchmark.class_order=random",
                 "seed=4"]) == 0
    assert capsys.readouterr().out != first  # the seed is honoured
    _fails(capsys, ["data", "describe", "split-digits", "learner.lr=1"])
    _fails(capsys, ["data", "describe", "split-digits", "epochs=3"])


def test_out_must_be_a_directory_and_overwrite_spares_the_working_directory(capsys, tmp_path,
                                                                           monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    _fails(capsys, ["run", "--benchmark", "synthetic", "--learner", "hps", "--out", str(afile)])
    # a run directory under a file: the OS refuses to create it, the CLI names the path
    _fails(capsys, ["run", "--benchmark", "synthetic", "--learner", "hps", "--out",
                    str(afile / "run"), "epochs=1"])
    run = tmp_path / "run"
    assert main(["run", "--benchmark", "synthetic", "--learner", "hps", "--quiet", "--out",
                 str(run), "epochs=1"]) == 0
    capsys.readouterr()
    monkeypatch.chdir(run)
    _fails(capsys, ["run", "--benchmark", "synthetic", "--learner", "hps", "--out", ".",
                    "--overwrite", "epochs=1"])
    assert (run / "results.json").exists()


def test_undecodable_image_found_during_training_leaves_no_run_directory(capsys, tmp_path):
    root = fakedata.write_split_tree(tmp_path / "data", {
        "d": {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2}}}, ext=".jpg")
    img = root / "d" / "train" / "a" / "img_0.jpg"
    img.write_bytes(img.read_bytes()[:40])  # the header survives, the pixels do not
    out = tmp_path / "out"
    _fails(capsys, ["run", "--benchmark", "folder", "--learner", "hps", "--root", str(root),
                    "--out", str(out), "epochs=1", "benchmark.image_size=16", "net=tiny"])
    assert not out.exists()
