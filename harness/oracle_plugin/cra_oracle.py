"""cra's oracle plugin: tells the harness each test phase's outcome as it happens.

Loaded with ``-p cra_oracle`` (its folder on ``PYTHONPATH``), so pytest imports it while
parsing the command line, before any conftest, plugin entry point or project module. It
takes the file descriptor named by ``CRA_ORACLE_FD`` (a pipe the harness opened, see
``harness.sandbox``'s channel), removes the variable and makes the descriptor
non-inheritable, so test subprocesses never get it. Each event is one JSON line:

``start``   pytest configured, with this plugin in it;
``raw``     a phase's outcome as the phase itself ended (``call.excinfo``, or the failure a
            unittest case recorded), taken before any report hook ran;
``report``  the report pytest logged for that phase (what JUnit and ``-rA`` show);
``collect`` a collector that failed or skipped (an import error in a test module);
``finish``  the session's exit status.

The harness (``harness.testrun.read_stream``) matches ``raw`` against ``report``: a hook
that rewrites a failing phase into a pass leaves them disagreeing. Once written, a line is
out of the process: code that runs later (an ``atexit`` forger) cannot take it back.

Runs on the project's own interpreter and pytest, whatever their age: plain Python 3,
no annotations, only long-standing hooks; nothing here imports cra.
"""

import json
import os

import pytest

ENV = "CRA_ORACLE_FD"
_state = {"fd": None, "started": False}


def _take_fd():
    raw = os.environ.pop(ENV, None)
    if raw is None:
        return
    try:
        fd = int(raw)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return
    _state["fd"] = fd


def _emit(event):
    fd = _state["fd"]
    if fd is None:
        return
    data = (json.dumps(event, sort_keys=True) + "\n").encode("utf-8", "replace")
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the harness is gone; the run's result no longer matters
        _state["fd"] = None


_take_fd()  # at import: nothing of the project has run yet


def _exception_outcome(exc_type):
    skip = getattr(pytest.skip, "Exception", None)
    xfail = getattr(pytest.xfail, "Exception", None)
    if xfail is not None and isinstance(exc_type, type) and issubclass(exc_type, xfail):
        return "xfailed"
    if skip is not None and isinstance(exc_type, type) and issubclass(exc_type, skip):
        return "skipped"
    return "failed"


def _raw_outcome(item, call):
    if call.excinfo is not None:
        return _exception_outcome(call.excinfo.type)
    # A unittest case records its failure on the item; pytest's unittest plugin moves it
    # into the call later, inside the report hook.
    pending = getattr(item, "_excinfo", None)
    if pending:
        first = pending[0]
        return _exception_outcome(getattr(first, "type", None))
    return "passed"


def _has_xfail(item):
    closest = getattr(item, "get_closest_marker", None)  # pytest >= 3.6
    if closest is not None:
        return closest("xfail") is not None
    return getattr(item, "get_marker", lambda name: None)("xfail") is not None


def pytest_configure(config):
    if not _state["started"]:
        _state["started"] = True
        _emit({"event": "start", "pid": os.getpid(), "pytest": pytest.__version__})


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    _emit({
        "event": "raw", "node": item.nodeid, "when": call.when,
        "outcome": _raw_outcome(item, call),
        "xfail_marker": _has_xfail(item),
    })
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    _emit({
        "event": "report", "node": report.nodeid, "when": report.when,
        "outcome": report.outcome, "wasxfail": hasattr(report, "wasxfail"),
        "sub": "SubTest" in type(report).__name__,
    })


@pytest.hookimpl(tryfirst=True)
def pytest_collectreport(report):
    if report.outcome in ("failed", "skipped"):
        _emit({"event": "collect", "node": report.nodeid, "outcome": report.outcome})


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _emit({"event": "finish", "exitstatus": int(exitstatus)})
