"""What every ``python -m dfdc_fast.<job>`` command line shares.

* Exit codes: 0 all inputs done; 1 some inputs failed (their statuses are written);
  2 usage or refused to start (the message says why); 3 stopped early (disk full, I/O
  error), with the work done kept: rerun the same command to resume; 130 interrupted
  (Ctrl-C), 143 terminated (SIGTERM): both stop cleanly, as resumable as a full disk (a
  stop still under way ``STOP_GRACE_S`` after the signal is forced: children killed).
* User errors print one line (``--debug`` prints the traceback and DEBUG logs).
* ``--limit N`` takes the first N videos (a quick try on a big dataset).
* Inputs and options come in any order (:class:`JobParser` parses them intermixed), and a
  bad argument is one line too, not a usage block.
* ``--help`` shows every option's default (:class:`DefaultsFormatter`).
* Log lines are routed through the progress bars, so bars are not broken by them.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import Callable, Iterator, Optional

from dfdc_fast.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STOPPED, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 3, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the job's main thread so it stops as cleanly as on Ctrl-C."""


#: A stop (Ctrl-C, SIGTERM) that has not ended this many seconds after the signal is forced:
#: the job's child processes are killed and it exits with the stop's code (resumable as a
#: kill is). A clean stop waits for the clips being encoded, a few seconds; one that hangs
#: (a helper that never answers) must still end.
STOP_GRACE_S = 15.0


class _StopWatch:
    """Turns SIGINT and SIGTERM into KeyboardInterrupt/Terminated in the main thread, and
    arms, at the first of them, the timer that forces a stop that has not ended in time."""

    def __init__(self, prog: str):
        self.prog, self.reported, self.timer = prog, False, None

    def on_sigint(self, signum, frame) -> None:
        self._arm(EXIT_INTERRUPTED)
        raise KeyboardInterrupt()

    def on_sigterm(self, signum, frame) -> None:
        self._arm(EXIT_TERMINATED)
        raise Terminated()

    def _arm(self, code: int) -> None:
        import threading

        if self.timer is not None:  # armed by the first signal
            return
        self.timer = threading.Timer(STOP_GRACE_S, self._force, args=(code,))
        self.timer.daemon = True  # it outlives the main thread while the interpreter waits for others
        self.timer.start()

    def settle(self) -> None:
        """The job's body has returned: a stop that left no thread behind has ended, and the
        timer goes (a caller that goes on, a notebook, must not be killed later). A thread
        still running would hold up the interpreter's exit: the timer then stays."""
        import threading

        if self.timer is None:
            return
        others = [t for t in threading.enumerate()
                  if t is not threading.current_thread() and t is not self.timer and not t.daemon and t.is_alive()]
        if not others:
            self.timer.cancel()

    def _force(self, code: int) -> None:
        import os

        from dfdc_fast.runtime import kill_children

        if not self.reported:
            print(f"{self.prog}: the stop did not end within {STOP_GRACE_S:.0f} s: stopped hard; rerun the same "
                  "command to resume", file=sys.stderr, flush=True)
        kill_children()
        os._exit(code)

#: Exceptions shown as one line: what a user can fix (bad values, missing files, a backend
#: not installed, a busy folder); anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
               ImportError)


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that shows every option's default: ``(default: X)`` is added to an option
    whose help does not already say it (flags read "default: off")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.option_strings == [] or action.help is argparse.SUPPRESS \
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if action.nargs == 0:  # a flag: it changes something when given
            return f"{text} (default: off)".strip()
        return f"{text} (default: %(default)s)".strip()


class JobParser(argparse.ArgumentParser):
    """The parser every job uses: arguments in any order, defaults in ``--help``, and a
    usage error as one line with exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):  # noqa: D102 - inputs, options and checkpoints in any order
        return self.parse_intermixed_args(args, namespace)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}  (--help lists the options)\n")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (``--limit -1`` would silently drop the last video)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser, limit: bool = True) -> None:
    """``--limit``, ``--debug``, ``--version`` (and ``--no-progress`` where the job has no own flag)."""
    from dfdc_fast import __version__

    g = parser.add_argument_group("common")
    if limit:
        g.add_argument("--limit", type=non_negative_int, default=None, metavar="N",
                       help="only the first N videos, for a quick try (default: all)")
    g.add_argument("--debug", action="store_true", help="tracebacks for errors, and DEBUG log lines")
    if not any(a.dest == "progress" for a in parser._actions):
        g.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar (default: a bar on a terminal)")
    g.add_argument("--version", action="version", version=f"dfdc_fast {__version__}")


def first(items: list, limit: Optional[int]) -> list:
    if limit is not None and limit < 0:
        raise ValueError(f"--limit must be >= 0, got {limit}")
    return items if limit is None else items[:limit]


@contextlib.contextmanager
def logging_through_bars(debug: bool = False) -> Iterator[None]:
    """INFO (or DEBUG) logs on stderr, written around tqdm bars instead of through them."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    with logging_redirect_tqdm():
        yield


def run(prog: str, body: Callable[[], int], debug: bool = False) -> int:
    """Run a job's body and turn its outcome into an exit code and, for errors, one line."""
    import signal

    from dfdc_fast.files import is_storage_error

    watch = _StopWatch(prog)
    try:
        previous = signal.signal(signal.SIGTERM, watch.on_sigterm), signal.signal(signal.SIGINT, watch.on_sigint)
    except ValueError:  # not the main thread: the signals keep their handlers
        previous = None
    try:
        with logging_through_bars(debug):
            return body()
    except OSError as exc:  # a read-only or full disk anywhere (making a folder, a lock) stops the run
        if debug or not is_storage_error(exc) and not isinstance(exc, USER_ERRORS):
            raise
        if is_storage_error(exc):
            print(f"{prog}: stopped: {exc}", file=sys.stderr)
            return EXIT_STOPPED
        print(f"{prog}: error: {str(exc).strip() or type(exc).__name__}  (--debug shows the traceback)", file=sys.stderr)
        return EXIT_USAGE
    except USER_ERRORS as exc:
        if debug:
            raise
        text = str(exc).strip() or type(exc).__name__
        print(f"{prog}: error: {text}  (--debug shows the traceback)", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        watch.reported = True
        print(f"{prog}: terminated (SIGTERM); rerun the same command to resume", file=sys.stderr, flush=True)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        watch.reported = True
        print(f"{prog}: interrupted; rerun the same command to resume", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        watch.settle()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])


__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_STOPPED", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "Terminated",
           "USER_ERRORS", "DefaultsFormatter", "JobParser", "non_negative_int", "add_common_arguments", "first",
           "logging_through_bars", "run"]
