"""Every bad argument gets one line naming it and the fix, before any weights are loaded."""

import errno
import os
import urllib.error

import pytest
import torch
import torchvision

import pipelines.cli as cli
import pipelines.io as io
from pipelines.cli import main
from pipelines.demo.run import demo_jobs
from pipelines.io import OutputNotWritableError, save


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if a command loads weights."""
    monkeypatch.setattr(cli, "_model", lambda weights: pytest.fail("weights were loaded before the check"))


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    return demo_jobs(tmp_path_factory.mktemp("demo") / "images", n_per_class=2)[0].folder


def error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_missing_weights_file_names_the_flag(tmp_path, class_folder, capsys, no_weights):
    err = error_of(["run", "--images", str(class_folder), "--class-index", "1", "--out", str(tmp_path / "o"),
                    "--weights", str(tmp_path / "missing.pt")], capsys)
    assert "`--weights`" in err and "missing.pt: no such file" in err and "weights_path" not in err


def test_unknown_weights_name_names_the_flag(tmp_path, capsys, no_weights):
    err = error_of(["visualize", "--neuron", "1", "-o", str(tmp_path / "n.png"), "--weights", "IMAGENET1K_V9"],
                   capsys)
    assert "`--weights` 'IMAGENET1K_V9'" in err and "IMAGENET1K_V2" in err


def test_no_network_is_one_line_with_the_fix(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "resnet50", offline)
    err = error_of(["visualize", "--neuron", "1", "-o", str(tmp_path / "n.png"), "--device", "cpu"], capsys)
    assert len(err.strip().splitlines()) == 1
    assert "URLError" in err and "--weights FILE" in err and str(torch.hub.get_dir()) in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_absent_device_is_refused_before_the_weights(tmp_path, class_folder, capsys, no_weights):
    err = error_of(["run", "--images", str(class_folder), "--class-index", "1", "--out", str(tmp_path / "o"),
                    "--device", "cuda"], capsys)
    assert "CUDA is not available" in err
    assert "not a device name" in error_of(["demo", "--out", str(tmp_path / "d"), "--device", "gpu0"], capsys)


def test_negative_workers_and_inversions_are_refused(tmp_path, class_folder, capsys):
    for flag in ("--workers", "--inversions"):
        err = error_of(["run", "--images", str(class_folder), "--class-index", "1", flag, "-1"], capsys)
        assert flag in err and ">= 0" in err


def test_an_empty_image_folder_is_refused_and_writes_nothing(tmp_path, capsys, no_weights):
    (tmp_path / "empty").mkdir()
    err = error_of(["run", "--images", str(tmp_path / "empty"), "--class-index", "1", "--out", str(tmp_path / "o")],
                   capsys)
    assert "`--images`" in err and "holds no image file" in err
    assert not (tmp_path / "o" / "index.html").exists() and not (tmp_path / "o" / "run.json").exists()


def test_an_unwritable_out_is_refused_before_the_weights(tmp_path, class_folder, capsys, no_weights):
    (tmp_path / "file").write_text("not a folder")
    err = error_of(["run", "--images", str(class_folder), "--class-index", "1", "--out", str(tmp_path / "file/o")],
                   capsys)
    assert "not writable" in err and "--out" in err


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io.os, "replace", full)
    target = tmp_path / "deep" / "class.json"
    with pytest.raises(OutputNotWritableError, match=f"cannot write {target}: No space left on device"):
        save({"a": 1}, target)
    assert not list((tmp_path / "deep").iterdir())  # no temp file left behind


@pytest.mark.parametrize("command", [[], ["demo"], ["run"], ["gallery"], ["spectrum"], ["visualize"]])
def test_every_help_prints(command, capsys):
    """argparse formats help strings with %: a literal percent sign in one (80%) broke `run --help`."""
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out
