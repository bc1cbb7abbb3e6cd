"""`DeviceCore`: the synchronous half of a device actor — admissions, aborts, handoffs and one engine step.

It runs in a worker thread (`asyncio.to_thread`) between message batches, so it owns the engine exclusively:
the actor only appends to an inbox while a step runs. Every step yields one `StepOutcome` — the deltas of all
requests (batched: one message per step, never per token), the KV handoffs to send, and the load.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from thunder.engine import RequestOutput
from thunder.runtime.engines import Engine
from thunder.runtime.handoff import export_handoff, import_kv
from thunder.runtime.messages import (
    Abort,
    Admit,
    Delta,
    DeviceStats,
    HandoffRecord,
    KVHandoff,
    Sampling,
    StepReport,
)

__all__ = ["DeviceCore", "StepOutcome"]

log = logging.getLogger(__name__)
TOMBSTONES = 4096
"""Aborted ids remembered so a KV handoff that was already in flight is dropped on arrival."""


@dataclass(slots=True)
class _Request:
    prompt_token_ids: list[int]
    sampling: Sampling
    emitted: int  # output tokens of this request already reported (by any device)
    admitted_here: bool
    handoff_to: Any = None
    handoff_replica: str = ""
    kv_dtype: str = "int4"
    kv_group_size: int = 64


@dataclass(slots=True)
class StepOutcome:
    report: StepReport | None
    handoffs: list[tuple[Any, KVHandoff]] = field(default_factory=list)


class DeviceCore:
    """Engine-side state of one device. Not thread-safe: call from one thread at a time."""

    def __init__(
        self, engine: Engine, *, replica: str, role: str, max_num_seqs: int, device: str = "cpu"
    ) -> None:
        self.engine = engine
        self.device = device
        self.replica = replica
        self.role = role
        self.max_num_seqs = max_num_seqs
        self.kv_dtype: torch.dtype = getattr(engine, "dtype", torch.float32)
        self._reqs: dict[str, _Request] = {}
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._early: list[Delta] = []  # finished deltas produced while applying the inbox

    @property
    def num_requests(self) -> int:
        return len(self._reqs)

    def has_work(self) -> bool:
        return bool(self._early) or self.engine.has_unfinished()

    # -- inbox --------------------------------------------------------------------------------------------
    def apply(self, msg: Admit | KVHandoff | Abort) -> None:
        if isinstance(msg, Abort):
            for rid in msg.request_ids:
                self._abort(rid)
            return
        rid = msg.request_id
        if rid in self._tombstones:
            return
        try:
            if isinstance(msg, KVHandoff):
                self._import(msg)
            else:
                self._admit(msg)
        except ValueError as exc:  # NOTE: the server validates first; this is a last line, not the contract
            log.warning("%s: request %s rejected by the engine: %s", self.replica, rid, exc)
            self._reqs.pop(rid, None)
            self._early.append(
                Delta(
                    rid,
                    1 if isinstance(msg, KVHandoff) else 0,
                    [],
                    "",
                    True,
                    "abort",
                    len(msg.prompt_token_ids),
                )
            )

    def _admit(self, msg: Admit) -> None:
        prefill_only = msg.handoff_to is not None
        self.engine.add_request(
            msg.request_id, msg.prompt_token_ids, msg.sampling.to_params(), prefill_only=prefill_only
        )
        self._reqs[msg.request_id] = _Request(
            msg.prompt_token_ids,
            msg.sampling,
            0,
            True,
            msg.handoff_to,
            msg.handoff_replica,
            msg.kv_dtype,
            msg.kv_group_size,
        )

    def _import(self, msg: KVHandoff) -> None:
        kv = import_kv(msg, dtype=self.kv_dtype, device=self.device)
        self.engine.add_request(
            msg.request_id, msg.prompt_token_ids, msg.sampling.to_params(), kv=kv, first_token=msg.first_token
        )
        self._reqs[msg.request_id] = _Request(msg.prompt_token_ids, msg.sampling, 1, False)

    def _abort(self, rid: str) -> None:
        self._tombstones[rid] = None
        while len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)
        if rid in self._reqs:
            self.engine.abort(rid)  # its finished "abort" output comes with the next step

    # -- step ---------------------------------------------------------------------------------------------
    def step(self) -> StepOutcome:
        """Run one engine step (if there is work) and turn its outputs into a report and handoffs."""
        deltas, self._early = self._early, []
        start = time.perf_counter()
        outputs = self.engine.step() if self.engine.has_unfinished() else []
        step_s = time.perf_counter() - start
        outcome = StepOutcome(report=None)
        prefill_tokens = decode_tokens = 0
        records: list[HandoffRecord] = []
        for out in outputs:
            req = self._reqs.get(out.request_id)
            if req is None:
                continue
            if req.admitted_here and req.emitted == 0:
                prefill_tokens += out.num_prompt_tokens - out.num_cached_tokens
            else:
                decode_tokens += len(out.new_token_ids)
            deltas.append(self._delta(out, req))
            req.emitted += len(out.new_token_ids)
            if out.finish_reason == "prefill_done":
                outcome.handoffs.append(self._handoff(out, req, records))
            if out.finished:
                del self._reqs[out.request_id]
        if not deltas and not outputs:
            return outcome
        outcome.report = StepReport(
            replica=self.replica,
            deltas=deltas,
            stats=self.stats(),
            step_s=step_s,
            prefill_tokens=prefill_tokens,
            decode_tokens=decode_tokens,
            handoffs=records,
        )
        return outcome

    def _delta(self, out: RequestOutput, req: _Request) -> Delta:
        handing_off = out.finish_reason == "prefill_done"
        return Delta(
            out.request_id,
            req.emitted,
            list(out.new_token_ids),
            out.new_text,
            out.finished and not handing_off,
            None if handing_off else out.finish_reason,
            out.num_prompt_tokens,
        )

    def _handoff(
        self, out: RequestOutput, req: _Request, records: list[HandoffRecord]
    ) -> tuple[Any, KVHandoff]:
        msg, record = export_handoff(
            self.engine,
            request_id=out.request_id,
            prompt_token_ids=req.prompt_token_ids,
            sampling=req.sampling,
            first_token=out.new_token_ids[-1],
            src_replica=self.replica,
            dst_replica=req.handoff_replica,
            kv_dtype=req.kv_dtype,
            group_size=req.kv_group_size,
        )
        records.append(record)
        return req.handoff_to, msg

    def stats(self) -> DeviceStats:
        s = self.engine.stats()
        return DeviceStats(
            replica=self.replica,
            role=self.role,
            running=s.running,
            waiting=s.waiting,
            held=s.held,
            kv_pages_used=s.kv_pages_used,
            kv_pages_total=s.kv_pages_total,
            steps=s.steps,
            num_preemptions=s.num_preemptions,
            max_num_seqs=self.max_num_seqs,
        )
