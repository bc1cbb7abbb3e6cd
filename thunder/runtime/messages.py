"""Wire messages of the serving runtime (msgspec Structs registered with `actors.message`).

Who sends what:
- router -> device: `Admit` (a request; with `handoff_to` set on a prefill device), `Abort`, `SetRole`,
  `Peers` (dial these decode nodes for direct KV handoff), `GetStats`, `Drain`, `Profile`;
- prefill device -> decode device: `KVHandoff` (4-bit/16/32-bit KV as raw tensor frames, first token);
- device -> sink (main process): one `StepReport` per engine step carrying every request's `Delta`.

No torch here: tensors travel in fields typed `Any` (the actors codec ships them as raw buffers), so the
main process never imports torch just to route messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from actors import message

if TYPE_CHECKING:
    from thunder.engine import SamplingParams

__all__ = [
    "ROLES",
    "Admit",
    "Abort",
    "Delta",
    "DeviceInfo",
    "DeviceStats",
    "Drain",
    "EngineSpec",
    "GetInfo",
    "GetStats",
    "HandoffRecord",
    "KVHandoff",
    "Peers",
    "Profile",
    "RelayHandoff",
    "ProfilePoint",
    "ProfileResult",
    "Role",
    "Sampling",
    "SetRole",
    "StepReport",
]

Role = Literal["prefill", "decode", "colocated"]
ROLES: tuple[str, ...] = ("prefill", "decode", "colocated")


@message
class Sampling(msgspec.Struct, frozen=True, kw_only=True):
    """`thunder.engine.SamplingParams` on the wire (same fields, same meaning)."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    @classmethod
    def of(cls, params: SamplingParams) -> Sampling:
        return cls(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            seed=params.seed,
            stop=tuple(params.stop),
            stop_token_ids=tuple(params.stop_token_ids),
            ignore_eos=params.ignore_eos,
        )

    def to_params(self, **changes: Any) -> SamplingParams:
        from thunder.engine import SamplingParams

        fields = {f: getattr(self, f) for f in self.__struct_fields__}
        return SamplingParams(**(fields | changes))


@message
class EngineSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How a device actor builds its engine (see `thunder.runtime.engines`)."""

    kind: str = "torch"
    model: str = "smollm2-135m-instruct"
    dtype: str = "auto"
    device: str = "cpu"
    threads: int = 1
    kv_cache_gib: float = 1.0
    max_num_seqs: int = 128
    max_num_batched_tokens: int = 2048
    seed: int = 0
    gpu_type: str = "cpu"
    replica_config: dict[str, Any] = {}
    """The planner's `ReplicaConfig.to_dict()` of the group (the `sim` engine times steps from it)."""


@message
class Admit(msgspec.Struct, frozen=True, kw_only=True):
    """Start a request. On a prefill device `handoff_to` names the decode device that gets its KV."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: Sampling
    handoff_to: Any = None  # ActorRef of the decode device, or None (colocated / decode-in-place)
    handoff_replica: str = ""
    kv_dtype: str = "int4"
    kv_group_size: int = 64


@message
class KVHandoff(msgspec.Struct, frozen=True, kw_only=True):
    """A prefilled request moving to a decode device: its prompt KV in wire form plus its first token.

    `header`/`payload`/`scales`/`mins` are `kernels_ext.PackedKV.to_wire()` (tensors as raw frames).
    """

    request_id: str
    prompt_token_ids: list[int]
    sampling: Sampling
    first_token: int
    src_replica: str
    header: dict[str, Any]
    payload: Any
    scales: Any
    mins: Any


@message
class RelayHandoff(msgspec.Struct, frozen=True):
    """A handoff the prefill node cannot send directly (no link to the decode node): the sink forwards it."""

    target: Any  # ActorRef of the decode device
    handoff: KVHandoff


@message
class Abort(msgspec.Struct, frozen=True):
    request_ids: list[str]


@message
class SetRole(msgspec.Struct, frozen=True):
    """Flip the device's role (and optionally the replica id it reports as); the engine (weights, KV pool)
    stays. Replies with the previous role. ``threads`` > 0 sets the device's torch threads (``small_batch_threads``
    > 0 of them while its batch is small) and ``nice`` > 0 lowers its CPU priority (the role's `cpu_policy`
    share; a priority once lowered stays lowered)."""

    role: str
    replica: str = ""
    threads: int = 0
    nice: int = 0
    small_batch_threads: int = 0


@message
class Peers(msgspec.Struct, frozen=True):
    """Link to these `(node_id, host, port)` peers (unless a link exists already, in either direction) so KV
    handoffs go device to device, not via the main process."""

    peers: list[tuple[str, str, int]]


@message
class GetStats(msgspec.Struct, frozen=True):
    pass


@message
class GetInfo(msgspec.Struct, frozen=True):
    pass


@message
class Drain(msgspec.Struct, frozen=True):
    """Reply once the device holds no unfinished request (new admissions are still served)."""

    timeout_s: float = 60.0


@message
class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """Time real engine steps: prefills of `prompt_lens` (batch 1) and decodes of `batch_sizes`."""

    prompt_lens: list[int]
    batch_sizes: list[int]
    decode_context: int = 32


@message
class ProfilePoint(msgspec.Struct, frozen=True, array_like=True):
    phase: str
    batch_size: int
    seq_len: int
    seconds: float


@message
class ProfileResult(msgspec.Struct, frozen=True):
    points: list[ProfilePoint]


@message
class DeviceStats(msgspec.Struct, frozen=True, kw_only=True):
    replica: str
    role: str
    running: int
    waiting: int
    held: int
    kv_pages_used: int
    kv_pages_total: int
    steps: int
    num_preemptions: int
    max_num_seqs: int

    @property
    def kv_cache_usage(self) -> float:
        return self.kv_pages_used / self.kv_pages_total if self.kv_pages_total else 0.0


@message
class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a device actor reports once its engine is built."""

    replica: str
    role: str
    pid: int
    node_id: str
    max_model_len: int
    dtype: str
    address: tuple[str, int] | None
    """Where this device's node accepts direct links from peers (None: relayed via the main process)."""
    stages: list[tuple[int, int, int]] = []
    """A pipelined group: ``(first_layer, end_layer, pid)`` of each stage in order; empty for one device."""


@message
class Delta(msgspec.Struct, frozen=True, array_like=True):
    """New output of one request. `start` = index of its first token among the request's output tokens."""

    request_id: str
    start: int
    token_ids: list[int]
    text: str
    finished: bool
    finish_reason: str | None
    num_prompt_tokens: int


@message
class HandoffRecord(msgspec.Struct, frozen=True, array_like=True):
    request_id: str
    dst_replica: str
    wire_nbytes: int
    fp16_nbytes: int
    seconds: float  # export + pack time on the sender


@message
class StepReport(msgspec.Struct, frozen=True, kw_only=True):
    """One engine step of one device: every request's new output, what it computed, and its load."""

    replica: str
    deltas: list[Delta]
    stats: DeviceStats
    step_s: float
    prefill_tokens: int
    decode_tokens: int
    handoffs: list[HandoffRecord] = []
