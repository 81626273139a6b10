"""Test helpers for interrupts that do not depend on the signal disposition the test run inherited.

A process started with SIGINT ignored (``cmd &`` in a script, nohup, some CI launchers) has no Python SIGINT
handler: ``_thread.interrupt_main`` and ``os.kill(pid, SIGINT)`` then do nothing, and a test waiting for the
interrupt would wait forever. ``python_sigint()`` installs Python's default handler for the duration of a test
and restores whatever was there before."""
import contextlib
import signal


@contextlib.contextmanager
def python_sigint():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
