"""Outputs are all or nothing: a sweep's files are switched into --out as a whole set, and a run that fails (an
error, Ctrl-C, SIGTERM, a kill between the two renames) leaves the earlier set whole and byte-identical."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gr_explorer.export as export
import gr_explorer.files as files
import gr_explorer.outputs as outputs
from gr_explorer.cli import main
from gr_explorer.errors import OutputError
from gr_explorer.files import (
    MANIFEST,
    check_output_folder,
    publish_folder,
    recover_folder,
)
from helpers import saved_tiny

REPO = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fill(files_: dict[str, bytes], fail_at: str | None = None, error: BaseException | None = None):
    def fill(stage: Path) -> list[Path]:
        written = []
        for name, data in files_.items():
            if name == fail_at:
                raise error
            p = stage / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            written.append(p)
        return written
    return fill


OLD = {"results.csv": b"old results", "run.json": b"{}", "metrics.csv": b"old metrics", "features/m.npz": b"old npz"}
NEW = {"results.csv": b"new results", "run.json": b'{"new": 1}', "figure.html": b"<html>"}


def _beside(out: Path) -> list[str]:
    """Staging or backup folders of `out` left beside it."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}~"))


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_a_success_replaces_the_whole_set(tmp_path, monkeypatch, exchange):
    out = tmp_path / "out"
    publish_folder(out, _fill(OLD))
    if not exchange:
        monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    written = publish_folder(out, _fill(NEW))
    assert sorted(str(p.relative_to(out)) for p in written) == sorted(NEW)
    got = _snapshot(out)
    assert {k: v for k, v in got.items() if k != MANIFEST} == NEW  # metrics.csv and features/ of the old run: gone
    assert _beside(out) == []  # no staging, no backup


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_the_exchange_is_atomic_here(tmp_path):
    """On this Linux filesystem the switch is one renameat2(RENAME_EXCHANGE): never a moment without --out."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    assert files._exchange(a, b) and (b / "x").read_text() == "a" and not (a / "x").exists()


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt(),
                                   SystemExit(143)], ids=["disk-full", "ctrl-c", "sigterm-as-exit"])
def test_a_failed_write_leaves_the_old_set_whole(tmp_path, error):
    out = tmp_path / "out"
    publish_folder(out, _fill(OLD))
    before = _snapshot(out)
    with pytest.raises(type(error) if not isinstance(error, OSError) else OutputError):
        publish_folder(out, _fill(NEW, fail_at="figure.html", error=error))
    assert _snapshot(out) == before and _beside(out) == []


def test_a_kill_between_the_two_renames_is_told_and_recovered(tmp_path, monkeypatch):
    out = tmp_path / "out"
    publish_folder(out, _fill(OLD))
    before = _snapshot(out)
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    real_rename, calls = os.rename, []

    def dies_after_the_first(src, dst):
        calls.append(dst)
        real_rename(src, dst)
        if len(calls) == 1:
            raise SystemExit("killed")  # out -> previous done, staging -> out not

    monkeypatch.setattr(files.os, "rename", dies_after_the_first)
    with pytest.raises(SystemExit):
        publish_folder(out, _fill(NEW))
    monkeypatch.setattr(files.os, "rename", real_rename)
    # What a reader sees: no out, and the previous whole set beside it under a name that says so.
    (previous,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out~previous~")]
    assert not out.exists() and _snapshot(previous) == before
    with pytest.warns(UserWarning, match="previous outputs.*back in place"):
        assert recover_folder(out) == out
    assert _snapshot(out) == before and _beside(out) == []
    publish_folder(out, _fill(NEW))
    assert {k: v for k, v in _snapshot(out).items() if k != MANIFEST} == NEW


def test_sigterm_during_the_writes_publishes_nothing(tmp_path):
    """A process killed by SIGTERM (default action) while filling the staging folder: --out is the old set."""
    out = tmp_path / "out"
    publish_folder(out, _fill(OLD))
    before = _snapshot(out)
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from gr_explorer.files import publish_folder
        def fill(stage):
            (stage / "results.csv").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            (stage / "run.json").write_bytes(b"never")
            return []
        publish_folder(Path({str(out)!r}), fill)
    """)
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert r.returncode == -15
    assert _snapshot(out) == before
    (orphan,) = _beside(out)  # the killed process's staging: hidden, named by its owner, never read
    assert orphan.startswith(".out~") and "previous" not in orphan
    files.remove_orphans(tmp_path, ".out", grace_s=0)
    assert _beside(out) == []


# -- through the CLI -------------------------------------------------------------------------------------------
def _sweep(tmp_path, out, *extra):
    _, path = saved_tiny(tmp_path)
    return main(["sweep", "--model", f"file:{path}", "--tasks", "shape", "--n-train", "60", "--n-test", "30",
                 "--probe", "knn", "--no-cache", "--out", str(out), "--quiet", *extra])


def test_cli_a_later_file_that_fails_leaves_the_earlier_run_whole(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert _sweep(tmp_path, out, "--save-features") == 0
    before = _snapshot(out)
    assert {"results.csv", "run.json", "figure.html", "heatmap.html", MANIFEST} <= set(before)
    real, seen = files.atomic_write, []

    def full_disk_at_the_figure(dest, data, mode=0o644):
        seen.append(Path(dest).name)
        if Path(dest).name == "figure.html":
            raise OSError(errno.ENOSPC, "No space left on device", str(dest))
        return real(dest, data, mode)

    monkeypatch.setattr(outputs, "atomic_write", full_disk_at_the_figure)  # the tables
    monkeypatch.setattr(export, "atomic_write", full_disk_at_the_figure)  # the figures
    assert _sweep(tmp_path, out, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "left as it was" in err and "Traceback" not in err
    assert seen.index("results.csv") < seen.index("figure.html")  # the new results.csv was written, in staging
    assert _snapshot(out) == before and _beside(out) == []
    monkeypatch.undo()
    assert _sweep(tmp_path, out, "--seed", "1") == 0  # a success replaces the whole set: features/ gone
    after = _snapshot(out)
    assert after["results.csv"] != before["results.csv"] and not any(k.startswith("features") for k in after)
    assert b'"seed": 1' in after["run.json"]


def test_cli_a_folder_in_the_way_of_a_later_file_no_longer_splits_the_set(tmp_path):
    """The issue's case: `figure.html` is a folder in the old --out. The new set replaces the folder as a whole."""
    out = tmp_path / "run"
    assert _sweep(tmp_path, out) == 0
    (out / "figure.html").unlink()
    (out / "figure.html").mkdir()
    assert _sweep(tmp_path, out, "--seed", "2") == 0
    assert (out / "figure.html").is_file() and b'"seed": 2' in (out / "run.json").read_bytes()


@pytest.mark.parametrize("case", ["foreign-file", "is-a-file", "cwd", "legacy-ok", "empty-ok"])
def test_cli_refuses_an_out_it_would_damage_before_any_work(tmp_path, monkeypatch, capsys, case):
    import gr_explorer.run as run

    out = tmp_path / "here"
    if case == "is-a-file":
        out.write_text("x")
    else:
        out.mkdir()
    if case == "foreign-file":
        (out / "thesis.tex").write_text("mine")
    if case == "legacy-ok":  # written before MANIFEST existed
        (out / "results.csv").write_text("a")
        (out / "features").mkdir()
    if case == "cwd":
        monkeypatch.chdir(out)
    if case.endswith("ok"):
        assert check_output_folder(out, "output folder (--out)", ("results.csv", "features")) == out
        return
    monkeypatch.setattr(run, "extract_features", lambda *a, **k: pytest.fail("extraction started"))
    assert _sweep(tmp_path, out) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The output folder (--out)") and "Traceback" not in err
    assert {"foreign-file": "thesis.tex", "is-a-file": "it is a file", "cwd": "runs in"}[case] in err
    if case == "foreign-file":
        assert (out / "thesis.tex").read_text() == "mine"
