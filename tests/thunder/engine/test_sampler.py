"""Sampler: greedy, temperature, top-k, top-p, per-request seeds."""

from __future__ import annotations

import pytest
import torch

from thunder.engine import ConfigError, Sampler, SamplingParams, filter_logits


def logits_rows(n: int, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, vocab, generator=torch.Generator().manual_seed(seed))


def test_greedy_rows_take_the_argmax() -> None:
    logits = logits_rows(4)
    params = [SamplingParams(temperature=0)] * 4
    assert Sampler()(logits, params, [None] * 4) == logits.argmax(-1).tolist()


def test_top_k_one_is_greedy_even_with_temperature() -> None:
    logits = logits_rows(3)
    params = [SamplingParams(temperature=1.5, top_k=1)] * 3
    assert Sampler()(logits, params, [None] * 3) == logits.argmax(-1).tolist()


def test_seeded_requests_repeat_whatever_they_are_batched_with() -> None:
    logits = logits_rows(1).repeat(3, 1)
    seeded = SamplingParams(temperature=1.0, seed=7)

    def draw(batch_extra: int) -> list[int]:
        gens = [torch.Generator().manual_seed(7)]
        rows = torch.cat([logits[:1], logits_rows(batch_extra, seed=9)])
        params = [seeded] + [SamplingParams(temperature=1.0)] * batch_extra
        out = []
        for _ in range(20):
            out.append(Sampler(seed=batch_extra)(rows, params, gens + [None] * batch_extra)[0])
        return out

    first = draw(0)
    assert first == draw(2) == draw(5)
    assert len(set(first)) > 1  # it does sample


def test_filter_logits_keeps_exactly_top_k_and_the_nucleus() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, torch.tensor([2]), torch.tensor([1.0])))
    assert kept.tolist() == [[True, True, False, False, False]]
    kept = torch.isfinite(filter_logits(logits, torch.tensor([0]), torch.tensor([0.8])))
    assert kept.tolist() == [[True, True, True, False, False]]  # 0.5 + 0.2 < 0.8, so 0.15 is needed
    kept = torch.isfinite(filter_logits(logits, torch.tensor([0]), torch.tensor([0.01])))
    assert kept.tolist() == [[True, False, False, False, False]]  # the top token always survives


def test_sampled_tokens_stay_inside_top_k_and_follow_the_distribution() -> None:
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.06, 0.04]])).repeat(4000, 1)
    params = [SamplingParams(temperature=1.0, top_k=2)] * 4000
    tokens = torch.tensor(Sampler(seed=1)(logits, params, [None] * 4000))
    assert set(tokens.tolist()) == {0, 1}
    assert abs(float((tokens == 0).float().mean()) - 2 / 3) < 0.04


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_tokens": 0}, "max_tokens=0"),
        ({"temperature": -1}, "temperature=-1"),
        ({"top_p": 0}, "top_p=0"),
        ({"top_k": -1}, "top_k=-1"),
        ({"stop": [""]}, "non-empty"),
    ],
)
def test_invalid_sampling_params_name_the_value(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SamplingParams(**kwargs)
