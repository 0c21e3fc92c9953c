"""Code from a git repository (SPEC section 10) through the real CLI on the local backend:
real git, bare upstreams served over file://, git:// (git daemon) and smart HTTP behind
basic auth, and the provenance of a project that is a work tree."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Gridctl
from gitrepos import Upstream, git, hermetic_git_env
from gitservers import GitDaemon, SmartHttp, credential_helper_config

TOKEN = "ghp_s3cretT0kenThatMustNeverShowUp"
USER = "ada"

SHOW = """\
import os, sys
from pathlib import Path
print("version:", Path("version.txt").read_text().strip())
print("argv:", " ".join(sys.argv[1:]))
for name in ("GRIDCTL_GIT_URL", "GRIDCTL_GIT_COMMIT", "GRIDCTL_GIT_DIRTY"):
    print(name + "=" + os.environ.get(name, "<unset>"))
print("data shipped:", Path("data/big.bin").exists())
"""
"""Says which commit's files it sees, what gridctl told it, and whether .gridignore held."""


@pytest.fixture
def remote(upstream: Upstream) -> Upstream:
    """main at version 2 with an annotated tag v1 at version 1, and a branch feature/x at
    version 3; HEAD names main."""
    upstream.commit({"show.py": SHOW}, message="Add show.py")
    upstream.tag("v1", annotated=True)
    upstream.commit({"version.txt": "2\n"}, message="Version 2")
    upstream.branch("feature/x")
    upstream.commit({"version.txt": "3\n"}, message="Version 3")
    upstream.checkout("main")
    return upstream


def ran(cli: Gridctl, *args: str, env: dict[str, str] | None = None) -> tuple[dict, str]:
    """Runs to the end; the run's status and its only experiment's log."""
    done = cli("run", "--wait", "--output", "json", *args, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    (experiment,) = status["experiments"]
    log = cli("logs", experiment["name"], env=env).stdout
    return status, log


def said(log: str, name: str) -> str:
    """The value the script printed for ``name``."""
    for line in log.splitlines():
        _, _, text = line.partition("Z ")
        if text.startswith(f"{name}=") or text.startswith(f"{name}: "):
            return text.split("=", 1)[1] if "=" in text else text.split(": ", 1)[1]
    raise AssertionError(f"{name} not in the log:\n{log}")


def refused(cli: Gridctl, *args: str, env: dict[str, str] | None = None) -> str:
    """Exit 2, one line, and no run started; the line."""
    before = cli.json("status")
    done = cli("run", *args, timeout=300, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert cli.json("status") == before
    return lines[0]


def test_a_branch_a_tag_and_a_commit_each_run_exactly_their_files(gridctl, remote):
    url = remote.file_url
    tagged, second, third = remote.sha("v1"), remote.sha("main"), remote.sha("feature/x")
    cases = [
        (url, "main", second, "2"),
        (f"{url}@v1", "v1", tagged, "1"),
        (f"{url}@feature/x", "feature/x", third, "3"),
        (f"{url}@{tagged[:7]}", tagged[:7], tagged, "1"),  # short, and no ref's tip
        (f"{url}@{third}", third, third, "3"),
    ]
    for typed, ref, commit, version in cases:
        status, log = ran(gridctl, "--git", typed, "show.py", "--lr", "0.1")
        assert status["source"] == {"git_url": url, "ref": ref, "commit": commit, "dirty": False}
        assert said(log, "version") == version, typed
        assert said(log, "argv") == "--lr 0.1"
        assert said(log, "GRIDCTL_GIT_COMMIT") == commit
        assert said(log, "GRIDCTL_GIT_URL") == url
        assert said(log, "GRIDCTL_GIT_DIRTY") == "0"
        assert said(log, "data shipped") == "False"  # the repository's .gridignore holds
    table = gridctl("status").stdout
    assert tagged[:7] in table and third[:7] in table


def test_the_same_commit_twice_uploads_nothing_the_second_time(gridctl, remote):
    ran(gridctl, "--git", f"{remote.file_url}@v1", "show.py")
    # Only that commit was fetched, not the history before it.
    (cache,) = (gridctl.home / "cache" / "git" / "repos").glob("*/")
    assert git("--git-dir", str(cache), "rev-list", "--all") == remote.sha("v1")
    (archive,) = gridctl.home.rglob("bundles/*.tar.gz")
    before = archive.stat().st_mtime_ns
    ran(gridctl, "--git", f"{remote.file_url}@{remote.sha('v1')}", "show.py")
    assert list(gridctl.home.rglob("bundles/*.tar.gz")) == [archive]
    assert archive.stat().st_mtime_ns == before
    # A new commit on the branch is a new bundle, fetched without asking twice for the old.
    remote.commit({"version.txt": "4\n"})
    _, log = ran(gridctl, "--git", remote.file_url, "show.py")
    assert said(log, "version") == "4"
    assert len(list(gridctl.home.rglob("bundles/*.tar.gz"))) == 2


def test_a_git_daemon_url_and_the_config_files_git_key(gridctl, remote, project):
    with GitDaemon(remote.bare.parent) as daemon:
        url = daemon.url(remote.name)
        status, log = ran(gridctl, "--git", f"{url}@feature/x", "show.py")
        assert status["source"]["git_url"] == url
        assert said(log, "version") == "3"
        (project / "run.yml").write_text(f"git: {url}@v1\n")
        status, log = ran(gridctl, "--config", "run.yml", "show.py")
    assert status["source"]["ref"] == "v1"
    assert said(log, "version") == "1"


def test_a_github_file_link_is_the_repository_the_ref_and_the_script(gridctl, remote, tmp_path):
    # The user's git maps github.com to the local upstream, as a mirror setting would.
    config = tmp_path / "gitconfig"
    base = remote.bare.parent.as_uri() + "/"
    git("config", "--file", str(config), f"url.{base}.insteadOf", "https://github.com/acme/")
    env = {**gridctl.env, "GIT_CONFIG_GLOBAL": str(config)}
    link = f"https://github.com/acme/{remote.name}.git/blob/feature/x/show.py"
    status, log = ran(gridctl, link, "--epochs", "1", env=env)
    assert status["source"]["git_url"] == f"https://github.com/acme/{remote.name}.git"
    assert status["source"]["ref"] == "feature/x"
    assert said(log, "version") == "3"
    assert said(log, "argv") == "--epochs 1"


@pytest.fixture
def private(remote: Upstream) -> Iterator[SmartHttp]:
    with SmartHttp(remote.bare.parent, USER, TOKEN) as server:
        yield server


def nowhere(token: str, *places: Path) -> None:
    """No file below ``places`` holds ``token`` (the registry's database and the git cache
    included)."""
    for place in places:
        for path in place.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert token.encode() not in path.read_bytes(), path


def test_a_private_repository_over_http_with_a_credential_helper(
    gridctl, remote, private, tmp_path
):
    url = private.url(remote.name)
    env = {**gridctl.env, **credential_helper_config(tmp_path, USER, TOKEN)}
    done = gridctl("run", "--wait", "--output", "json", "--git", f"{url}@v1", "show.py", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"]["commit"] == remote.sha("v1")
    assert any(r.authenticated for r in private.requests)
    assert TOKEN not in done.stdout + done.stderr
    nowhere(TOKEN, gridctl.home)


def test_a_token_in_the_url_is_used_but_never_kept_or_shown(gridctl, remote, private):
    url = private.url(remote.name)
    with_token = url.replace("http://", f"http://{USER}:{TOKEN}@")
    done = gridctl("run", "--wait", "--output", "json", "--git", with_token, "show.py")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["source"]["git_url"] == url
    log = gridctl("logs", status["experiments"][0]["name"]).stdout
    assert said(log, "GRIDCTL_GIT_URL") == url
    for shown in (done.stdout, done.stderr, log, gridctl("status").stdout):
        assert TOKEN not in shown
    nowhere(TOKEN, gridctl.home)

    # A wrong token: git's own complaint comes back scrubbed, and nothing starts.
    wrong = url.replace("http://", f"http://{USER}:{TOKEN}x@")
    line = refused(gridctl, "--git", wrong, "show.py")
    assert TOKEN not in line
    assert "Authentication failed" in line and url in line


def test_a_private_repository_without_credentials_fails_at_once(gridctl, remote, private):
    line = refused(gridctl, "--git", private.url(remote.name), "show.py")
    assert "could not read Username" in line or "Authentication" in line, line


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        held: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(server.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield server.getsockname()[1]
        stop.set()
        thread.join()
        for connection in held:
            connection.close()


def test_bad_input_is_one_line_and_starts_nothing(gridctl, remote, tmp_path, silent_server):
    url = remote.file_url
    line = refused(gridctl, "--git", f"{url}@nope", "show.py")
    assert line.startswith(f"gridctl: error: {url} has no branch, tag or commit 'nope' (it has ")
    assert all(name in line for name in ("main", "feature/x", "v1"))
    assert refused(gridctl, "--git", f"{url}@v1", "missing.py") == (
        f"gridctl: error: script missing.py is not in {url} at v1 ({remote.sha('v1')[:7]})"
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "does not appear to be a git repository" in refused(
        gridctl, "--git", plain.as_uri(), "show.py"
    )
    assert "Connection refused" in refused(gridctl, "--git", "git://127.0.0.1:1/x.git", "s.py")
    # git itself echoes this URL's password ("unable to look up ada:PASSWORD@..."): scrubbed.
    echoed = refused(gridctl, "--git", f"git://ada:{TOKEN}@127.0.0.1:1/x.git", "s.py")
    assert "unable to look up" in echoed and TOKEN not in echoed
    assert refused(gridctl, "--git", url, "--localdir", ".", "show.py") == (
        "gridctl: error: --localdir and --git both say where the code is: give one of them"
    )
    assert "inside the repository" in refused(gridctl, "--git", url, "../show.py")
    hung = {**gridctl.env, "GRIDCTL_GIT_TIMEOUT": "3"}
    silent = f"git://127.0.0.1:{silent_server}/x.git"
    assert refused(gridctl, "--git", silent, "show.py", env=hung) == (
        f"gridctl: error: cannot read {silent}: git gave no answer in 3 s"
        " (GRIDCTL_GIT_TIMEOUT sets how long to wait)"
    )


@pytest.fixture
def clone(remote: Upstream, project: Path) -> Path:
    """The project folder is a clone of the upstream, on main."""
    project.rmdir()
    git("clone", "--quiet", remote.file_url, str(project))
    identity = {"user.name": "Bo", "user.email": "bo@example.com"}
    for key, value in identity.items():
        git("config", key, value, cwd=project)
    return project


def test_a_work_tree_records_its_commit_and_warns_of_what_is_not_in_it(gridctl, remote, clone):
    head = remote.sha("main")
    status, log = ran(gridctl, "show.py")
    assert status["source"] == {
        "git_url": remote.file_url,
        "ref": "main",
        "commit": head,
        "dirty": False,
    }
    assert said(log, "GRIDCTL_GIT_DIRTY") == "0"

    (clone / "version.txt").write_text("edited\n")
    (clone / "notes.py").write_text("")
    done = gridctl("run", "--wait", "--output", "json", "show.py")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"warning: uncommitted changes go with this run but are not in commit {head[:7]}:"
        " version.txt, notes.py"
    ]
    status = json.loads(done.stdout)
    assert status["source"]["dirty"] is True
    log = gridctl("logs", status["experiments"][0]["name"]).stdout
    assert said(log, "version") == "edited"
    assert said(log, "GRIDCTL_GIT_DIRTY") == "1"
    assert f"commit {head[:7]}+" in gridctl("status", status["run"]).stdout

    git("commit", "--quiet", "-am", "local", cwd=clone, env=hermetic_git_env())
    local = git("rev-parse", "HEAD", cwd=clone)
    done = gridctl("run", "--dry-run", "--output", "json", "show.py")
    assert json.loads(done.stdout)["source"]["commit"] == local
    assert (
        f"warning: commit {local[:7]} is not on {remote.file_url} yet: push it so that others"
        " can find the code this run used"
    ) in done.stderr.splitlines()


def test_an_origin_url_keeps_its_token_to_itself(gridctl, clone):
    git(
        "remote",
        "set-url",
        "origin",
        f"https://x-access-token:{TOKEN}@git.example.com/o/r",
        cwd=clone,
    )
    done = gridctl("run", "--wait", "--output", "json", "show.py")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"]["git_url"] == "https://git.example.com/o/r"
    assert TOKEN not in done.stdout + done.stderr
    nowhere(TOKEN, gridctl.home)


def test_a_folder_outside_any_repository_has_no_source(gridctl, project):
    (project / "s.py").write_text("print('hi')\n")
    status, _ = ran(gridctl, "s.py")
    assert status["source"] == {"git_url": None, "ref": None, "commit": None, "dirty": None}
    assert ", commit" not in gridctl("status", status["run"]).stdout
