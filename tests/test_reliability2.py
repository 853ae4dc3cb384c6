"""More faults a careless user meets: huge sizes, unwritable paths, two runs in one folder, Ctrl-C at any
moment, a changed corpus, a damaged checkpoint, and the traps a newcomer falls into. Each ends in one clear
line and the documented exit code (2: bad input; 1: the work failed; 130: Ctrl-C), and nothing is lost.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import assert_usage_error, run_module, write_tiny_corpus
from test_reliability import one_error_line, run_main, trainer

from data.corpus import read_corpus
from scratch import train as scratch_train
from wordrnn.core.errors import UsageError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs where the test runs as root (root ignores
    permissions), else a folder without write permission."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if made.returncode:
        pytest.skip(f"this machine does not allow a tmpfs mount: {made.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


# ---------------------------------------------------------------- places nothing can be written

def test_a_trainer_refuses_an_out_it_cannot_write_before_any_work(corpus, read_only_folder, capsys):
    out = read_only_folder / "run"
    code, _, err = run_main(scratch_train.main, trainer(corpus, out, "--epochs", "1"), capsys)
    assert code == 2
    assert f"--out {out}: nothing can be written in {read_only_folder}" in one_error_line(err)


def test_the_web_page_refuses_an_out_it_cannot_write(read_only_folder, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read before --out is checked")
    assert_usage_error(run_module("export.web", "--model", str(model), "--out", str(read_only_folder / "site")),
                       f"nothing can be written in {read_only_folder}")


def test_an_os_error_on_a_path_is_one_line_naming_it(capsys):
    from wordrnn.core.errors import cli

    @cli
    def main(err: OSError) -> None:
        raise err

    for err, code in ((PermissionError(errno.EACCES, "Permission denied", "/x/run"), 2),
                      (OSError(errno.ENOSPC, "No space left on device", "/x/site"), 1)):
        with pytest.raises(SystemExit) as stop:
            main(err)
        assert stop.value.code == code
        line = one_error_line(capsys.readouterr().err)
        assert f"cannot use {err.filename}: {err.strerror}" in line


def test_the_web_page_on_a_full_disk_names_the_folder(tmp_path, monkeypatch, capsys):
    from export import web

    def no_space(source, dest, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(shutil, "copyfile", no_space)
    monkeypatch.setattr(web, "ort_files", lambda: [])
    with pytest.raises(OSError) as caught:
        web.write_site(tmp_path / "m.onnx", tmp_path / "site")
    assert caught.value.filename == str(tmp_path / "site") and caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # the staging folder is gone


# ---------------------------------------------------------------- corpus files

def test_an_unterminated_quote_in_a_csv_is_named_with_its_line(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('title,text\na,"first poem\nstill the first\nb,second poem\nc,third poem\n')
    with pytest.raises(UsageError, match=r"the quote opened in the record on line 2 is never closed"):
        read_corpus(path)


def test_a_stray_quote_inside_a_quoted_csv_field_is_named(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('title,text\na,"one"two"\nb,"three"\n')
    with pytest.raises(UsageError, match=r"the record on line 2 is not valid CSV"):
        read_corpus(path)
