"""GGUF -> HF conversion: weights come back in HF layout (Q/K permutation undone), tokenizer rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.thunder.models.tiny import TEMPLATE, config, hf_weights, write_gguf
from thunder.models import Tokenizer, UnsupportedModelError, build_model, convert_gguf_to_hf, load_model_dir


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    weights = hf_weights(config())
    path = tmp_path / "tiny-llama.gguf"
    write_gguf(path, weights)
    return path, weights


def test_conversion_restores_hf_weights_exactly(tiny_gguf, tmp_path: Path) -> None:
    path, weights = tiny_gguf
    out = tmp_path / "hf"
    out.mkdir()
    convert_gguf_to_hf(path, out)
    got = load_file(str(out / "model.safetensors"))
    assert set(got) == set(weights)
    for name, tensor in weights.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_key_value_heads"] == 2 and cfg["tie_word_embeddings"] is False
    model = build_model(out, dtype=torch.float32)
    q = weights["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(model.layers[0].qkv_proj.weight[: q.shape[0]], q)


def test_rebuilt_tokenizer_merges_splits_digits_and_keeps_the_chat_template(
    tiny_gguf, tmp_path: Path
) -> None:
    path, _ = tiny_gguf
    out = tmp_path / "hf"
    out.mkdir()
    convert_gguf_to_hf(path, out)
    tok = Tokenizer(out)
    ids = tok.encode("he he 42", add_special_tokens=False)
    pieces = [tok.hf.id_to_token(i) for i in ids]
    assert pieces == ["he", "Ġhe", "Ġ", "4", "2"]  # merges applied; digits one by one (smollm)
    assert tok.decode(ids) == "he he 42"
    assert tok.chat_template == TEMPLATE
    assert tok.encode("<|im_start|>", add_special_tokens=False) == [1]
    assert tok.eos_token_id == 2


def test_gguf_path_converts_once_into_the_cache(tiny_gguf, tmp_path: Path, monkeypatch) -> None:
    path, _ = tiny_gguf
    monkeypatch.setenv("THUNDER_CACHE_DIR", str(tmp_path / "cache"))
    first = load_model_dir(path)
    assert first == tmp_path / "cache" / "models" / "tiny-llama"
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert load_model_dir(str(path)) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_unsupported_gguf_architecture_is_named(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "other.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(UnsupportedModelError, match="'mamba'"):
        convert_gguf_to_hf(path, out)
