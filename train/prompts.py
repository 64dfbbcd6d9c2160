"""The prompt the model answers: the game, every rule of the sandbox policy, one tiny example.

The rules are the policy's own one-line explanations (``Policy.describe()``), so the prompt
and the checker can never disagree. Measured on SmolLM2-135M-Instruct (see DESIGN.md), one
short example of the format multiplies the share of programs that play by about seven, so
the default template has one; ``rules_only``, ``example_only`` (no rules: a far shorter
prompt) and ``minimal`` exist to measure what each part is worth.
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["SYSTEM_PROMPT", "TEMPLATES", "build_messages", "build_prompt", "prompt_text"]

SYSTEM_PROMPT = ("You are an expert Python programmer. You answer with exactly one Python code block "
                 "and nothing else.")

_RULES_HEADER = ("Your program is checked before it runs; a program that breaks any of these rules "
                 "is rejected and scores nothing:")
_EXAMPLE_HEADER = ("Example of the answer format (a weak strategy: write a better one that keeps "
                   "every rule above):")
_ANSWER = ("Answer with one ```python code block that defines `def strategy(board):` and returns "
           "one of {actions}. No explanation.")

# Template name -> which parts the user message has.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "default": ("game", "rules", "example", "answer"),
    "rules_only": ("game", "rules", "answer"),
    "example_only": ("game", "example", "answer"),
    "minimal": ("game", "answer"),
}


def _game_text(spec: Any, options: Mapping[str, Any]) -> str:
    values = {**dict(spec.options), **dict(options)}
    try:
        return spec.prompt.format(**values).strip()
    except (KeyError, IndexError, ValueError):
        # A prompt with literal braces and no option fields is used as written.
        return spec.prompt.strip()


def _default_policy() -> Any:
    try:
        from sandbox import DEFAULT_POLICY
    except ImportError:
        from sandbox.policy import DEFAULT_POLICY
    return DEFAULT_POLICY


def prompt_text(game: str = "2048", policy: Any = None, *, template: str = "default",
                options: Mapping[str, Any] | None = None) -> str:
    """The user message: game description, the policy's rules, one example, the answer format."""
    import envs

    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    spec = envs.get(game)
    unknown = set(options or {}) - set(spec.options)
    if unknown:
        raise ValueError(f"game {game!r} has no option {sorted(unknown)[0]!r}; known options: "
                         f"{sorted(spec.options) or 'none'}")
    parts = TEMPLATES[template]
    blocks: list[str] = []
    if "game" in parts:
        blocks.append(_game_text(spec, options or {}))
    if "rules" in parts:
        rules = (policy if policy is not None else _default_policy()).describe().strip()
        blocks.append(f"{_RULES_HEADER}\n{rules}")
    if "example" in parts and spec.example.strip():
        blocks.append(f"{_EXAMPLE_HEADER}\n```python\n{spec.example.strip()}\n```")
    if "answer" in parts:
        actions = ", ".join(f'"{a}"' for a in spec.actions)
        blocks.append(_ANSWER.format(actions=actions))
    return "\n\n".join(blocks)


def build_messages(game: str = "2048", policy: Any = None, *, template: str = "default",
                   options: Mapping[str, Any] | None = None) -> list[dict[str, str]]:
    """The prompt as chat messages: a short system message and the user message."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt_text(game, policy, template=template, options=options)}]


def build_prompt(game: str = "2048", tokenizer: Any = None, policy: Any = None, *, template: str = "default",
                 options: Mapping[str, Any] | None = None) -> str | list[dict[str, str]]:
    """The prompt for ``game``: chat messages without a tokenizer, else the text the model reads.

    With a tokenizer that has a chat template, the template is applied with the assistant turn
    opened; without one, the system and user text are joined as plain text.
    """
    messages = build_messages(game, policy, template=template, options=options)
    if tokenizer is None:
        return messages
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages) + "\n\n"
