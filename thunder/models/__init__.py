"""thunder.models: our torch Llama-family implementation, HF/GGUF loading, tokenizer and chat template."""

from thunder.models.config import SUPPORTED_ARCHITECTURES, ModelConfig
from thunder.models.errors import ModelError, ModelNotFoundError, UnsupportedModelError
from thunder.models.gguf_convert import convert_gguf_to_hf
from thunder.models.llama import AttentionLike, DenseCausalAttention, LlamaForCausalLM
from thunder.models.loader import build_model, load_weights
from thunder.models.registry import DEFAULT_MODEL, EMBEDDED_MODELS, cache_dir, load_model_dir
from thunder.models.rope import RotaryEmbedding
from thunder.models.tokenizer import Tokenizer

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "SUPPORTED_ARCHITECTURES",
    "AttentionLike",
    "DenseCausalAttention",
    "LlamaForCausalLM",
    "ModelConfig",
    "ModelError",
    "ModelNotFoundError",
    "RotaryEmbedding",
    "Tokenizer",
    "UnsupportedModelError",
    "build_model",
    "cache_dir",
    "convert_gguf_to_hf",
    "load_model_dir",
    "load_weights",
]
