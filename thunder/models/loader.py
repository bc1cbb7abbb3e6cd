"""Load HF safetensors weights into `LlamaForCausalLM`, fusing q/k/v and gate/up on the way."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors import safe_open

from thunder.models.config import ModelConfig
from thunder.models.errors import ModelNotFoundError, UnsupportedModelError
from thunder.models.llama import LlamaDecoderLayer, LlamaForCausalLM

__all__ = ["build_model", "load_weights"]

_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# HF sub-name -> (our sub-module, fused row block index or None).
_LAYER_MAP = {
    "input_layernorm.weight": ("input_layernorm.weight", None),
    "post_attention_layernorm.weight": ("post_attention_layernorm.weight", None),
    "self_attn.q_proj": ("qkv_proj", 0),
    "self_attn.k_proj": ("qkv_proj", 1),
    "self_attn.v_proj": ("qkv_proj", 2),
    "self_attn.o_proj": ("o_proj", None),
    "mlp.gate_proj": ("gate_up_proj", 0),
    "mlp.up_proj": ("gate_up_proj", 1),
    "mlp.down_proj": ("down_proj", None),
}


def _target(model: LlamaForCausalLM, name: str) -> tuple[torch.Tensor, slice | None] | None:
    """Where HF tensor ``name`` goes in ``model`` (param and row slice), or None when this stage skips it."""
    cfg = model.config
    if name == "model.embed_tokens.weight":
        if model.embed_tokens is not None:
            return model.embed_tokens.weight, None
        if model.lm_head is not None and cfg.tie_word_embeddings:
            return model.lm_head.weight, None
        return None
    if name == "model.norm.weight":
        return (model.norm.weight, None) if model.norm is not None else None
    if name == "lm_head.weight":
        if model.lm_head is None or cfg.tie_word_embeddings:
            return None
        return model.lm_head.weight, None
    match = _LAYER.match(name)
    if match is None:
        return None
    start, end = model.layer_range
    idx, rest = int(match.group(1)), match.group(2)
    if not start <= idx < end:
        return None
    layer = model.layers[idx - start]
    for prefix, (sub, block) in _LAYER_MAP.items():
        if rest == prefix or rest.startswith(prefix + "."):
            suffix = rest[len(prefix) :]
            param = layer.get_parameter(sub + suffix) if suffix else layer.get_parameter(sub)
            if block is None:
                return param, None
            sizes = _fused_sizes(cfg, sub)
            lo = sum(sizes[:block])
            return param, slice(lo, lo + sizes[block])
    return None


def _fused_sizes(cfg: ModelConfig, sub: str) -> list[int]:
    if sub == "qkv_proj":
        return [cfg.q_size, cfg.kv_size, cfg.kv_size]
    return [cfg.intermediate_size, cfg.intermediate_size]


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        if list(model_dir.glob("*.bin")) or list(model_dir.glob("*.pt")):
            raise UnsupportedModelError(
                f"{model_dir}: only *.safetensors weights are supported (found PyTorch .bin/.pt); "
                "convert with transformers' save_pretrained(safe_serialization=True)"
            )
        raise ModelNotFoundError(f"{model_dir}: no *.safetensors weight files found")
    return files


@torch.inference_mode()
def load_weights(model: LlamaForCausalLM, model_dir: Path) -> None:
    """Copy every tensor this stage needs from ``model_dir/*.safetensors``; error if any is missing."""
    filled: set[tuple[int, int | None]] = set()
    for path in _weight_files(Path(model_dir)):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                target = _target(model, name)
                if target is None:
                    continue
                param, rows = target
                tensor = f.get_tensor(name)
                dest = param if rows is None else param[rows]
                if dest.shape != tensor.shape:
                    raise UnsupportedModelError(
                        f"{path.name}: {name} has shape {tuple(tensor.shape)}, expected {tuple(dest.shape)}"
                    )
                dest.copy_(tensor)
                filled.add((id(param), rows.start if rows else None))
    expected: set[tuple[int, int | None]] = set()
    for param in model.parameters():
        blocks = _blocks_of(model, param)
        expected.update((id(param), b) for b in blocks)
    missing = expected - filled
    if missing:
        names = {id(p): n for n, p in model.named_parameters()}
        raise UnsupportedModelError(
            f"{model_dir}: weights missing for {sorted({names[i] for i, _ in missing})[:5]} "
            f"({len(missing)} tensors); is this a complete {model.config.architecture} checkpoint?"
        )


def _blocks_of(model: LlamaForCausalLM, param: torch.Tensor) -> list[int | None]:
    for layer in model.layers:
        assert isinstance(layer, LlamaDecoderLayer)
        if param is layer.qkv_proj.weight or param is layer.qkv_proj.bias:
            return [0, model.config.q_size, model.config.q_size + model.config.kv_size]
        if param is layer.gate_up_proj.weight or param is layer.gate_up_proj.bias:
            return [0, model.config.intermediate_size]
    return [None]


def build_model(
    model_dir: Path,
    *,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    layer_range: tuple[int, int] | None = None,
) -> LlamaForCausalLM:
    """Config + weights from an HF directory -> a ready `LlamaForCausalLM` in eval mode."""
    cfg = ModelConfig.from_dir(Path(model_dir))
    model = LlamaForCausalLM(cfg, dtype=dtype, device=device, layer_range=layer_range)
    load_weights(model, Path(model_dir))
    model.prepack()
    return model.eval()
