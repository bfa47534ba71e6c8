"""Test helper: prints a line, then exits with code 3 (an unexpected crash)."""

import sys
import time

print("about to fail", flush=True)
time.sleep(0.3)
sys.exit(3)
