"""The install scripts the Makefile runs: scripts/step.sh (announce a long step, show progress,
keep its log, fail loudly), the llama.cpp wheel cache's key and scripts/llama-install.sh's
cache, on a stand-in pip (nothing is built here)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
VERSION = re.search(r'"llama-cpp-python\[server\]==([^"]+)"', (ROOT / "pyproject.toml").read_text())

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the install scripts are for Linux"),
    pytest.mark.slow,  # each runs the shell scripts, seconds apiece
]


def step(
    tmp_path: Path, *args: str, interval: int = 1, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEP_INTERVAL": str(interval)}
    return subprocess.run(
        ["bash", str(SCRIPTS / "step.sh"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_a_step_announces_itself_shows_progress_and_keeps_its_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "build.log"
    command = "for i in 1 2 3; do echo compiling part $i; sleep 1; done"
    done = step(tmp_path, "Building a thing", "about 3 s", str(log), "--", "sh", "-c", command)
    assert done.returncode == 0, done.stderr
    assert "==> Building a thing (about 3 s)" in done.stdout
    assert f"full log: {log}" in done.stdout
    # A progress line with the elapsed time and the log's last line, while it runs.
    assert re.search(r"\.\.\. 0 min 0\d s so far: compiling part \d", done.stdout)
    assert "done in 0 min" in done.stdout
    # The command's output goes to the log, not to the terminal.
    assert log.read_text().splitlines() == [f"compiling part {i}" for i in (1, 2, 3)]
    # (The progress line may quote it after "so far: ".)
    assert "compiling part 1" not in done.stdout.splitlines()


def test_the_progress_line_shows_the_last_redraw_of_a_carriage_return_line(
    tmp_path: Path,
) -> None:
    log = tmp_path / "build.log"
    command = r"printf 'Downloading 10%%\rDownloading 90%%\r\n\n'; sleep 3"
    done = step(tmp_path, "Downloading", "2 s", str(log), "--", "sh", "-c", command)
    assert done.returncode == 0
    assert "so far: Downloading 90%" in done.stdout


def test_a_failing_step_fails_with_the_log_s_last_lines_and_what_to_do(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "build.log"
    command = "seq 1 30; echo 'error: no compiler' >&2; exit 3"
    hint = "retry with `make install-llama`"
    failed = step(
        tmp_path, "--hint", hint, "Building", "a moment", str(log), "--", "sh", "-c", command
    )
    assert failed.returncode == 3
    assert "==> Building (a moment)" in failed.stdout
    shown = [line.removeprefix("    | ") for line in failed.stderr.splitlines() if "| " in line]
    assert shown == [str(i) for i in range(12, 31)] + ["error: no compiler"]
    assert "FAILED after 0 min" in failed.stderr
    assert f"full log: {log}" in failed.stderr
    assert f"next: {hint}" in failed.stderr
    assert log.read_text().splitlines()[0] == "1"


def test_a_step_without_its_command_is_a_usage_error(tmp_path: Path) -> None:
    done = step(tmp_path, "Building", "a moment", "build.log", "true")
    assert done.returncode == 2
    assert "usage:" in done.stderr


def test_stopping_a_step_stops_its_command_too(tmp_path: Path) -> None:
    """make's Ctrl-C: the build must not keep running in the background."""
    pid_file = tmp_path / "child.pid"
    runner = subprocess.Popen(
        [
            "bash",
            str(SCRIPTS / "step.sh"),
            "Building",
            "forever",
            str(tmp_path / "build.log"),
            "--",
            "sh",
            "-c",
            f"echo $$ > {pid_file}; exec sleep 60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=10) == 130
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists():
        assert time.monotonic() < deadline, "the step's command is still running"
        time.sleep(0.05)


def key(version: str, cmake_args: str) -> str:
    return subprocess.run(
        ["sh", str(SCRIPTS / "llama-wheel-key.sh"), version, cmake_args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_wheel_cache_key_is_the_version_and_the_build_flags() -> None:
    avx2 = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON"
    assert key("0.3.36", avx2) == key("0.3.36", avx2)
    assert re.fullmatch(r"0\.3\.36-[0-9a-f]{16}", key("0.3.36", avx2))
    # Other CPU flags, or another version: another folder, never the same wheel.
    assert key("0.3.36", avx2) != key("0.3.36", "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=OFF")
    assert key("0.3.37", avx2) != key("0.3.36", avx2)
    assert key("0.3.37", avx2).startswith("0.3.37-")


def test_the_key_of_this_machine_s_flags_is_stable() -> None:
    flags = subprocess.run(
        ["sh", str(SCRIPTS / "llama-cmake-args.sh")], capture_output=True, text=True, check=True
    ).stdout
    assert "-DGGML_NATIVE=OFF" in flags
    assert key("0.3.36", flags) == key("0.3.36", flags)


# A stand-in for the venv's pip: `pip wheel ... -w DIR` "builds" (or, with FAKE_PIP_FAIL,
# writes half a wheel and fails); `pip install` records what it was given.
FAKE_PIP = """#!/bin/sh
echo "pip $*" >>"$FAKE_PIP_CALLS"
if [ "$1" = wheel ]; then
  while [ $# -gt 0 ]; do [ "$1" = -w ] && out=$2; shift; done
  echo "[1/2] Building C object ggml.c.o"
  wheel="$out/llama_cpp_python-$FAKE_VERSION-py3-none-linux_x86_64.whl"
  if [ -n "${FAKE_PIP_FAIL:-}" ]; then echo half >"$wheel"; echo "error: cc failed"; exit 1; fi
  echo "CMAKE_ARGS=$CMAKE_ARGS" >"$wheel"
fi
"""


@pytest.fixture
def fake_venv(tmp_path: Path) -> Path:
    assert VERSION is not None
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    pip = bin_dir / "pip"
    pip.write_text(FAKE_PIP)
    pip.chmod(0o755)
    return bin_dir


def llama_install(bin_dir: Path, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    assert VERSION is not None
    return subprocess.run(
        ["sh", str(SCRIPTS / "llama-install.sh"), str(bin_dir)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "FAKE_PIP_CALLS": str(tmp_path / "calls"),
            "FAKE_VERSION": VERSION.group(1),
            "STEP_INTERVAL": "30",
            **env,
        },
        timeout=60,
        check=False,
    )


def test_llama_install_builds_the_wheel_once_and_then_reuses_it(
    fake_venv: Path, tmp_path: Path
) -> None:
    assert VERSION is not None
    first = llama_install(fake_venv, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "==> Building llama.cpp" in first.stdout
    wheels = list((tmp_path / "cache" / "all-in-one-bot" / "wheels").glob("*/*.whl"))
    assert len(wheels) == 1
    assert wheels[0].parent.name.startswith(VERSION.group(1) + "-")
    assert "CMAKE_ARGS=-DGGML_NATIVE=OFF" in wheels[0].read_text()
    assert (wheels[0].parent / "cmake-args.txt").exists()
    assert "[1/2] Building C object" in (tmp_path / "venv" / "logs" / "llama-build.log").read_text()

    second = llama_install(fake_venv, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "using the cached build" in second.stdout
    assert "==> Building llama.cpp" not in second.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [call.split()[1] for call in calls] == ["wheel", "install", "install"]
    # The cached wheel, and the rest of the extra with the project still editable.
    assert calls[-1] == f"pip install {wheels[0]} -e .[llama]"


def test_a_failed_build_leaves_no_wheel_behind(fake_venv: Path, tmp_path: Path) -> None:
    failed = llama_install(fake_venv, tmp_path, FAKE_PIP_FAIL="1")
    assert failed.returncode != 0
    assert "error: cc failed" in failed.stderr
    assert "make install-llama" in failed.stderr
    cache = tmp_path / "cache" / "all-in-one-bot" / "wheels"
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [call.split()[1] for call in calls] == ["wheel"]


def test_the_progress_line_skips_pip_s_warnings(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    command = "echo 'Collecting torch'; echo 'WARNING: Location x is ignored'; sleep 3"
    done = step(tmp_path, "Installing", "2 s", str(log), "--", "sh", "-c", command)
    assert done.returncode == 0
    assert "so far: Collecting torch" in done.stdout


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            "  [18/193] /usr/bin/g++ -DGGML_AVX -O3 -o ggml/ops.cpp.o -c /tmp/x/src/ops.cpp",
            "[18/193] compiling ops.cpp",
        ),
        (
            "  [190/193] : && /usr/bin/g++ -fPIC -shared -o bin/libllama.so ggml.o && :",
            "[190/193] linking libllama.so",
        ),
    ],
)
def test_the_progress_line_condenses_the_build_s_compiler_calls(
    tmp_path: Path, line: str, shown: str
) -> None:
    log = tmp_path / "build.log"
    done = step(tmp_path, "Building", "2 s", str(log), "--", "sh", "-c", f"echo '{line}'; sleep 3")
    assert done.returncode == 0
    assert f"so far: {shown}\n" in done.stdout


def test_what_a_killed_build_left_is_ignored_and_later_removed(
    fake_venv: Path, tmp_path: Path
) -> None:
    assert VERSION is not None
    flags = subprocess.run(
        ["sh", str(SCRIPTS / "llama-cmake-args.sh")], capture_output=True, text=True, check=True
    ).stdout.rstrip("\n")
    folder = tmp_path / "cache" / "all-in-one-bot" / "wheels" / key(VERSION.group(1), flags)
    half = f"llama_cpp_python-{VERSION.group(1)}-py3-none-linux_x86_64.whl"
    old, recent = folder / ".building.old", folder / ".building.recent"
    for leftover in (old, recent):
        leftover.mkdir(parents=True)
        (leftover / half).write_text("half")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))

    done = llama_install(fake_venv, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "==> Building llama.cpp" in done.stdout  # the half wheels were not taken
    assert "CMAKE_ARGS=" in (folder / half).read_text()
    assert not old.exists()
    assert recent.exists()  # perhaps another clone's build, still running


def test_the_progress_line_prefers_the_build_s_step_over_compiler_warnings(
    tmp_path: Path,
) -> None:
    log = tmp_path / "build.log"
    command = (
        "echo '[40/193] /usr/bin/cc -o a.o -c src/ggml.c'; "
        "echo 'ggml.c:10:3: warning: unused variable'; echo '   |   ^~~'; sleep 3"
    )
    done = step(tmp_path, "Building", "2 s", str(log), "--", "sh", "-c", command)
    assert done.returncode == 0
    assert "so far: [40/193] compiling ggml.c\n" in done.stdout
