"""A stand-in for the docker CLI and its daemon, which test machines lack: an executable
``docker`` that records each call (argv, environment, stdin) and acts as the real one
would for what gridctl asks of it.

``run`` starts the command in a session of its own, as a container is no child of the CLI:
a signal to the CLI never reaches it, and the CLI dies of SIGTERM as the real one does
with ``--sig-proxy=false`` (the container goes on); only ``docker kill NAME`` reaches it.
The command sees only the variables named by ``-e NAME``, read from the CLI's environment,
and runs in ``-w``'s directory. ``pull`` fails for an image whose name has ``missing``; while
a file ``hold`` is in the state folder, ``run`` creates no container (a slow daemon).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = """#!{python}
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

STATE = Path({state!r})
VALUED = {{"--name", "--network", "--ipc", "--gpus", "--cpus", "--cpuset-cpus", "--memory",
          "--memory-swap", "--user", "-w", "-v", "-e", "--pull", "--signal", "--username",
          "--format"}}


def record(argv, stdin=None):
    entry = {{"argv": argv, "env": dict(os.environ), "stdin": stdin}}
    with open(STATE / "calls.jsonl", "a") as calls:
        calls.write(json.dumps(entry) + "\\n")


def parse(args):
    options, rest = [], list(args)
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        options.append((flag, rest.pop(0) if flag in VALUED else None))
    return options, rest


def main(argv):
    images = STATE / "images"
    containers = STATE / "containers"
    images.mkdir(exist_ok=True)
    containers.mkdir(exist_ok=True)
    command = argv[0]
    if command == "login":
        record(argv, sys.stdin.read())
        print("Login Succeeded")
        return 0
    record(argv)
    if command == "image":
        image = argv[-1]
        if (images / image.replace("/", "_")).exists():
            print("sha256:fake")
            return 0
        print(f"Error: No such image: {{image}}", file=sys.stderr)
        return 1
    if command == "pull":
        image = argv[1]
        if "missing" in image:
            print(f"Error response from daemon: manifest for {{image}} not found", file=sys.stderr)
            return 1
        print(f"{{image}}: Pulling from fake")
        (images / image.replace("/", "_")).touch()
        print(f"Status: Downloaded newer image for {{image}}")
        return 0
    if command == "kill":
        options, (name,) = parse(argv[1:])
        sig = dict(options).get("--signal", "SIGKILL")
        pid_file = containers / name
        if not pid_file.exists():
            print(f"Error response from daemon: No such container: {{name}}", file=sys.stderr)
            return 1
        os.killpg(int(pid_file.read_text()), signal.Signals[sig])
        return 0
    if command == "run":
        options, rest = parse(argv[1:])
        image, command = rest[0], rest[1:]
        found = dict(options)
        names = [value for flag, value in options if flag == "-e"]
        env = {{name: os.environ[name] for name in names if name in os.environ}}
        env["PATH"] = os.environ.get("PATH", os.defpath)
        if command[0] == "python" and shutil.which("python", path=env["PATH"]) is None:
            command[0] = "python3"
        while (STATE / "hold").exists():  # a daemon slow to create the container
            time.sleep(0.02)
        proc = subprocess.Popen(command, cwd=found["-w"], env=env, start_new_session=True)
        pid_file = containers / found["--name"]
        pid_file.write_text(str(proc.pid))
        code = proc.wait()
        pid_file.unlink()
        return 128 - code if code < 0 else code
    return 0


sys.exit(main(sys.argv[1:]))
"""


@dataclass(frozen=True)
class FakeDocker:
    bin_dir: Path
    """Put first on PATH: it holds ``docker``."""
    state: Path

    def calls(self, command: str | None = None) -> list[dict]:
        """Every recorded call (``command``'s alone when given), in order."""
        path = self.state / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        found = [json.loads(line) for line in lines]
        return [c for c in found if command is None or c["argv"][0] == command]

    def running(self) -> list[str]:
        """The names of the containers running now."""
        folder = self.state / "containers"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def install(root: Path) -> FakeDocker:
    bin_dir, state = root / "bin", root / "state"
    bin_dir.mkdir(parents=True)
    state.mkdir(parents=True)
    docker = bin_dir / "docker"
    docker.write_text(_SCRIPT.format(python=sys.executable, state=str(state)))
    docker.chmod(0o755)
    return FakeDocker(bin_dir, state)
