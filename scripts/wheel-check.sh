#!/usr/bin/env bash
# What a plain `pip install` of the bot ships works on its own: the wheel is built from this
# checkout, installed into a fresh venv outside it (so nothing is imported from the checkout),
# and that install runs `python -m bot doctor` and answers console messages with the packaged
# default model. A neutral message must be shown neutral and a felt one must not: that is
# only possible when the model's label head and its nothing-felt readout (package data) were
# shipped and loaded.
# Usage: bash scripts/wheel-check.sh [python]   (needs the dependencies in pip's cache or PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-$(command -v python3.11 || command -v python3)}
torch_version=$(sed -n 's/^TORCH_VERSION := //p' Makefile)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "==> building the wheel"
"$python" -m pip wheel --quiet --no-deps -w "$work/dist" .
wheel=$(ls "$work"/dist/all_in_one_bot-*.whl)
# What must be inside: every package, the label heads with their readouts, no benchmarks/tests.
"$python" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = {name.split("/")[0] for name in names if "/" in name and ".dist-info" not in name}
assert tops == {"adapters", "bot", "engine", "storage"}, f"unexpected top-level folders: {tops}"
heads = [n for n in names if n.startswith("engine/model/label_heads/")]
stems = {n.rsplit("/", 1)[1].removesuffix(".json") for n in heads if n.endswith(".json")}
assert stems, "no label heads in the wheel"
for stem in stems:
    for suffix in (".json", ".felt.npz"):
        assert f"engine/model/label_heads/{stem}{suffix}" in names, f"{stem}{suffix} missing"
print(f"    {len(names)} files; label heads for {sorted(stems)}")
EOF

echo "==> installing it into a fresh venv"
"$python" -m venv "$work/venv"
bin=$work/venv/bin
"$bin/pip" install --quiet "torch==$torch_version"
"$bin/pip" install --quiet "$wheel"
# The llama.cpp backend from the wheel `make install-llama` built and cached, if any.
llama=$(ls "${XDG_CACHE_HOME:-$HOME/.cache}"/all-in-one-bot/wheels/*/llama_cpp_python-*.whl \
  2>/dev/null | head -n 1 || true)
if [ -n "$llama" ]; then "$bin/pip" install --quiet "$llama"; fi

# From an empty folder with no .env, so only the installed package and its defaults count.
cd "$work"
echo "==> python -m bot doctor (installed wheel)"
env -u MODEL -u BACKEND "$bin/python" -m bot doctor

echo "==> two console messages (installed wheel, default model)"
printf '%s\n' "The meeting is at 3 pm in room 204." "I passed my driving test today, so happy!" |
  env -u MODEL -u BACKEND \
    "$bin/python" -m bot chat --jsonl --user wheel-check >"$work/answers.jsonl"
"$bin/python" - "$work/answers.jsonl" <<'EOF'
import json, sys
answers = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
assert len(answers) == 2 and all(a.get("reply") for a in answers), answers
plain, felt = answers
assert plain["neutral"] is True, f"a plain fact was not shown neutral (no readout?): {plain}"
assert felt["neutral"] is False and felt["sentiment"] == "positive", felt
for answer in answers:
    print(f"    {answer['sentiment']:8} neutral={answer['neutral']!s:5} {answer['reply'][:70]!r}")
EOF
echo "==> the installed wheel works on its own"
