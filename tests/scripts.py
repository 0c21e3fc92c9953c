"""Scripts that tests run as experiments, shared by the local and the AWS tests."""

DATASTORE_READER = """\
import json, os, sys
mount = os.environ["GRIDCTL_DATASTORE_DIR"]
seen = {}
for folder, _dirs, files in os.walk(mount):
    for name in files:
        path = os.path.join(folder, name)
        seen[os.path.relpath(path, mount)] = open(path).read()
first = sorted(seen)[0]
try:
    open(os.path.join(mount, first), "w").write("overwritten")
    wrote = "overwrote a file"
except OSError:
    try:
        open(os.path.join(mount, "new.txt"), "w").write("new")
        wrote = "created a file"
    except OSError:
        wrote = "refused"
os.makedirs("out", exist_ok=True)
json.dump({"mount": mount, "files": seen, "write": wrote,
           "scratch": os.environ["GRIDCTL_SCRATCH_DIR"]}, open("out/seen.json", "w"))
"""
"""Records what the mounted datastore holds and whether writing into it is refused."""
