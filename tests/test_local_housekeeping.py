"""Run and experiment names where either fits, and what gridctl keeps, stores and sends
(issue 9's finding 9 and the smaller findings), through the real ``gridctl`` command."""

from __future__ import annotations

import json
import signal

SLOW = """\
import time
print("working", flush=True)
time.sleep(600)
"""


def bundles(gridctl) -> list[str]:
    found = gridctl.home / "store" / "bundles"
    return sorted(p.name for p in found.iterdir()) if found.is_dir() else []


def test_a_run_name_stands_for_its_only_experiment(gridctl, project):
    (project / "hello.py").write_text("import sys\nprint('hello', sys.argv[1:])\n")
    assert gridctl("run", "--name", "one", "--wait", "hello.py").returncode == 0
    logs = gridctl("logs", "one")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.rstrip().endswith("hello []")
    assert gridctl("logs", "one", "--tail", "1").stdout == logs.stdout

    sweep = gridctl("run", "--name", "two", "--wait", "hello.py", "--x", "[1, 2]")
    assert sweep.returncode == 0, sweep.stderr
    refused = gridctl("logs", "two")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "gridctl: error: run two has 2 experiments (two-exp0, two-exp1); name one of them"
    )


def test_status_of_an_experiment_shows_that_experiment(gridctl, project):
    (project / "hello.py").write_text("print('hello')\n")
    assert gridctl("run", "--name", "st", "--wait", "hello.py", "--x", "[1, 2]").returncode == 0
    shown = gridctl.json("status", "st-exp1")
    assert (shown["run"], shown["name"], shown["status"]) == ("st", "st-exp1", "succeeded")
    assert (shown["params"], shown["exit_code"]) == ({"x": 2}, 0)
    assert [a["status"] for a in shown["attempts"]] == ["succeeded"]
    table = gridctl("status", "st-exp1")
    assert table.returncode == 0, table.stderr
    assert "st-exp1 (run st)" in table.stdout
    assert "python hello.py --x 2" in table.stdout
    missing = gridctl("status", "st-exp7")
    assert missing.returncode == 2
    assert "no run or experiment named 'st-exp7'" in missing.stderr


def test_deleting_the_last_experiment_deletes_the_run_and_its_bundle(gridctl, project):
    (project / "hello.py").write_text("print('hello')\n")
    assert gridctl("run", "--name", "a", "--wait", "hello.py", "--x", "[1, 2]").returncode == 0
    assert gridctl("run", "--name", "b", "--wait", "hello.py").returncode == 0
    # One bundle for both runs, kept once: not copied again into a cache.
    assert len(bundles(gridctl)) == 1
    assert not list((gridctl.home / "cache").glob("bundles/*"))
    assert gridctl("delete", "a-exp0").returncode == 0
    assert [e["name"] for e in gridctl.status("a")["experiments"]] == ["a-exp1"]
    assert gridctl.json("delete", "a-exp1") == {"deleted": ["a-exp1"]}
    assert [r["run"] for r in gridctl.json("status")] == ["b"]
    assert gridctl("status", "a").returncode == 2
    assert len(bundles(gridctl)) == 1  # run b still uses it
    assert gridctl("delete", "b-exp0").returncode == 0
    assert gridctl.json("status") == []
    assert bundles(gridctl) == []
    assert list((gridctl.home / "store" / "runs").iterdir()) == []


def test_downloaded_artifacts_are_never_bundled(gridctl, project):
    (project / "make.py").write_text(
        "import os\nos.makedirs('out', exist_ok=True)\nopen('out/model.bin', 'w').write('m')\n"
    )
    assert gridctl("run", "--name", "art", "--wait", "make.py").returncode == 0
    assert gridctl("artifacts", "art").returncode == 0  # into ./gridctl_artifacts, as Grid did
    assert (project / "gridctl_artifacts" / "art-exp0" / "out" / "model.bin").is_file()
    listed = gridctl.json("bundle", "--list")
    assert listed == ["make.py"]
    # A folder of the user's own is not marked, even when artifacts land in it.
    assert gridctl("artifacts", "art", "--dest", ".").returncode == 0
    assert not (project / ".gridctl-artifacts").exists()
    assert "art-exp0/out/model.bin" in gridctl.json("bundle", "--list")


def test_bytecode_caches_are_not_artifacts(gridctl, project, tmp_path):
    (project / "helper.py").write_text("VALUE = 42\n")
    (project / "main.py").write_text(
        "import helper\nopen('result.txt', 'w').write(str(helper.VALUE))\n"
    )
    gridctl.env.pop("PYTHONDONTWRITEBYTECODE", None)
    assert gridctl("run", "--name", "pyc", "--wait", "main.py").returncode == 0
    copied = gridctl.json("artifacts", "pyc", "--dest", str(tmp_path / "out"))
    assert copied["files"] == [str(tmp_path / "out" / "pyc-exp0" / "result.txt")]


def test_a_datastore_of_unchanged_data_makes_no_new_version(gridctl, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("data")
    assert gridctl.json("datastore", "create", "d", str(tmp_path / "data"))["version"] == 1
    again = gridctl("datastore", "create", "d", str(tmp_path / "data"))
    assert again.returncode == 0, again.stderr
    assert "d version 1 already holds exactly these 1 file(s): no new version made" in (
        again.stdout
    )
    shown = gridctl.json("datastore", "create", "d", str(tmp_path / "data"))
    assert (shown["version"], shown["unchanged"], shown["uploaded_files"]) == (1, True, 0)
    (listed,) = gridctl.json("datastore", "list")
    assert [v["version"] for v in listed["versions"]] == [1]


def test_ctrl_c_while_waiting_leaves_the_experiments_running(gridctl, project):
    (project / "slow.py").write_text(SLOW)
    waiting = gridctl.popen("run", "--name", "cc", "--wait", "slow.py")
    gridctl.wait_until(lambda: "working" in gridctl("logs", "cc-exp0").stdout)
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 130
    assert err.strip().splitlines() == [
        "gridctl: stopped waiting; cc keeps running (gridctl status cc; gridctl stop cc stops it)"
    ]
    assert gridctl.experiment("cc", "cc-exp0")["status"] == "running"
    assert gridctl("stop", "cc").returncode == 0


def test_interrupt_takes_a_run_name(gridctl, project):
    (project / "slow.py").write_text(SLOW)
    assert gridctl("run", "--name", "whole", "slow.py").returncode == 0
    gridctl.wait_until(lambda: "working" in gridctl("logs", "whole").stdout)
    sent = gridctl("interrupt", "whole", "--window", "10", "--output", "json")
    assert sent.returncode == 0, sent.stderr
    assert [e["name"] for e in json.loads(sent.stdout)] == ["whole-exp0"]
    gridctl.wait_until(lambda: gridctl.status("whole")["status"] == "interrupted")
