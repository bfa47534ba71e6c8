"""Test helper: spawns `sleep 1000` (same process group), writes its pid to the file given
as `-p pidfile:=PATH`, then exits 0 on SIGTERM leaving the grandchild behind."""

import json
import signal
import subprocess
import sys
import time

pidfile = next(a.split(":=", 1)[1] for a in sys.argv if a.startswith("pidfile:="))
pidfile = json.loads(pidfile) if pidfile.startswith('"') else pidfile
child = subprocess.Popen(["sleep", "1000"])
with open(pidfile, "w") as fh:
    fh.write(str(child.pid))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"grandchild {child.pid}", flush=True)
while True:
    time.sleep(1)
