"""Specs: GPU catalog, cluster TOML and link graph, model catalog / HF config, workload traces, budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner import SLO, Budget, Cluster, ModelSpec, SpecError, Workload, load_gpu_catalog
from planner.workload import DEFAULT_SLOS

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "examples" / "clusters"


def test_catalog_has_paper_gpus_with_datasheet_numbers() -> None:
    cat = load_gpu_catalog()
    assert cat["a40"].memory_gib == 48 and cat["a40"].mem_bw_gbps == 696 and cat["a40"].tflops_fp16 == 149.7
    assert cat["rtx-3090-ti"].flops == pytest.approx(80e12)
    assert cat["a100-80gb-sxm"].mem_bw_bytes == pytest.approx(2039e9)


def test_paper_cloud_cluster_matches_budget_and_mix() -> None:
    c = Cluster.from_toml(CLUSTERS / "paper-cloud-32.toml")
    assert len(c.devices) == 32
    assert c.price_per_hour == pytest.approx(13.54, rel=0.01)
    assert {d.gpu_type for d in c.devices} == {"rtx-a6000", "a40", "rtx-a5000", "rtx-3090-ti"}
    # intra-node PCIe 160 Gbit/s, same region 40 Gbit/s, cross-region 10 Gbit/s — stored as bytes/s and seconds
    assert c.link("a6000-0/0", "a6000-0/1") == (pytest.approx(20e9), pytest.approx(10e-6))
    assert c.link("a6000-0/0", "a40-0/0") == (pytest.approx(5e9), pytest.approx(200e-6))
    assert c.link("a6000-0/0", "3090ti-0/0") == (pytest.approx(1.25e9), pytest.approx(2e-3))
    assert c.graph.number_of_edges() == 32 * 31 // 2
    assert c.graph.edges["a40-0/0", "a5000-0/0"]["bandwidth"] == pytest.approx(1.25e9)


def test_inhouse_a100_uses_nvlink_and_equal_budget() -> None:
    c = Cluster.from_toml(CLUSTERS / "paper-inhouse-8xa100.toml")
    assert c.price_per_hour == pytest.approx(13.54)
    assert c.link("dgx-0/0", "dgx-0/7")[0] == pytest.approx(300e9)


def test_5gbps_variant_differs_only_in_inter_node_link() -> None:
    fast = Cluster.from_toml(CLUSTERS / "paper-a40-3090ti-8.toml")
    slow = Cluster.from_toml(CLUSTERS / "paper-a40-3090ti-8-5gbps.toml")
    assert fast.link("a40-0/0", "3090ti-0/0")[0] == pytest.approx(40e9 / 8)
    assert slow.link("a40-0/0", "3090ti-0/0")[0] == pytest.approx(5e9 / 8)
    assert fast.link("a40-0/0", "a40-0/1") == slow.link("a40-0/0", "a40-0/1")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"node": [{"name": "n", "gpu": "a4000", "count": 1, "price_per_gpu_hour": 1}]}, "unknown gpu type 'a4000'"),
        ({"node": [{"name": "n", "gpu": "a40", "count": 0, "price_per_gpu_hour": 1}]}, "count=0"),
        ({"node": [{"name": "n", "gpu": "a40", "count": 1}]}, "price_per_gpu_hour=None"),
        ({"node": []}, "no [[node]]"),
        ({"network": {"inter_gbps": 5}, "node": [{"gpu": "a40", "price_per_gpu_hour": 1}]}, "unknown keys ['inter_gbps']"),
        ({"node": [{"name": "a", "gpu": "a40", "price_per_gpu_hour": 1}], "link": [{"nodes": ["a", "b"], "gbps": 1}]},
         "nodes=['a', 'b']"),
    ],
)
def test_cluster_errors_name_the_bad_field(raw: dict, needle: str) -> None:
    with pytest.raises(SpecError, match=None) as info:
        Cluster.from_mapping(raw)
    assert needle in str(info.value)


def test_cluster_with_link_and_without() -> None:
    c = Cluster.from_toml(CLUSTERS / "paper-a40-3090ti-8.toml")
    slower = c.with_link("a40-0", "3090ti-0", bandwidth=1e6)
    assert slower.link("a40-0/2", "3090ti-0/3")[0] == 1e6
    assert c.link("a40-0/2", "3090ti-0/3")[0] == pytest.approx(5e9)  # original untouched
    assert len(c.without(["a40-0/0"]).devices) == 7


def test_model_catalog_param_and_kv_counts_match_models_toml() -> None:
    m = ModelSpec.from_catalog("llama-30b")
    assert m.param_count == 32_528_943_616
    assert m.kv_bytes_per_token(2) == 1_597_440  # 2 * 60 * 52 * 128 * 2
    gqa = ModelSpec.from_catalog("llama-2-70b")
    assert gqa.kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2
    assert ModelSpec.from_catalog("qwen2.5-7b").num_kv_heads == 4  # dotted TOML key re-joined
    with pytest.raises(SpecError, match="llama-31b"):
        ModelSpec.from_catalog("llama-31b")


def test_model_from_hf_config(tmp_path: Path) -> None:
    cfg = {"num_hidden_layers": 30, "hidden_size": 576, "num_attention_heads": 9, "num_key_value_heads": 3,
           "intermediate_size": 1536, "vocab_size": 49152, "max_position_embeddings": 8192, "tie_word_embeddings": True,
           "model_type": "llama", "_name_or_path": "smol"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = ModelSpec.from_hf_config(tmp_path)
    assert m.head_dim == 64 and m.param_count == ModelSpec.from_catalog("smollm2-135m").param_count
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "hidden_size": None}))
    with pytest.raises(SpecError, match="hidden_size"):
        ModelSpec.from_hf_config(tmp_path)


def test_workload_from_traces_and_clip() -> None:
    code = Workload.from_trace("coding")
    assert code.prompt_lens.size == 8819 and code.rate == pytest.approx(2.567, rel=1e-3)
    assert code.mean_prompt == pytest.approx(2047.8, rel=1e-3) and code.slo == DEFAULT_SLOS["coding"]
    clipped = code.clipped(2048)
    assert int((clipped.prompt_lens + clipped.output_lens).max()) <= 2048
    assert (clipped.output_lens == code.output_lens).all()  # outputs < 2047 are kept whole
    conv = Workload.from_trace("conversation", rate=3.0, slo_scale=2.0)
    assert conv.rate == 3.0 and conv.effective_slo.ttft_s == pytest.approx(2 * conv.slo.ttft_s)
    assert conv.mean_output > code.mean_output  # conversation: long outputs; coding: long prompts


def test_workload_errors() -> None:
    with pytest.raises(SpecError, match="rate=0"):
        Workload.from_trace("coding", rate=0)
    with pytest.raises(SpecError, match="not found"):
        Workload.from_trace("/nonexistent.csv")
    with pytest.raises(SpecError, match="ttft_s=0"):
        SLO(ttft_s=0, tpot_s=0.1)
    with pytest.raises(SpecError, match="usd_per_hour=-1"):
        Budget(usd_per_hour=-1)
