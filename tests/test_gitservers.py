"""The git harness itself: upstream repositories and the loopback servers behave like real
remotes for real git, so the ``--git`` tests built on them test gridctl, not the harness."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gitservers
import pytest
from gitrepos import INITIAL_FILES, TRAIN_PY, Upstream, git, hermetic_git_env
from gitservers import GitDaemon, SmartHttp, credential_helper_config

USER, TOKEN = "ada", "ghp_harnessToken123"


@dataclass(frozen=True)
class Remote:
    """How a client reaches ``upstream``: its URL and the environment its git needs."""

    url: str
    env: dict[str, str]
    http: SmartHttp | None = None


@pytest.fixture(params=["file", "git", "http"])
def remote(request: pytest.FixtureRequest, upstream: Upstream, tmp_path: Path) -> Iterator[Remote]:
    if request.param == "file":
        yield Remote(upstream.file_url, hermetic_git_env())
    elif request.param == "git":
        with GitDaemon(upstream.bare.parent) as daemon:
            yield Remote(daemon.url(upstream.name), hermetic_git_env())
    else:
        with SmartHttp(upstream.bare.parent, USER, TOKEN) as http:
            env = hermetic_git_env(credential_helper_config(tmp_path, USER, TOKEN))
            yield Remote(http.url(upstream.name), env, http)


def run_git(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """git as the CLI will run it: no terminal to prompt on, a bound on how long it may hang."""
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fresh_repo(path: Path) -> Path:
    git("init", "--quiet", "--bare", str(path))
    return path


def ls_remote(remote: Remote) -> dict[str, str]:
    result = run_git("ls-remote", remote.url, env=remote.env)
    assert result.returncode == 0, result.stderr
    return {ref: sha for sha, ref in (line.split("\t") for line in result.stdout.splitlines())}


def test_upstream_commits_files_modes_and_deletions(upstream: Upstream) -> None:
    tree = git("--git-dir", str(upstream.bare), "ls-tree", "-r", "--name-only", "main")
    assert sorted(tree.splitlines()) == sorted(INITIAL_FILES)
    assert git("--git-dir", str(upstream.bare), "show", "main:train.py") + "\n" == TRAIN_PY

    sha = upstream.commit(
        {"run.sh": "#!/bin/sh\necho hi\n"}, executable={"run.sh"}, delete=("data",)
    )
    assert git("--git-dir", str(upstream.bare), "rev-parse", "main") == sha
    modes = git("--git-dir", str(upstream.bare), "ls-tree", "-r", sha).splitlines()
    assert any(line.startswith("100755 blob") and line.endswith("\trun.sh") for line in modes)
    assert not any(line.endswith("data/big.bin") for line in modes)


def test_upstream_shas_are_the_same_on_every_machine_and_run(upstream: Upstream) -> None:
    assert upstream.sha() == "6d8407e7d6598edcea8c4d5ee163413882778866"


def test_branches_tags_and_default_branch_are_what_remotes_list(
    upstream: Upstream, remote: Remote
) -> None:
    first = upstream.sha()
    upstream.tag("v1", annotated=True)
    upstream.tag("light", at=first)
    feature = upstream.branch("feature")
    assert upstream.branch("release", at=first) == first
    upstream.checkout("feature")
    later = upstream.commit({"version.txt": "2\n"})
    upstream.checkout("main")
    assert upstream.commit({"version.txt": "3\n"}) != later
    upstream.set_head("feature")

    refs = ls_remote(remote)
    assert refs["refs/heads/feature"] == later != feature
    assert refs["refs/heads/main"] == upstream.sha()
    assert refs["refs/heads/release"] == first
    # An annotated tag is an object of its own; remotes list the commit it peels to.
    assert refs["refs/tags/v1"] != first and refs["refs/tags/v1^{}"] == first
    assert refs["refs/tags/light"] == first and "refs/tags/light^{}" not in refs
    symref = run_git("ls-remote", "--symref", remote.url, "HEAD", env=remote.env)
    assert "ref: refs/heads/feature\tHEAD" in symref.stdout
    assert refs["HEAD"] == later


@pytest.mark.parametrize("version", ["2", "0"])
def test_a_commit_below_the_tips_is_fetched_shallow_by_its_full_sha(
    upstream: Upstream, remote: Remote, tmp_path: Path, version: str
) -> None:
    """How gridctl fetches exactly one commit. GitHub serves any reachable commit, over
    protocol v2 (git's default) and v0 (a user's ``protocol.version=0``) alike."""
    wanted = upstream.sha()
    upstream.commit({"version.txt": "2\n"})
    repo = fresh_repo(tmp_path / "cache.git")

    result = run_git(
        "-c", f"protocol.version={version}", "fetch", "--depth", "1", remote.url, wanted,
        env=remote.env, cwd=repo,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert git("--git-dir", str(repo), "rev-parse", "FETCH_HEAD") == wanted
    assert git("--git-dir", str(repo), "show", f"{wanted}:version.txt") == "1"
    assert git("--git-dir", str(repo), "rev-parse", "--is-shallow-repository") == "true"
    assert git("--git-dir", str(repo), "rev-list", "--count", "FETCH_HEAD") == "1"


def test_http_requests_are_served_only_with_the_credential(
    upstream: Upstream, tmp_path: Path
) -> None:
    with SmartHttp(upstream.bare.parent, USER, TOKEN) as http:
        env = hermetic_git_env(credential_helper_config(tmp_path, USER, TOKEN))
        assert run_git("ls-remote", http.url(upstream.name), env=env).returncode == 0
    served = http.requests
    # git asks without credentials first, then with those its helper gave. Over protocol v2
    # (the Git-Protocol header reached the backend) refs are listed by a POST after the GET.
    assert served[0].authenticated is False and served[0].status == 401
    assert {r.status for r in served if r.authenticated} == {200}
    assert {r.method for r in served if r.authenticated} == {"GET", "POST"}
    assert all(r.status == 401 for r in served if not r.authenticated)


def test_http_without_a_credential_fails_at_once_instead_of_prompting(
    upstream: Upstream,
) -> None:
    with SmartHttp(upstream.bare.parent, USER, TOKEN) as http:
        result = run_git("ls-remote", http.url(upstream.name), env=hermetic_git_env())
    assert result.returncode == 128
    assert "could not read Username" in result.stderr
    assert "terminal prompts disabled" in result.stderr
    assert not any(r.authenticated for r in http.requests)


def test_http_accepts_the_credential_inside_the_url(upstream: Upstream) -> None:
    with SmartHttp(upstream.bare.parent, USER, TOKEN) as http:
        result = run_git(
            "ls-remote", http.url(upstream.name, credentials=True), env=hermetic_git_env()
        )
    assert result.returncode == 0, result.stderr
    assert any(r.authenticated for r in http.requests)


def test_http_with_a_wrong_token_fails_authentication(upstream: Upstream, tmp_path: Path) -> None:
    with SmartHttp(upstream.bare.parent, USER, TOKEN) as http:
        env = hermetic_git_env(credential_helper_config(tmp_path, USER, "ghp_wrong"))
        result = run_git("ls-remote", http.url(upstream.name), env=env)
    assert result.returncode == 128
    assert "Authentication failed" in result.stderr
    assert http.requests and not any(r.authenticated for r in http.requests)


def many_tags(upstream: Upstream, count: int) -> None:
    """``count`` tags on as many distinct commits, so that fetching them all makes git send a
    long list of wants."""
    stream = "".join(
        f"commit refs/tags/t{n}\ncommitter A <a@b> 0 +0000\ndata {len(str(n))}\n{n}\n\n"
        for n in range(count)
    )
    subprocess.run(
        ["git", "--git-dir", str(upstream.bare), "fast-import", "--quiet"],
        input=stream,
        text=True,
        env=hermetic_git_env(),
        check=True,
    )


@pytest.mark.parametrize(
    ("tags", "post_buffer", "sent"),
    [(100, "1048576", "gzip"), (2000, "65536", "chunked")],
)
def test_large_http_request_bodies_are_understood(
    upstream: Upstream, tmp_path: Path, tags: int, post_buffer: str, sent: str
) -> None:
    """git compresses request bodies above 1 KiB and streams them chunked above
    http.postBuffer; the server must decode both for fetches with many wants."""
    many_tags(upstream, tags)
    repo = fresh_repo(tmp_path / "cache.git")
    with SmartHttp(upstream.bare.parent, USER, TOKEN) as http:
        env = hermetic_git_env(credential_helper_config(tmp_path, USER, TOKEN))
        result = run_git(
            "-c", f"http.postBuffer={post_buffer}",
            "fetch", http.url(upstream.name), "refs/tags/*:refs/tags/*",
            env=env, cwd=repo,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(git("--git-dir", str(repo), "tag").splitlines()) == tags
    posts = [r for r in http.requests if r.method == "POST" and r.authenticated]
    if sent == "gzip":
        assert any(r.content_encoding == "gzip" for r in posts)
    else:
        assert any(r.chunked for r in posts)


def test_daemon_moves_to_another_port_when_its_port_was_taken(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        free = gitservers._free_port
        monkeypatch.setattr(gitservers, "_free_port", lambda: next(ports, None) or free())
        with GitDaemon(upstream.bare.parent) as daemon:
            assert daemon.port != taken
            result = run_git("ls-remote", daemon.url(upstream.name), env=hermetic_git_env())
            assert result.returncode == 0, result.stderr
    assert any("unable to allocate any listen sockets" in line for line in daemon.log)


def test_daemon_is_gone_after_its_block(upstream: Upstream) -> None:
    with GitDaemon(upstream.bare.parent) as daemon:
        pass
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", daemon.port))
