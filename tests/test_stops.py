"""Stops that cannot hang and kills that leave nothing half-written: a Ctrl-C or SIGTERM whose
clean stop does not end is forced within ``cli.STOP_GRACE_S`` (children killed, the stop's
exit code); a helper process whose job died removes the temporaries it was writing."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dfdc_fast import files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a job whose clean stop hangs (a helper that never answers), with a child process of its own
HANGING_JOB = textwrap.dedent("""
    import subprocess, sys, time
    from dfdc_fast import cli
    cli.STOP_GRACE_S = 2.0

    def body():
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        try:
            print(child.pid, flush=True)  # inside: the signal the test sends then always meets the finally
            time.sleep(600)
        finally:
            time.sleep(600)  # the stop's clean-up never ends
    sys.exit(cli.run("job", body))
""")


@pytest.mark.parametrize("how,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_that_hangs_is_forced_and_takes_its_children(how, code):
    proc = subprocess.Popen([sys.executable, "-c", HANGING_JOB], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    child = None
    try:
        child = int(proc.stdout.readline())
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, how))
        rc = proc.wait(30)
        took = time.monotonic() - t0
        deadline = time.monotonic() + 3  # SIGKILL is sent before the job exits; dying takes a moment
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = _alive(child)
    finally:
        proc.kill()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)  # never left holding the test's pipes
    err = proc.communicate(timeout=30)[1]
    assert not alive, "the job's child outlived it"
    assert rc == code and 1.5 < took < 15, (rc, took, err)
    assert [line for line in err.splitlines() if line.startswith("job:")] == [
        "job: the stop did not end within 2 s: stopped hard; rerun the same command to resume"], err


def _alive(pid: int) -> bool:
    """Running (a killed process may stay a zombie where nothing reaps orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_clean_stop_disarms_the_timer():
    """A stop that ends in time returns its code and prints its own line; the caller goes on
    (a notebook's kernel must not be killed 2 s later)."""
    script = textwrap.dedent("""
        import os, signal, sys, time
        from dfdc_fast import cli
        cli.STOP_GRACE_S = 1.0

        def body():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        print(cli.run("job", body), flush=True)
        time.sleep(2.5)
        print("still here", flush=True)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.split() == ["130", "still", "here"], (r.stdout, r.stderr)
    assert "interrupted" in r.stderr and "stopped hard" not in r.stderr


def test_an_orphaned_helper_removes_what_it_was_writing(tmp_path):
    path = str(tmp_path / "clip.mp4")
    seen = []

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half a clip")
        seen.append(tmp)
        assert files.remove_in_flight() == 1  # what the parent watch does before the helper exits

    with pytest.raises(OSError):
        files.atomic_write(path, write)
    assert not os.path.exists(seen[0]) and not os.path.exists(path) and os.listdir(tmp_path) == []
    assert files.remove_in_flight() == 0  # nothing is left registered
