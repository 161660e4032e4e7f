#!/usr/bin/env bash
# Create (once) a Python virtual environment with MXNet 1.9.1 for the reference-output fixtures.
#
# Usage: tests/mxnet_fixture/setup_venv.sh [DIR]
#   DIR defaults to ${IGC_MXNET_VENV:-$HOME/.cache/igc_keras/mxnet-venv}.
#   The base interpreter is $IGC_MXNET_BASE_PYTHON if set, else the first of python3.11,
#   python3.10, python3.9, python3.8, python3 that is a CPython 3.8-3.11 (numpy<1.24 has
#   no wheels for 3.12+, and building it from source is slow and fragile).
#
# igc_keras itself never imports mxnet: this venv only exists so that tests and tools can
# produce reference files (`mx.nd.save` checkpoints, MXNet forward passes) with the real
# framework. The script is idempotent: when DIR already holds a venv in which
# `import mxnet, numpy, PIL` works with mxnet 1.9.1, nothing is installed. Otherwise any
# half-built venv at DIR is removed and the venv is (re)built with
#     pip install mxnet==1.9.1 "numpy<1.24" pillow
# (mxnet 1.9.1 uses aliases such as numpy.bool that numpy 1.24 removed).
#
# On success the LAST line of stdout is the venv's python executable. On failure the exit
# status is non-zero and the pip / venv output is printed.
set -u -o pipefail

DIR="${1:-${IGC_MXNET_VENV:-$HOME/.cache/igc_keras/mxnet-venv}}"

pick_base_python() {
    if [ -n "${IGC_MXNET_BASE_PYTHON:-}" ]; then
        echo "$IGC_MXNET_BASE_PYTHON"
        return 0
    fi
    local cand
    for cand in python3.11 python3.10 python3.9 python3.8 python3; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c \
            'import sys; sys.exit(not ((3, 8) <= sys.version_info[:2] <= (3, 11)))' 2>/dev/null; then
            echo "$cand"
            return 0
        fi
    done
    echo python3  # let the venv / pip step report what is wrong
}
PY="$DIR/bin/python"

check_venv() {
    [ -x "$PY" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import mxnet, numpy, PIL
assert mxnet.__version__ == "1.9.1", mxnet.__version__
PYEOF
}

build_venv() {
    if check_venv; then
        return 0
    fi
    if [ -e "$DIR" ]; then
        # Only ever remove something that looks like a (broken) venv we made.
        if [ -f "$DIR/pyvenv.cfg" ] || [ -z "$(ls -A "$DIR" 2>/dev/null)" ]; then
            echo "setup_venv: removing unusable venv at $DIR" >&2
            rm -rf "$DIR"
        else
            echo "setup_venv: $DIR exists and is not a venv; refusing to touch it" >&2
            return 2
        fi
    fi
    mkdir -p "$(dirname "$DIR")"
    local log
    log="$(mktemp "${TMPDIR:-/tmp}/igc_mxnet_venv.XXXXXX.log")"
    local base_py
    base_py="$(pick_base_python)"
    echo "setup_venv: creating $DIR with $base_py (log: $log)" >&2
    local -a pip_cmd=("$PY" -m pip)
    if ! "$base_py" -m venv "$DIR" >"$log" 2>&1; then
        # Debian/Ubuntu without python3-venv: ensurepip is missing. Make a venv without
        # pip and install into it with the base interpreter's pip (pip >= 22.3).
        echo "setup_venv: '$base_py -m venv' failed; retrying with --without-pip" >>"$log"
        rm -rf "$DIR"
        if "$base_py" -m venv --without-pip "$DIR" >>"$log" 2>&1 \
                && "$base_py" -m pip --version >>"$log" 2>&1; then
            pip_cmd=("$base_py" -m pip --python "$PY")
        else
            cat "$log"
            echo "setup_venv: could not create a venv at $DIR with $base_py" >&2
            return 1
        fi
    fi
    if ! "${pip_cmd[@]}" install --disable-pip-version-check --no-input \
            "mxnet==1.9.1" "numpy<1.24" pillow >>"$log" 2>&1; then
        cat "$log"
        echo "setup_venv: pip install failed (venv left at $DIR will be rebuilt next time)" >&2
        return 1
    fi
    if ! "$PY" -c 'import mxnet, numpy, PIL; print("mxnet", mxnet.__version__, "numpy", numpy.__version__)' >>"$log" 2>&1; then
        cat "$log"
        echo "setup_venv: mxnet was installed but does not import" >&2
        return 1
    fi
    tail -n 1 "$log" >&2
    rm -f "$log"
}

mkdir -p "$(dirname "$DIR")"
LOCK="$DIR.lock"
if command -v flock >/dev/null 2>&1; then
    # Serialise concurrent callers (e.g. parallel test workers) on one machine.
    exec 9>"$LOCK"
    flock 9
fi
build_venv || exit $?
echo "$PY"
