"""The torch Llama: paged flat batches == per-sequence dense forwards, pipeline stages compose, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kernels_ext import PagedAttention, allocate_paged_kv_cache
from tests.thunder.models.tiny import HEAD_DIM, HEADS, KV_HEADS, LAYERS, config, write_hf_dir
from thunder.models import DenseCausalAttention, ModelConfig, UnsupportedModelError, build_model
from thunder.models.rope import rope_inv_freq


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny")
    write_hf_dir(path, config())
    return path


def dense_logits(model, ids: list[int]) -> torch.Tensor:
    hidden = model(torch.tensor(ids), torch.arange(len(ids)), DenseCausalAttention())
    return model.compute_logits(hidden)


def test_flat_paged_batch_equals_dense_forward_per_sequence(tiny_dir: Path) -> None:
    model = build_model(tiny_dir, dtype=torch.float32)
    seqs = [[5, 9, 14, 3, 7, 8, 30], [11], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]]
    cache = allocate_paged_kv_cache(
        num_layers=LAYERS, num_pages=16, page_size=4, num_kv_heads=KV_HEADS, head_dim=HEAD_DIM,
        dtype=torch.float32,
    )  # fmt: skip
    attn = PagedAttention(cache, num_qo_heads=HEADS)
    pages = [[15, 2], [7], [1, 9, 4]]  # shuffled physical pages
    lens = [len(s) for s in seqs]
    attn.plan(
        torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32),
        torch.tensor([0, 2, 3, 6], dtype=torch.int32),
        torch.tensor(sum(pages, []), dtype=torch.int32),
        torch.tensor([(n - 1) % 4 + 1 for n in lens], dtype=torch.int32),
    )
    ids = torch.tensor(sum(seqs, []))
    positions = torch.cat([torch.arange(n) for n in lens])
    logits = model.compute_logits(model(ids, positions, attn))
    expected = torch.cat([dense_logits(model, s) for s in seqs])
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_pipeline_stages_compose_to_the_full_model(tiny_dir: Path) -> None:
    full = build_model(tiny_dir, dtype=torch.float32)
    first = build_model(tiny_dir, dtype=torch.float32, layer_range=(0, 1))
    last = build_model(tiny_dir, dtype=torch.float32, layer_range=(1, LAYERS))
    assert first.lm_head is None and last.embed_tokens is None and len(first.layers) == 1
    ids, pos = torch.tensor([3, 1, 4, 1, 5]), torch.arange(5)
    attn = DenseCausalAttention()
    hidden = first(ids, pos, attn)
    staged = last.compute_logits(last(hidden, pos, DenseCausalAttention()))
    torch.testing.assert_close(staged, full.compute_logits(full(ids, pos, attn)))
    with pytest.raises(RuntimeError, match="not the last stage"):
        first.compute_logits(hidden)
    with pytest.raises(ValueError, match="layer_range"):
        build_model(tiny_dir, dtype=torch.float32, layer_range=(1, 1))


def test_tied_embeddings_share_the_lm_head(tmp_path: Path) -> None:
    write_hf_dir(tmp_path, config(tie_word_embeddings=True))
    model = build_model(tmp_path, dtype=torch.float32)
    assert model.lm_head.weight.data_ptr() == model.embed_tokens.weight.data_ptr()


def test_qwen2_style_qkv_bias_is_loaded_and_changes_the_output(tmp_path: Path) -> None:
    weights = write_hf_dir(tmp_path, config(architectures=["Qwen2ForCausalLM"]))
    model = build_model(tmp_path, dtype=torch.float32)
    layer = model.layers[0]
    assert layer.qkv_proj.bias is not None and layer.o_proj.bias is None
    q_bias = weights["model.layers.0.self_attn.q_proj.bias"]
    assert torch.equal(layer.qkv_proj.bias[: q_bias.shape[0]], q_bias)


def test_missing_weights_and_unknown_architectures_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match="GPTNeoXForCausalLM"):
        ModelConfig.from_dict(config(architectures=["GPTNeoXForCausalLM"]))
    write_hf_dir(tmp_path, config())
    (tmp_path / "config.json").write_text(
        (tmp_path / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 3')
    )
    with pytest.raises(UnsupportedModelError, match="weights missing"):
        build_model(tmp_path, dtype=torch.float32)


def test_rope_scaling_variants() -> None:
    base = rope_inv_freq(64, 500000.0, None)
    assert torch.allclose(base, 1.0 / 500000.0 ** (torch.arange(0, 64, 2).float() / 64))
    assert torch.allclose(rope_inv_freq(64, 500000.0, {"type": "linear", "factor": 4.0}), base / 4)
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 8192}  # fmt: skip
    scaled = rope_inv_freq(64, 500000.0, llama3)
    wavelen = 2 * torch.pi / base
    assert torch.equal(scaled[wavelen < 8192 / 4], base[wavelen < 8192 / 4])  # high frequencies kept
    assert torch.allclose(scaled[wavelen > 8192], base[wavelen > 8192] / 8)  # low frequencies scaled
    with pytest.raises(UnsupportedModelError, match="yarn"):
        rope_inv_freq(64, 1e4, {"rope_type": "yarn", "factor": 2.0})


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cpu_kernels_match_the_eager_torch_layers(tiny_dir: Path, dtype: torch.dtype) -> None:
    from kernels_ext import cpu_fused

    if not cpu_fused.available():
        pytest.skip("no C compiler: fused CPU kernels not built")
    model = build_model(tiny_dir, dtype=dtype)
    assert model.fused
    ids = [5, 9, 14, 3, 7, 8, 30, 40, 41]
    fused = dense_logits(model, ids).float()
    model.fused = False
    eager = dense_logits(model, ids).float()
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(fused, eager, atol=tol, rtol=tol)
