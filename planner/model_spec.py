"""`ModelSpec`: the architecture numbers the cost model needs (decoder-only transformer, llama/OPT family)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import SpecError
from planner.gpus import data_dir, read_toml


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """Architecture of a decoder-only transformer. Sizes are per layer unless a name says otherwise."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context: int
    tie_word_embeddings: bool = False
    gated_mlp: bool = True
    """llama-style SwiGLU (3 MLP matrices); False for OPT-style (2 matrices)."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
                     "vocab_size", "max_context"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"model {self.name!r}: {name}={value!r} must be an integer >= 1")
        if self.num_heads % self.num_kv_heads:
            raise SpecError(
                f"model {self.name!r}: num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )

    # ---- parameter counts ---------------------------------------------------------------------------------------
    @property
    def layer_params(self) -> int:
        """Weights in one decoder layer: attention projections, MLP, two norms."""
        h, d = self.hidden_size, self.head_dim
        attn = h * self.num_heads * d * 2 + h * self.num_kv_heads * d * 2
        mlp = (3 if self.gated_mlp else 2) * h * self.intermediate_size
        return attn + mlp + 2 * h

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def lm_head_params(self) -> int:
        """The output projection plus the final norm (a tied head still needs its own copy on the last PP stage)."""
        return self.vocab_size * self.hidden_size + self.hidden_size

    @property
    def param_count(self) -> int:
        head = self.hidden_size if self.tie_word_embeddings else self.lm_head_params
        return self.num_layers * self.layer_params + self.embedding_params + head

    def weight_bytes(self, dtype_bytes: int = 2) -> int:
        return self.param_count * dtype_bytes

    # ---- per-token costs ----------------------------------------------------------------------------------------
    def kv_bytes_per_token(self, dtype_bytes: int = 2) -> int:
        """KV-cache bytes for one token over all layers: 2 (K,V) * layers * kv_heads * head_dim * dtype (GQA aware)."""
        return self.num_layers * self.kv_bytes_per_token_layer(dtype_bytes)

    def kv_bytes_per_token_layer(self, dtype_bytes: int = 2) -> int:
        return 2 * self.num_kv_heads * self.head_dim * dtype_bytes

    @property
    def layer_linear_flops_per_token(self) -> int:
        """FLOPs of the dense matmuls of one layer for one token (2 per multiply-accumulate)."""
        return 2 * (self.layer_params - 2 * self.hidden_size)

    @property
    def attention_flops_per_token_context(self) -> int:
        """Score + value FLOPs of one layer per (query token, context token) pair: 2 matmuls * 2 FLOP * q_heads*d."""
        return 4 * self.num_heads * self.head_dim

    @property
    def lm_head_flops_per_token(self) -> int:
        return 2 * self.vocab_size * self.hidden_size

    # ---- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_catalog(cls, name: str, path: str | Path | None = None) -> ModelSpec:
        """Read one entry of `models.toml` (default: the shared data directory)."""
        raw = read_toml(path if path is not None else data_dir() / "models.toml")
        entries = _flatten_tables(raw)
        if name not in entries:
            raise SpecError(f"model {name!r} not in models.toml; use one of: {', '.join(sorted(entries))}")
        e = entries[name]
        return cls._from_fields(name, e, max_context_key="max_position_embeddings", where=f"models.toml [{name}]")

    @classmethod
    def from_hf_config(cls, path: str | Path, *, name: str | None = None) -> ModelSpec:
        """Read a Hugging Face `config.json` (a file, or a directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            cfg = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"{path}: config.json not found; pass a HF model directory or config.json path") from None
        except json.JSONDecodeError as exc:
            raise SpecError(f"{path}: invalid JSON ({exc})") from None
        fields = {
            "num_layers": cfg.get("num_hidden_layers"),
            "hidden_size": cfg.get("hidden_size"),
            "num_attention_heads": cfg.get("num_attention_heads"),
            "num_key_value_heads": cfg.get("num_key_value_heads", cfg.get("num_attention_heads")),
            "intermediate_size": cfg.get("intermediate_size", cfg.get("ffn_dim")),
            "vocab_size": cfg.get("vocab_size"),
            "max_position_embeddings": cfg.get("max_position_embeddings", cfg.get("max_sequence_length", 2048)),
            "tie_word_embeddings": cfg.get("tie_word_embeddings", False),
            "gated_mlp": cfg.get("model_type", "llama") != "opt",
        }
        if cfg.get("head_dim"):
            fields["head_dim"] = cfg["head_dim"]
        elif fields["hidden_size"] and fields["num_attention_heads"]:
            fields["head_dim"] = fields["hidden_size"] // fields["num_attention_heads"]
        model_name = name or str(cfg.get("_name_or_path") or path.parent.name)
        return cls._from_fields(model_name, fields, max_context_key="max_position_embeddings", where=str(path))

    @classmethod
    def _from_fields(cls, name: str, e: dict[str, Any], *, max_context_key: str, where: str) -> ModelSpec:
        required = ("num_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                    "intermediate_size", "vocab_size", max_context_key)
        missing = [k for k in required if e.get(k) is None]
        if missing:
            raise SpecError(f"{where}: missing field(s) {missing}")
        return cls(
            name=name,
            num_layers=e["num_layers"],
            hidden_size=e["hidden_size"],
            num_heads=e["num_attention_heads"],
            num_kv_heads=e["num_key_value_heads"],
            head_dim=e["head_dim"],
            intermediate_size=e["intermediate_size"],
            vocab_size=e["vocab_size"],
            max_context=e[max_context_key],
            tie_word_embeddings=bool(e.get("tie_word_embeddings", False)),
            gated_mlp=bool(e.get("gated_mlp", not name.startswith("opt"))),
        )


def _flatten_tables(raw: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """{name: table} for every table holding `num_layers`; a dotted TOML key such as [qwen2.5-7b] nests, so re-join."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            full = f"{prefix}{key}"
            if "num_layers" in value:
                out[full] = value
            out |= _flatten_tables(value, prefix=f"{full}.")
    return out


__all__ = ["ModelSpec"]
