"""Convert a llama.cpp GGUF (architecture ``llama``, BPE tokenizer) into an HF-style Llama directory.

The result (config.json, model.safetensors in float32, tokenizer.json, tokenizer_config.json with the chat
template, generation_config.json) loads in thunder, transformers and vLLM alike. Quantised tensors are
dequantised with the `gguf` package, and llama.cpp's Q/K row permutation (done for its RoPE kernel) is undone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from thunder.models.errors import UnsupportedModelError

__all__ = ["convert_gguf_to_hf", "unpermute_qk"]

_CONTROL_TOKEN = 3  # gguf TokenType.CONTROL
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# llama.cpp pre-tokenizer name -> HF pre-tokenizer pipeline.
_PRE_TOKENIZERS = {
    "smollm": lambda: pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    ),
    "gpt2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False),
    "default": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False),
}


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's ``permute`` of Q/K rows: ``[out, in]`` -> HF rotate-half row order."""
    out_dim = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(n_head, out_dim // n_head // 2, 2, *rest).swapaxes(1, 2).reshape(out_dim, *rest)


def _field(reader: GGUFReader, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    return f.contents() if f is not None else default


def _hf_config(reader: GGUFReader, has_output: bool) -> dict[str, Any]:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise UnsupportedModelError(f"GGUF architecture {arch!r} is not supported; thunder converts 'llama'")
    p = "llama."
    heads = int(_field(reader, p + "attention.head_count"))
    hidden = int(_field(reader, p + "embedding_length"))
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(_field(reader, p + "vocab_size", vocab)),
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, p + "feed_forward_length")),
        "num_hidden_layers": int(_field(reader, p + "block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, p + "attention.head_count_kv", heads)),
        "head_dim": int(_field(reader, p + "rope.dimension_count", hidden // heads)),
        "rms_norm_eps": float(_field(reader, p + "attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(_field(reader, p + "rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "max_position_embeddings": int(_field(reader, p + "context_length", 2048)),
        "tie_word_embeddings": not has_output,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id", 1)),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id", 2)),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id", 2)),
        "torch_dtype": "float32",
        "use_cache": True,
    }


def _hf_name(gguf_name: str) -> str | None:
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    m = re.match(r"^blk\.(\d+)\.(.+)$", gguf_name)
    if m is None:
        return None
    idx, rest = m.group(1), m.group(2)
    for src, dst in _LAYER_NAMES.items():
        if rest == src or rest.startswith(src + "."):
            return f"model.layers.{idx}.{dst}{rest[len(src) :]}"
    return None


def _tensors(reader: GGUFReader, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        name = _hf_name(t.name)
        if name is None:
            continue  # e.g. rope_freqs: recomputed from the config
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        expected = tuple(int(d) for d in reversed(t.shape.tolist()))  # GGUF stores dims reversed
        w = w.reshape(expected) if w.size == int(np.prod(expected)) else w
        if name.endswith("q_proj.weight"):
            w = unpermute_qk(w, cfg["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            w = unpermute_qk(w, cfg["num_key_value_heads"])
        out[name] = torch.from_numpy(np.require(w, requirements=["C", "W"]))
    return out


def _tokenizer(reader: GGUFReader) -> tuple[Tokenizer, dict[str, Any]]:
    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedModelError(
            f"GGUF tokenizer model {kind!r} is not supported; thunder rebuilds 'gpt2' BPE"
        )
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise UnsupportedModelError(
            f"GGUF pre-tokenizer {pre!r} is not supported; known: {sorted(_PRE_TOKENIZERS)}"
        )
    tokens: list[str] = _field(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = _PRE_TOKENIZERS[pre]()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [tokens[i] for i, kind_ in enumerate(types) if kind_ == _CONTROL_TOKEN]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])

    def name(key: str) -> str | None:
        idx = _field(reader, key)
        return tokens[int(idx)] if idx is not None else None

    named = {name(k) for k in ("bos", "eos", "unknown", "padding") for k in [f"tokenizer.ggml.{k}_token_id"]}
    tok_cfg = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "additional_special_tokens": [s for s in specials if s not in named],
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_field(reader, "llama.context_length", 2048)),
        "chat_template": _field(reader, "tokenizer.chat_template"),
    }
    return tok, tok_cfg


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path) -> None:
    """Write an HF-style directory for ``gguf_path`` into ``out_dir`` (which must exist and be empty)."""
    reader = GGUFReader(str(gguf_path))
    has_output = any(t.name == "output.weight" for t in reader.tensors)
    cfg = _hf_config(reader, has_output)
    tensors = _tensors(reader, cfg)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    tok, tok_cfg = _tokenizer(reader)
    tok.save(str(out_dir / "tokenizer.json"))
    gen_cfg = {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    for filename, payload in (
        ("config.json", cfg),
        ("tokenizer_config.json", tok_cfg),
        (
            "special_tokens_map.json",
            {k: tok_cfg[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")},
        ),
        ("generation_config.json", gen_cfg),
    ):
        (out_dir / filename).write_text(json.dumps(payload, indent=2) + "\n")
