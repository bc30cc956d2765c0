"""A `marlin serve` process on a free port for the Python tests (its log goes to a file)."""
import re
import subprocess
import time

import pytest


class ServeProcess:
    def __init__(self, marlin_bin, log_path, *args):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([str(marlin_bin), "serve", "--port", "0", "-t", "2", *args],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", log_path.read_text())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"marlin serve did not start: {log_path.read_text()}")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
