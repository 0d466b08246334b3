"""Prompt formatting shared by sampling, evals and training.

Three styles, picked by name from :data:`STYLES`:

- ``"plain"``: the spec followed by an instruction to answer with one fenced ```verilog block
  (for base models and raw completion).
- ``"think"``: the same, but the model is asked to reason inside ``<think>…</think>`` first
  (the reward extractor ignores the reasoning and reads the code block after it).
- ``"chat"``: the same text as ``"plain"``, meant to be sent as the user message of a chat
  template; :func:`build_messages` adds :data:`SYSTEM_PROMPT` as the system message.
- ``"raw"``: the spec unchanged, for prompts that carry their own instructions (benchmark prompts).
"""

from __future__ import annotations

from collections.abc import Callable

SYSTEM_PROMPT = (
    "You are an expert digital hardware designer. You write correct, synthesizable Verilog-2005 "
    "that matches the requested module interface exactly, and you keep designs small and fast."
)

_ANSWER_INSTRUCTION = (
    "Write the complete Verilog implementation. Answer with a single ```verilog code block that "
    "contains the whole module (from `module` to `endmodule`) and nothing else after it."
)

_THINK_INSTRUCTION = (
    "First reason step by step inside <think> and </think>. Then write the complete Verilog "
    "implementation as a single ```verilog code block that contains the whole module "
    "(from `module` to `endmodule`)."
)


class PromptError(ValueError):
    """A prompt could not be built; the message names the bad argument and the valid values."""


def _plain(spec: str) -> str:
    return f"{spec.strip()}\n\n{_ANSWER_INSTRUCTION}\n"


def _think(spec: str) -> str:
    return f"{spec.strip()}\n\n{_THINK_INSTRUCTION}\n"


STYLES: dict[str, Callable[[str], str]] = {
    "plain": _plain,
    "think": _think,
    "chat": _plain,
    "raw": lambda spec: spec,
}


def _style_fn(style: str) -> Callable[[str], str]:
    try:
        return STYLES[style]
    except KeyError:
        raise PromptError(f"unknown prompt style {style!r}; valid styles are {sorted(STYLES)}") from None


def build_prompt(spec: str, *, style: str = "plain") -> str:
    """Return the prompt text for a natural-language ``spec`` in the given ``style``.

    Raises:
        PromptError: ``style`` is not one of :data:`STYLES` or ``spec`` is empty.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PromptError("build_prompt got an empty spec: every task needs a non-empty prompt")
    return _style_fn(style)(spec)


def build_messages(spec: str, *, style: str = "chat") -> list[dict[str, str]]:
    """Return chat messages ``[system, user]`` for ``spec``; the user text is ``build_prompt(spec, style=style)``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": build_prompt(spec, style=style)},
    ]


def render_prompt(tokenizer, spec: str, *, style: str = "plain", chat_template: bool | None = None) -> str:
    """Text fed to a model for ``spec``.

    The tokenizer's chat template wraps :func:`build_messages` when ``chat_template`` is true (default:
    only for ``style == "chat"``) and the tokenizer has one; otherwise the :func:`build_prompt` text is
    returned as is, so base models and chat models share one code path.
    """
    use_template = style == "chat" if chat_template is None else chat_template
    if use_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            build_messages(spec, style=style), tokenize=False, add_generation_prompt=True
        )
    return build_prompt(spec, style=style)
