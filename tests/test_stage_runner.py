"""Stage exits: bad input is one line, a bug keeps its traceback, Ctrl-C is one line."""

from __future__ import annotations

import sys

import pytest

from reid.errors import InputError
from reid.stage_runner import stage_main
from tests.dvc_stages import REPO


def run_stage(monkeypatch, body) -> None:
    monkeypatch.setattr(sys, "argv", ["stage", "--params", str(REPO / "params.yaml"),
                                      "--dataset", "market1501"])
    stage_main("test stage", body)


def raiser(exc: BaseException):
    def body(params, args):
        raise exc
    return body


@pytest.mark.parametrize("exc", [InputError("manifest x.csv: row 3: bad pid"),
                                 FileNotFoundError("features/x.npz: not found")])
def test_expected_failure_is_one_line(monkeypatch, capsys, exc):
    with pytest.raises(SystemExit) as exit_info:
        run_stage(monkeypatch, raiser(exc))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"error: {exc}\n"


@pytest.mark.parametrize("exc", [RuntimeError("CUDA out of memory"), KeyError("epoch"),
                                 OSError("disk full"), ValueError("a bug")])
def test_unexpected_failure_keeps_its_traceback(monkeypatch, exc):
    with pytest.raises(type(exc)):
        run_stage(monkeypatch, raiser(exc))


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_stage(monkeypatch, raiser(KeyboardInterrupt()))
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted") and err.count("\n") == 1


def test_unknown_dataset_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["stage", "--params", str(REPO / "params.yaml"),
                                      "--dataset", "msmt17"])
    with pytest.raises(SystemExit):
        stage_main("test stage", lambda params, args: None)
    assert "--dataset 'msmt17' is not in params datasets" in capsys.readouterr().err


def test_outputs_are_checked_before_the_work(tmp_path):
    from reid.io import check_writable

    check_writable(tmp_path / "models" / "resnet50" / "market1501.pt")  # creatable: fine
    (tmp_path / "models").write_text("not a folder")
    with pytest.raises(InputError, match="models is a file"):
        check_writable(tmp_path / "models" / "resnet50" / "market1501.pt")
    (tmp_path / "curves.csv").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_writable(tmp_path / "curves.csv")


def test_bad_image_in_a_loader_worker_is_one_line(monkeypatch, capsys, tmp_path):
    """torch re-raises a worker's InputError with the worker's traceback in its message."""
    from torch.utils.data import DataLoader

    from reid.data.dataset import ImageDataset

    (tmp_path / "0001_c1_01.jpg").write_text("truncated")
    loader = DataLoader(ImageDataset([tmp_path / "0001_c1_01.jpg"], [0], lambda x: x),
                        num_workers=1)

    def body(params, args):
        next(iter(loader))

    with pytest.raises(SystemExit):
        run_stage(monkeypatch, body)
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / '0001_c1_01.jpg'}: cannot read image")
    assert err.count("\n") == 1 and "Traceback" not in err
