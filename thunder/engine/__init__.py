"""thunder.engine: paged-KV LLM engine (block manager, scheduler, sampler, detokenizer, model runner)."""

from thunder.engine.batching import BatchingEngine, EngineStats
from thunder.engine.block_manager import BlockManager
from thunder.engine.config import ConfigError, DType, EngineConfig, SamplingParams, resolve_dtype
from thunder.engine.detokenizer import IncrementalDetokenizer
from thunder.engine.llm_engine import LLMEngine
from thunder.engine.model_runner import ModelRunner
from thunder.engine.sampler import Sampler, filter_logits
from thunder.engine.scheduler import ScheduledBatch, Scheduler
from thunder.engine.sequence import Completion, FinishReason, RequestOutput, Sequence, SequenceStatus
from thunder.engine.sim_engine import SimEngine, SimEngineConfig, SimKV

__all__ = [
    "BatchingEngine",
    "BlockManager",
    "Completion",
    "ConfigError",
    "DType",
    "EngineConfig",
    "EngineStats",
    "FinishReason",
    "IncrementalDetokenizer",
    "LLMEngine",
    "ModelRunner",
    "RequestOutput",
    "Sampler",
    "SamplingParams",
    "ScheduledBatch",
    "Scheduler",
    "Sequence",
    "SimEngine",
    "SimEngineConfig",
    "SimKV",
    "SequenceStatus",
    "filter_logits",
    "resolve_dtype",
]
