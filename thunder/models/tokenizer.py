"""`Tokenizer`: ``tokenizer.json`` through the `tokenizers` library plus the HF chat template (jinja2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.decoders import DecodeStream

from thunder.models.errors import ModelNotFoundError, UnsupportedModelError

__all__ = ["Tokenizer"]


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # HF "AddedToken" form
        return value.get("content")
    return value


class Tokenizer:
    """Encode/decode text and render chat prompts the way HF `PreTrainedTokenizerFast` does."""

    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise ModelNotFoundError(f"{path} not found: thunder needs a fast tokenizer (tokenizer.json)")
        self.hf = HFTokenizer.from_file(str(path))
        cfg_path = model_dir / "tokenizer_config.json"
        cfg: dict[str, Any] = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        self.chat_template: str | None = cfg.get("chat_template")
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self.add_bos_token = bool(cfg.get("add_bos_token", False))
        self.bos_token_id = self.hf.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_token_id = self.hf.token_to_id(self.eos_token) if self.eos_token else None
        self._template = None
        if self.chat_template:
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise_exception
            self._template = env.from_string(self.chat_template)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        ids = self.hf.encode(text, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self.add_bos_token and self.bos_token_id is not None:
            if not ids or ids[0] != self.bos_token_id:
                ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode_stream(self, *, skip_special_tokens: bool = True) -> DecodeStream:
        """A fresh incremental decoder; feed it with ``stream.step(tokenizer.hf, token_id)``."""
        return DecodeStream(skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self,
        messages: list[dict[str, str]],
        *,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
    ) -> str | list[int]:
        """Render ``messages`` ([{"role", "content"}]) with the model's template; token ids if ``tokenize``."""
        if self._template is None:
            raise UnsupportedModelError(
                "this tokenizer has no chat_template in tokenizer_config.json; send a raw prompt instead"
            )
        text = self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text
