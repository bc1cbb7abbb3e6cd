"""Seeded offline workloads of real English text, shared by the benchmarks.

The text is prose taken from this machine's Python standard library: the docstrings of well-known modules and
of their public classes and functions (written by people, for people), filtered down to paragraphs that read
like English rather than code. Prompts are cut from that text on token boundaries with the model's own
tokenizer, so every system under test receives the *same token ids* (the driver writes them to a JSON file that
each runner reads; the runners never re-tokenize).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# Modules whose documentation is mostly prose. Order matters only for determinism.
CORPUS_MODULES: tuple[str, ...] = (
    "argparse", "asyncio", "bisect", "calendar", "collections", "concurrent.futures", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum",
    "fractions", "ftplib", "functools", "gettext", "heapq", "http.client", "http.server", "imaplib", "inspect",
    "ipaddress", "json", "locale", "logging", "mailbox", "multiprocessing", "numbers", "optparse", "pathlib",
    "pickle", "poplib", "queue", "random", "re", "sched", "selectors", "shelve", "shlex", "shutil", "smtplib",
    "socket", "socketserver", "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "traceback", "turtle", "typing", "unittest", "urllib.parse",
    "urllib.request", "uuid", "warnings", "weakref", "xml.dom.minidom", "zipfile",
)  # fmt: skip

_MIN_WORDS = 20
_CODE_MARKS = re.compile(r">>>|\.\.\.|[{}\[\]=<>|`_*#@$\\]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """A fixed set of requests: prompt token ids, their text, and how many tokens each must generate."""

    name: str
    seed: int
    max_new_tokens: int
    prompt_token_ids: tuple[tuple[int, ...], ...]
    prompt_texts: tuple[str, ...]

    @property
    def num_requests(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompt_token_ids)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Workload:
        raw = json.loads(path.read_text())
        raw["prompt_token_ids"] = tuple(tuple(p) for p in raw["prompt_token_ids"])
        raw["prompt_texts"] = tuple(raw["prompt_texts"])
        return cls(**raw)


def _looks_like_prose(paragraph: str) -> bool:
    words = paragraph.split()
    if len(words) < _MIN_WORDS:
        return False
    # NOTE: docstrings mix prose with examples and signatures; a few code marks per paragraph is the line.
    if len(_CODE_MARKS.findall(paragraph)) > len(words) // 15:
        return False
    letters = sum(ch.isalpha() or ch.isspace() for ch in paragraph)
    return letters / len(paragraph) > 0.9 and paragraph[0].isupper()


def _docstrings(module_name: str) -> list[str]:
    # NOTE: some modules print on import (e.g. `this`): keep stdout clean for runners that emit JSON. Deprecated
    # aliases (typing.re, ...) warn when their docs are read: the walk touches every public name.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(module_name)
        docs = [inspect.getdoc(module) or ""]
        for name, member in sorted(vars(module).items()):
            if name.startswith("_") or getattr(member, "__module__", None) != module.__name__:
                continue
            if inspect.isclass(member) or inspect.isfunction(member):
                docs.append(inspect.getdoc(member) or "")
    return docs


def english_paragraphs(modules: Sequence[str] = CORPUS_MODULES) -> list[str]:
    """Prose paragraphs (≥ 20 words, one line each, in module order, duplicates dropped)."""
    seen: set[str] = set()
    paragraphs: list[str] = []
    for module_name in modules:
        for doc in _docstrings(module_name):
            for block in re.split(r"\n\s*\n", doc):
                text = " ".join(block.split())
                if text not in seen and _looks_like_prose(text):
                    seen.add(text)
                    paragraphs.append(text)
    return paragraphs


def build_offline_workload(
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    *,
    num_requests: int = 64,
    min_prompt_tokens: int = 16,
    max_prompt_tokens: int = 64,
    max_new_tokens: int = 64,
    seed: int = 0,
) -> Workload:
    """Cut `num_requests` prompts of uniform length in [min, max] tokens, each from a different paragraph.

    `encode` must not add special tokens (the prompts are plain text continuations).
    """
    if not 1 <= min_prompt_tokens <= max_prompt_tokens:
        raise ValueError(
            f"min_prompt_tokens={min_prompt_tokens}, max_prompt_tokens={max_prompt_tokens}: "
            "need 1 <= min <= max; try 16 and 64"
        )
    paragraphs = english_paragraphs()
    if num_requests > len(paragraphs):
        raise ValueError(
            f"num_requests={num_requests}: the corpus has only {len(paragraphs)} paragraphs; "
            "ask for fewer requests or add modules to CORPUS_MODULES"
        )
    rng = np.random.default_rng(seed)
    starts = rng.choice(len(paragraphs), size=num_requests, replace=False)
    lengths = rng.integers(min_prompt_tokens, max_prompt_tokens + 1, size=num_requests)
    prompts: list[tuple[int, ...]] = []
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        ids: list[int] = []
        index = start
        while len(ids) < length:  # a short paragraph continues into the next one, as a reader would
            ids += encode(paragraphs[index % len(paragraphs)] + "\n\n")
            index += 1
        prompts.append(tuple(ids[:length]))
    return Workload(
        name=f"english-{num_requests}x{max_new_tokens}",
        seed=seed,
        max_new_tokens=max_new_tokens,
        prompt_token_ids=tuple(prompts),
        prompt_texts=tuple(decode(list(p)) for p in prompts),
    )
