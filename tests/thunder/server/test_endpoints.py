"""/health, /metrics, /v1/plan and /openapi.json on a live server.

The backend is `ScriptedBackend`, a test double for the HTTP layer only.
"""

from __future__ import annotations

import math

import aiohttp
import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.thunder.server.scripted import ScriptedBackend
from thunder.server import RunningServer


async def get(server: RunningServer, path: str) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}{path}") as resp:
        return resp.status, await resp.text(), dict(resp.headers)


async def test_health_is_503_until_the_backend_is_ready(
    server: RunningServer, scripted: ScriptedBackend
) -> None:
    status, text, headers = await get(server, "/health")
    assert status == 503 and headers["Retry-After"] == "1"
    assert '"code":"not_ready"' in text.replace(" ", "")
    scripted.is_ready = True
    status, text, _ = await get(server, "/health")
    assert status == 200 and "ready" in text


async def test_plan_is_404_without_a_plan_and_the_json_with_one(
    server: RunningServer, scripted: ScriptedBackend
) -> None:
    status, text, _ = await get(server, "/v1/plan")
    assert status == 404 and "plan_not_available" in text
    scripted.plan = {
        "groups": [{"id": "P0", "phase": "prefill", "devices": ["cpu:0"]}],
        "routing": {"P0": 1.0},
    }
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/v1/plan") as resp:
        assert resp.status == 200
        assert await resp.json() == scripted.plan


async def test_openapi_describes_every_route(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    routes = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/health", "/metrics", "/v1/plan"}
    assert routes <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"CompletionRequest", "ChatCompletionRequest", "ChatCompletionChunk", "ErrorResponse"} <= set(
        schemas
    )
    assert schemas["CompletionRequest"]["required"] == ["prompt"]
    assert "temperature" in schemas["ChatCompletionRequest"]["properties"]
    ref = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert ref["$ref"].rsplit("/", 1)[-1] in schemas


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_parse_and_reflect_served_requests_and_backend_state(
    server: RunningServer, client: openai.AsyncOpenAI
) -> None:
    for max_tokens in (3, 5):
        await client.completions.create(model="scripted-echo", prompt="abcd", max_tokens=max_tokens)
    status, text, headers = await get(server, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    got = samples(text)
    model = (("model_name", "scripted-echo"),)
    assert got[("thunder:e2e_request_latency_seconds_count", model)] == 2
    assert got[("thunder:time_to_first_token_seconds_count", model)] == 2
    assert got[("thunder:time_per_output_token_seconds_count", model)] == 2
    assert got[("thunder:prompt_tokens_total", model)] == 8
    assert got[("thunder:generation_tokens_total", model)] == 8
    assert (
        got[
            (
                "thunder:request_success_total",
                (("finished_reason", "length"), ("model_name", "scripted-echo")),
            )
        ]
        == 2
    )
    assert got[("thunder:num_requests_in_flight", model)] == 0
    p0 = (("replica", "P0"), ("role", "prefill"))
    assert got[("thunder:num_requests_running", p0)] == 1
    assert got[("thunder:num_requests_waiting", p0)] == 2
    assert got[("thunder:kv_cache_usage_perc", (("replica", "D0"), ("role", "decode")))] == 0.5
    assert got[("thunder:cluster_usd_per_hour", ())] == 1.5
    assert got[("thunder:slo_attainment", ())] == 1.0  # the scripted backend is far inside the default SLOs
    assert got[("thunder:goodput_requests_per_second", ())] > 0
    # the two gauges are read microseconds apart while the covered time grows, hence the tolerance
    goodput = got[("thunder:goodput_requests_per_second", ())]
    assert math.isclose(got[("thunder:goodput_per_usd_per_hour", ())], goodput / 1.5, rel_tol=0.05)


async def test_errors_are_counted_by_status(server: RunningServer, client: openai.AsyncOpenAI) -> None:
    try:
        await client.completions.create(model="nope", prompt="x")
    except openai.NotFoundError:
        pass
    _, text, _ = await get(server, "/metrics")
    assert samples(text)[("thunder:http_errors_total", (("status", "404"),))] == 1
