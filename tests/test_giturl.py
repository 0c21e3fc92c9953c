"""Repository URLs as typed: URL@REF, GitHub file links, and credentials kept out of sight."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gridctl.cli.errors import GridctlError
from gridctl.cli.giturl import (
    FileLink,
    Remote,
    parse_file_link,
    parse_remote,
    redact,
    script_in_tree,
    scrub,
)


@pytest.mark.parametrize(
    ("typed", "url", "ref"),
    [
        ("https://github.com/o/r", "https://github.com/o/r", None),
        ("https://github.com/o/r@v1.0", "https://github.com/o/r", "v1.0"),
        ("https://u:t0k@github.com/o/r.git@main", "https://u:t0k@github.com/o/r.git", "main"),
        ("https://t0ken@github.com/o/r", "https://t0ken@github.com/o/r", None),
        ("https://github.com/o/r@feature/x", "https://github.com/o/r", "feature/x"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", None),
        ("git@github.com:o/r.git@abc1234", "git@github.com:o/r.git", "abc1234"),
        ("ssh://git@host:2222/r.git@dev", "ssh://git@host:2222/r.git", "dev"),
        ("file:///srv/r.git@v2", "file:///srv/r.git", "v2"),
        ("/srv/r.git@main", "/srv/r.git", "main"),
        ("git://127.0.0.1:9418/r.git", "git://127.0.0.1:9418/r.git", None),
    ],
)
def test_url_and_ref(typed: str, url: str, ref: str | None) -> None:
    assert parse_remote(typed) == Remote(url, ref)


@pytest.mark.parametrize("typed", ["", "  ", "--upload-pack=touch /tmp/x", "https://h/r@", "@main"])
def test_bad_urls_are_refused(typed: str) -> None:
    with pytest.raises(GridctlError):
        parse_remote(typed)


def test_a_github_file_link_names_repository_ref_and_file() -> None:
    link = parse_file_link("https://github.com/pytorch/examples/blob/main/mnist/main.py")
    assert link == FileLink(
        Remote("https://github.com/pytorch/examples"), ("main", "mnist", "main.py")
    )
    assert link.splits() == [("main", "mnist/main.py"), ("main/mnist", "main.py")]


def test_other_scripts_are_no_file_links() -> None:
    assert parse_file_link("train.py") is None
    assert parse_file_link("https://gitlab.com/o/r/blob/main/x.py") is None
    with pytest.raises(GridctlError, match="names a ref and a file"):
        parse_file_link("https://github.com/o/r/blob/main")


@pytest.mark.parametrize("script", ["../x.py", "/etc/passwd", "a/../../x.py", ".", "./"])
def test_a_script_outside_the_repository_is_refused(script: str) -> None:
    with pytest.raises(GridctlError, match="inside the repository"):
        script_in_tree(script)


def test_a_script_path_is_normalised() -> None:
    assert script_in_tree("./mnist//main.py") == "mnist/main.py"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:tok@h/o/r", "https://h/o/r"),
        ("https://tok@h/o/r", "https://h/o/r"),
        ("HTTP://u:p@h:8080/r?x#y", "HTTP://h:8080/r?x#y"),
        ("ssh://git@h/r", "ssh://git@h/r"),
        ("ssh://git:pw@h/r", "ssh://git@h/r"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("file:///srv/r.git", "file:///srv/r.git"),
        ("https://u:p@ss@h/r", "https://h/r"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


TOKENS = st.text(alphabet=string.ascii_letters + string.digits + "-_.~", min_size=6, max_size=40)
TEXT = st.text(max_size=40)


@given(token=TOKENS, user=st.sampled_from(["", "x-access-token:", "oauth2:", "bob:"]))
def test_no_url_shows_its_token(token: str, user: str) -> None:
    url = f"https://{user}{token}@git.example.com/o/r.git"
    assert token not in redact(url)
    assert redact(url) == "https://git.example.com/o/r.git"


@given(token=TOKENS, before=TEXT, between=TEXT, after=TEXT)
def test_a_text_keeps_no_token(token: str, before: str, between: str, after: str) -> None:
    """git's messages quote the URL, or the token alone, anywhere."""
    url = f"https://oauth2:{token}@git.example.com/o/r.git"
    text = f"{before}'{url}'{between}{token}{after}"
    assert token not in scrub(text, url)


@given(token=TOKENS, text=TEXT)
def test_other_urls_in_a_text_lose_their_credentials(token: str, text: str) -> None:
    assume(token not in text)
    other = f"https://me:{token}@mirror.example.com/x.git"
    said = scrub(f"{text} redirected to {other}", "https://git.example.com/o/r.git")
    assert token not in said
    assert "https://mirror.example.com/x.git" in said
