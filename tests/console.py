"""Runs the installed ``igc-keras`` console script in a subprocess, as a
user's shell does (no TF_CPP_MIN_LOG_LEVEL unless a test sets one), and
recognises TensorFlow's C++ log lines and tracebacks in what it prints."""

import os
import re
import shutil
import subprocess
import sys

#: TensorFlow / absl C++ log lines (``I0000 00:00:...``, ``W0000``,
#: ``E0000``) and the notices printed before absl is initialised.
TF_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d|absl::InitializeLog|"
                         r"cpu_feature_guard|oneDNN custom operations",
                         re.MULTILINE)


def script():
    """The console script pip installed beside this Python."""
    beside = os.path.join(os.path.dirname(sys.executable), "igc-keras")
    return beside if os.path.exists(beside) else shutil.which("igc-keras")


def user_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "IGC_KERAS_DEBUG")}
    env.update(extra)
    return env


def igc_keras(*args, env=None, timeout=600, python_flags=()):
    """``igc-keras *args``; the CompletedProcess (text)."""
    return subprocess.run([sys.executable, *python_flags, script(), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env or user_env())
