"""Bundle file selection: both engines against git itself, plus the gridctl-only modes."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridctl.cli.errors import GridctlError
from gridctl.cli.ignore import select_files

# Names with glob characters, whitespace, a newline and non-ASCII bytes; patterns reuse the
# tree's own names (so that they often match and negations decide) mixed with wildcards,
# brackets and escapes.
NAMES = ["a", "b", "ab", "abc", "x.log", "a ", "Build", "a b", "#c", "!d", "f[1]", "g*"]
NAMES += ["h\\i", "é", "voilà", "t\t", "n\nl"]
WILDCARDS = ["*", "**", "?", "??", "*.log", "a*", "a**", "*b", "[ab]", "[!a]*", "[a-c]*", "[^b]"]
WILDCARDS += ["[[:alpha:]]", "[[:upper:]]*", "a?c", "ab**", "**.log", "[]]", "[a", "\\[ab]", "g\\*"]
WILDCARDS += ["f\\[1\\]", "h\\\\i", "a\\ b", "a\\ ", "a[!b]*", "[\\]a]", "[c-a]", "[!c-a]*"]
EXTRA_LINES = ["", "   ", "# a comment", "\\#c", "\\!d", "e\\ ", "e ", "foo   ", "!*.log", "\\"]


def isolated_env(home: Path) -> dict[str, str]:
    """git with no global or system configuration: no global excludes file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.update(GIT_CONFIG_GLOBAL=str(home / "gitconfig"), GIT_CONFIG_NOSYSTEM="1")
    return env


def git_oracle(root: Path, home: Path) -> list[str]:
    """What git itself would add: ``git ls-files --others --cached --exclude-standard``."""
    env = isolated_env(home)
    subprocess.run(["git", "init", "-q", str(root)], env=env, check=True)
    out = subprocess.run(
        ["git", "ls-files", "--others", "--cached", "--exclude-standard", "-z"],
        cwd=root,
        env=env,
        capture_output=True,
        check=True,
    ).stdout
    return sorted(os.fsdecode(p) for p in out.split(b"\0")[:-1])


def both(root: Path, *, git_engine: str = "git") -> list[str]:
    """The selection, after checking the git and Python engines agree on it.

    ``git_engine`` is what ``use_git=True`` really uses: Python for the modes git cannot do.
    """
    by_git = select_files(root, use_git=True)
    by_python = select_files(root, use_git=False)
    assert (by_git.engine, by_python.engine) == (git_engine, "python")
    assert by_git.paths == by_python.paths
    assert by_git.mode == by_python.mode
    return list(by_git.paths)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@st.composite
def patterns(draw: st.DrawFn, names: list[str]) -> str:
    if draw(st.integers(0, 7)) == 0:
        return draw(st.sampled_from(EXTRA_LINES))
    segment = st.one_of(st.sampled_from(names), st.sampled_from(WILDCARDS))
    size = draw(st.sampled_from([1, 1, 1, 2, 2, 3]))
    body = "/".join(draw(st.lists(segment, min_size=size, max_size=size)))
    lead = draw(st.sampled_from(["", "", "", "/", "**/"]))
    trail = draw(st.sampled_from(["", "", "", "/", " "]))
    bang = draw(st.sampled_from(["", "", "!"]))
    return bang + lead + body + trail


@st.composite
def trees(draw: st.DrawFn) -> dict[str, str]:
    """Files at random depths plus ``.gitignore`` files in random folders of the tree."""
    files: dict[str, str] = {}
    dirs = {""}
    paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=4)
    for parts in draw(st.lists(paths, min_size=3, max_size=25)):
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
        path = "/".join(parts)
        if path in dirs or any(p in files for p in prefixes):
            continue
        files[path] = "x"
        dirs.update(prefixes)
    names = sorted({part for path in files for part in path.split("/")})
    folders = draw(st.lists(st.sampled_from(sorted(dirs)), max_size=3, unique=True))
    for folder in dict.fromkeys(["", *folders]):
        lines = draw(st.lists(patterns(names), min_size=1, max_size=8))
        ignore = f"{folder}/.gitignore" if folder else ".gitignore"
        if ignore not in dirs:
            files[ignore] = "".join(line + "\n" for line in lines)
    return files


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees())
def test_gitignore_trees_select_what_git_selects(tree: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp, "project"), Path(tmp, "home")
        root.mkdir()
        home.mkdir()
        write(root, tree)
        assert both(root) == git_oracle(root, home)


QUIRKS = [
    ("ab**/c\n", ["ab/c", "ab/x/c", "abx/c", "abx/y/c", "ac/c", "keep"]),
    ("a/**/b\n", ["a/b", "a/x/b", "a/x/y/b", "ab", "x/a/b"]),
    ("**/foo\n!/foo\n", ["foo", "x/foo", "x/y/foo", "foox"]),
    ("x/**\n!x/keep\n", ["x/keep", "x/drop", "x/sub/keep"]),
    ("d/\n!d/f\n", ["d/f", "e/d/f", "x/d"]),
    ("*\n!*/\n!*.py\n", ["a.py", "b.txt", "s/c.py", "s/d.txt"]),
    ("e\\ \n", ["e ", "e"]),
    ("e \n", ["e ", "e"]),
    ("\\#c\n\\!d\n#e\n", ["#c", "!d", "#e"]),
    ("[!a]\n[]]\n[a-]\n", ["a", "b", "]", "-", "aa"]),
    ("?\n", ["é", "x", "xy"]),
    ("??\n", ["é", "x", "xy"]),
    ("[[:digit:][:upper:]]*\n", ["1x", "Ab", "ab"]),
    ("sub/.gitignore\n", ["sub/.gitignore", "sub/x"]),
    ("*.log\r\n!keep.log\r\n", ["a.log", "keep.log", "b.txt"]),
    ("/a\n", ["a", "x/a"]),
    ("x/*\n", ["x/y", "x/z/w"]),
    ("foo//\n", ["foo/x"]),
    ("x[!a]*\n[\\]]\n", ["x/yz", "xbc", "]", "\\"]),
    ("[z-a]\n[!y-a]x\n", ["z", "a", "yx", "bx"]),
    ("[[:punct:]]\n[[:foo:]]\n", ["!", "_", "a/b", "c"]),
    ("a\n", ["a\n", "b\nc/a", "b"]),
    ("voilà\nÅ\nt\t\n", ["voilà", "Å", "t\t", "t"]),
    ("a /\nb\\  \n", ["a /x", "a/x", "b ", "b  ", "b"]),
    ("x/ab**\n!x/abc/\n", ["x/abc/d", "x/abd", "x/ab"]),
    ("a\n!/a**\n", ["a/a", "b"]),
    ("f\n/d\n!/d\n", ["d/f", "d/g", "f"]),
    ("[a/[ab]\n", ["a", "ab/a"]),
]


@pytest.mark.parametrize(("gitignore", "paths"), QUIRKS)
def test_gitignore_quirks_match_git(gitignore: str, paths: list[str], tmp_path: Path) -> None:
    root, home = tmp_path / "project", tmp_path / "home"
    home.mkdir()
    write(root, dict.fromkeys(paths, "x"))
    (root / ".gitignore").write_bytes(gitignore.encode())
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / ".gitignore").write_text("x\n")
    assert both(root) == git_oracle(root, home)


def test_ignored_directory_is_not_descended_and_its_gitignore_not_read(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitignore": "out/\n!out/keep\n",
            "out/.gitignore": "!*\n",
            "out/keep": "",
            "src/.gitignore": "*\n",
            "src/main.py": "",
        },
    )
    assert both(tmp_path) == [".gitignore"]


def test_deeper_gitignore_takes_precedence(tmp_path: Path) -> None:
    write(
        tmp_path,
        {".gitignore": "*.log\n", "a/.gitignore": "!*.log\n", "a/x.log": "", "b/y.log": ""},
    )
    assert both(tmp_path) == [".gitignore", "a/.gitignore", "a/x.log"]


def test_gridignore_alone_decides_when_present(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitignore": "data/\n*.log\n",
            ".gridignore": "*.ckpt\n",
            "data/train.csv": "",
            "run.log": "",
            "model.ckpt": "",
            "sub/.gridignore": "!keep.ckpt\n",
            "sub/keep.ckpt": "",
        },
    )
    expected = [".gitignore", ".gridignore", "data/train.csv", "run.log"]
    assert both(tmp_path) == expected + ["sub/.gridignore", "sub/keep.ckpt"]
    assert select_files(tmp_path).mode == "gridignore"


def test_gridignore_inside_a_gitignored_folder_does_not_switch_modes(tmp_path: Path) -> None:
    write(tmp_path, {".gitignore": "vendor/\n", "vendor/.gridignore": "*\n", "a.log": ""})
    assert both(tmp_path) == [".gitignore", "a.log"]
    assert select_files(tmp_path).mode == "gitignore"


def test_dockerignore_counts_after_gitignore_in_each_folder(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".gitignore": "*.log\n",
            ".dockerignore": "secrets/\n!keep.log\n",
            "keep.log": "",
            "drop.log": "",
            "secrets/key": "",
            "sub/.dockerignore": "*.txt\n",
            "sub/a.txt": "",
            "sub/b.log": "",
            "c.txt": "",
        },
    )
    expected = [".dockerignore", ".gitignore", "c.txt", "keep.log", "sub/.dockerignore"]
    assert both(tmp_path, git_engine="python") == expected
    selection = select_files(tmp_path, use_git=True)
    assert selection.mode == "gitignore"
    assert selection.ignore_files == (".gitignore", ".dockerignore")


def test_git_metadata_is_always_left_out(tmp_path: Path) -> None:
    write(
        tmp_path, {".git/config": "", "a/.git": "gitdir: elsewhere\n", "a/b/.git/HEAD": "", "x": ""}
    )
    assert both(tmp_path) == ["x"]


def test_nested_repository_is_listed_file_by_file(tmp_path: Path) -> None:
    write(tmp_path, {".gitignore": "*.log\n", "lib/code.py": "", "lib/run.log": "", "top": ""})
    subprocess.run(["git", "init", "-q", str(tmp_path / "lib")], check=True)
    assert both(tmp_path, git_engine="python") == [".gitignore", "lib/code.py", "top"]


def test_symlinks_are_entries_and_never_descended(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root = tmp_path / "project"
    write(root, {"real/f": "", "ignore-rules": "f\n", ".gitignore": "linked/\nnote*/\n"})
    (root / "linked").symlink_to("real")
    (root / "notes").symlink_to("real/f")
    (root / "outside").symlink_to(tmp_path)
    (root / "real" / ".gitignore").symlink_to("../ignore-rules")
    os.mkfifo(root / "pipe")
    selected = both(root)
    assert selected == [
        ".gitignore",
        "ignore-rules",
        "linked",
        "notes",
        "outside",
        "real/.gitignore",
        "real/f",
    ]
    assert selected == git_oracle(root, home)


def test_global_excludes_and_git_environment_do_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "project"
    write(root, {"a.log": "", "tracked.py": "", "b": ""})
    env = isolated_env(tmp_path)
    subprocess.run(["git", "init", "-q", str(root)], env=env, check=True)
    (root / ".git" / "info" / "exclude").write_text("b\n")
    subprocess.run(["git", "add", "tracked.py"], cwd=root, env=env, check=True)
    (tmp_path / "global-ignore").write_text("*.log\n")
    (tmp_path / "gitconfig").write_text(f"[core]\n\texcludesFile = {tmp_path / 'global-ignore'}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_DIR", str(root / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(root / ".git" / "index"))
    monkeypatch.chdir(root / ".git")
    assert both(root) == ["a.log", "b", "tracked.py"]


def test_git_is_used_when_installed_and_python_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"a": ""})
    assert select_files(tmp_path).engine == "git"
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert select_files(tmp_path).engine == "python"
    with pytest.raises(GridctlError, match="git is not installed"):
        select_files(tmp_path, use_git=True)


@pytest.mark.parametrize(
    "make", [lambda p: None, lambda p: p.write_text("")], ids=["missing", "file"]
)
def test_root_that_is_not_a_readable_folder_is_a_usage_error(tmp_path: Path, make) -> None:
    make(tmp_path / "root")
    with pytest.raises(GridctlError, match="cannot read project directory"):
        select_files(tmp_path / "root")
