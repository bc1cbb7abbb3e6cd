"""`thunder generate`: offline completion from a local engine, streamed to the terminal."""

from __future__ import annotations

import sys

import typer

from thunder.cli import app


@app.command("generate")
def generate(
    prompt: str = typer.Argument(..., help="The prompt (sent as a chat user message unless --raw)."),
    model: str = typer.Option(
        "smollm2-135m-instruct", help="Embedded model name, HF directory or .gguf file."
    ),
    raw: bool = typer.Option(False, "--raw", help="Send PROMPT as-is, without the chat template."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Most tokens to generate."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy; > 0 samples."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (1 = off)."),
    top_k: int = typer.Option(0, "--top-k", help="Sample among the k most likely tokens (0 = off)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed for sampling."),
    dtype: str = typer.Option("auto", help="auto | bfloat16 | float16 | float32."),
    device: str = typer.Option("cpu", help="cpu | cuda."),
    threads: int | None = typer.Option(None, help="CPU threads (default: all cores)."),
) -> None:
    """Generate a completion for PROMPT offline and stream it to stdout."""
    from thunder.engine import ConfigError, EngineConfig, LLMEngine, SamplingParams
    from thunder.models import ModelError

    try:
        params = SamplingParams(
            max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed
        )
        engine = LLMEngine(
            EngineConfig(model=model, dtype=dtype, device=device, num_threads=threads)  # type: ignore[arg-type]
        )
        tok = engine.tokenizer
        if raw:
            ids = tok.encode(prompt)
        else:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True)  # type: ignore[assignment]
        engine.add_request("cli", list(ids), params)
    except (ConfigError, ModelError, ValueError) as exc:
        typer.echo(f"thunder generate: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    while engine.has_unfinished():
        for out in engine.step():
            sys.stdout.write(out.new_text)
            sys.stdout.flush()
    sys.stdout.write("\n")
