"""Repository URLs as the user types them: ``URL@REF``, GitHub file links, and the
credentials some URLs carry, which must never be stored, printed or uploaded (SPEC section 10).

Pure functions, so they are property-tested: whatever the URL, ``redact`` leaves no secret
of it, and ``scrub`` removes every secret of it from any text (git's own messages included).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from gridctl.cli.errors import GridctlError

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_SCP = re.compile(r"(?P<user>[^@/:]+@)?(?P<host>[^/:]+):(?!//)")
"""git's scp-like ssh syntax, ``user@host:path``; ``host:path`` with no slash before the colon."""
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s@]*)@")
"""The userinfo of any URL inside a text, for ``scrub``."""
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")
MASK = "***"
"""What a credential found in a text becomes."""
_MIN_SECRET = 6
"""Shorter user names are names (``git``, ``bob``), not tokens, and are left in texts."""
_GITHUB_FILE = re.compile(
    r"https?://(?:www\.)?github\.com/(?P<owner>[^/@]+)/(?P<repo>[^/]+)/blob/(?P<rest>[^?#]+)"
)


@dataclass(frozen=True)
class Remote:
    """A repository URL as given (which git uses, credentials and all) and as shown."""

    url: str
    ref: str | None = None
    """What follows ``@`` in ``URL@REF``; None: the remote's default branch."""

    @property
    def shown(self) -> str:
        """The URL without its credentials: the only form gridctl ever records or prints."""
        return redact(self.url)

    def scrub(self, text: str) -> str:
        """``text`` (say git's error output) without any credential of this URL."""
        return scrub(text, self.url)


@dataclass(frozen=True)
class FileLink:
    """A GitHub file link, ``https://github.com/OWNER/REPO/blob/REF/PATH``: REF may hold
    slashes (``feature/x``), so which segments are the ref is only known from the remote's refs."""

    remote: Remote
    segments: tuple[str, ...]

    def splits(self) -> list[tuple[str, str]]:
        """Each (ref, script path) the segments may mean, shortest ref first."""
        return [
            ("/".join(self.segments[:i]), "/".join(self.segments[i:]))
            for i in range(1, len(self.segments))
        ]


def parse_remote(value: str) -> Remote:
    """``URL`` or ``URL@REF`` (the ``@`` after the URL's host and path, as pip reads it)."""
    value = value.strip()
    if not value:
        raise GridctlError("--git needs a repository URL, e.g. https://github.com/OWNER/REPO")
    if value.startswith("-"):
        raise GridctlError(f"--git {redact(value)!r} is not a repository URL")
    start = _path_start(value)
    at = value.rfind("@", start)
    if at < 0:
        return Remote(value)
    url, ref = value[:at], value[at + 1 :]
    if not url[start:] or not ref:
        raise GridctlError(f"--git {redact(value)}: write URL@REF, e.g. {redact(url)}@main")
    return Remote(url, ref)


def _path_start(value: str) -> int:
    """Where the repository path begins: after ``scheme://authority`` or ``user@host:``;
    0 for a local path."""
    scheme = _SCHEME.match(value)
    if scheme:
        slash = value.find("/", scheme.end())
        return len(value) if slash < 0 else slash
    scp = _SCP.match(value)
    if scp and not value.startswith(("/", ".")):
        return scp.end()
    return 0


def parse_file_link(value: str) -> FileLink | None:
    """The GitHub file link ``value`` is, or None when it is no such link."""
    found = _GITHUB_FILE.fullmatch(value)
    if found is None:
        return None
    segments = tuple(s for s in found["rest"].split("/") if s)
    if len(segments) < 2:
        raise GridctlError(f"{redact(value)}: a file link names a ref and a file in it")
    origin = value[: found.start("rest")].removesuffix("/blob/")
    return FileLink(Remote(origin), segments)


def script_in_tree(script: str) -> str:
    """SCRIPT as a path inside the repository; one that leaves it is refused."""
    path = posixpath.normpath(script.replace("\\", "/"))
    if script.startswith("/") or path == ".." or path.startswith("../") or path == ".":
        raise GridctlError(f"script {script!r} must be a path inside the repository")
    return path


def looks_like_commit(ref: str) -> bool:
    return _HEX.fullmatch(ref) is not None


def redact(url: str) -> str:
    """``url`` with no credential: an http(s) URL loses its whole userinfo (a token is often
    the user name, ``https://TOKEN@github.com``); any other keeps the user name only
    (``ssh://git@host``)."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    authority_end = _authority_end(url, scheme.end())
    authority = url[scheme.end() : authority_end]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    kept = "" if _is_http(url) else userinfo.partition(":")[0] + "@"
    return url[: scheme.end()] + kept + host + url[authority_end:]


def _authority_end(url: str, start: int) -> int:
    ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
    return min(ends, default=len(url))


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://", "ftp://", "ftps://"))


def secrets_of(url: str) -> tuple[str, ...]:
    """The credential parts of ``url``, raw and percent-decoded: its password, and an
    http(s) user name that may itself be the token."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return ()
    authority = url[scheme.end() : _authority_end(url, scheme.end())]
    userinfo, at, _ = authority.rpartition("@")
    if not at:
        return ()
    user, _, password = userinfo.partition(":")
    parts = [password]
    if _is_http(url) and len(unquote(user)) >= _MIN_SECRET:
        parts.append(user)
    found = {form for part in parts if part for form in (part, unquote(part), quote(part))}
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` shown redacted, its secrets masked wherever else they appear, and
    the credentials of any other URL in it removed."""
    text = text.replace(url, redact(url))
    for secret in secrets_of(url):
        text = text.replace(secret, MASK)
    return _USERINFO.sub(_without_credentials, text)


def _without_credentials(match: re.Match[str]) -> str:
    scheme = match["scheme"]
    if _is_http(scheme):
        return scheme
    return scheme + match["userinfo"].partition(":")[0] + "@"
