"""load_model_dir: the embedded default, local HF directories, and errors that say what was looked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thunder.models import ModelConfig, ModelNotFoundError, Tokenizer, load_model_dir


def test_embedded_default_is_a_valid_hf_llama_directory() -> None:
    path = load_model_dir("smollm2-135m-instruct")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json"):  # fmt: skip
        assert (path / name).is_file(), name
    cfg = ModelConfig.from_dir(path)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (
        30, 576, 9, 3,
    )  # fmt: skip
    assert cfg.tie_word_embeddings and cfg.rope_theta == 100000.0 and cfg.vocab_size == 49152
    assert json.loads((path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert load_model_dir("SmolLM2") == path  # alias


def test_local_directory_is_returned_as_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert load_model_dir(tmp_path) == tmp_path


def test_unknown_model_names_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct.*never downloads"):
        load_model_dir("meta-llama/Llama-3-8B")
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model_dir(tmp_path)


def test_chat_template_renders_chatml_with_the_default_system_prompt() -> None:
    tok = Tokenizer(load_model_dir())
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True)
    assert ids[0] == tok.bos_token_id == 1 and tok.eos_token_id == 2
    assert tok.decode(ids, skip_special_tokens=False) == text
