"""The prompt the model answers: the game, every rule of the sandbox policy, one tiny example.

The rules are the policy's own one-line explanations (``Policy.describe()``), so the prompt
and the checker can never disagree. Measured on SmolLM2-135M-Instruct, one
short example of the format multiplies the share of programs that play by about seven, so
the default template has one; ``rules_only``, ``example_only`` (no rules: a far shorter
prompt) and ``minimal`` exist to measure what each part is worth.

Two more parts exist because of what the untrained model did with the default prompt
(``benchmarks/prompt_study.py``, figures in ``benchmarks/results/README.md``): its programs do
not check whether a move changes the board, so every one that played ended ``stuck``, and the
full rule list is 1,137 of the default prompt's 1,582 tokens.

- ``compact_rules``: the same policy in a few lines (:func:`compact_rules`), each line kept
  only while the rules it stands for are active, and every claim tested against the checker.
- ``moves_example``: an example whose strategy plays the first move, in a fixed order, that
  changes the board (the game's ``GameSpec.moves_example``), so a copy plays to a real game end. Its order
  opens with two opposite moves, a weak plan: reordering it to keep a corner earns more, so
  copying it is not the best a sample can do.

Templates ``compact`` (compact rules, the game's example: 829 prompt tokens), ``moves`` (compact
rules, the board-changing example), ``moves_only`` (no rules) and ``moves_full_rules`` (every rule)
combine them. Measured at the cpu preset's 128 new tokens, ``compact`` does as well as ``default``
at half the prompt, and the moves example does not help yet: with its fence it takes 117 of the
128 tokens, and this model wraps its code in prose.

Two more levers, for a model that cannot find the first rung on its own:

- the game's API (``api``, ``api_only``): the functions the game declares (``GameSpec.api``, for 2048
  ``legal_moves`` and ``slide``) listed from that declaration, and an example written against them
  (``GameSpec.api_example``). Programs of these templates are scored with the API switched on
  (:func:`uses_api`); every other template keeps the bare task, the harder benchmark.
- an answer prefill (:data:`PREFILLS`): the prompt ends inside the model's answer, e.g. with the code
  fence and ``def strategy(board):``. It is prompt text: never sampled, never in the loss, the same in
  every backend; the reward reads prefill + completion. :func:`build_messages` gives it as a final
  assistant message, which is how a TRL user gets the same (``continue_final_message=True``, and a
  reward function that prepends the prefill to each completion).
"""
from __future__ import annotations

from typing import Any, Mapping

from envs.registry import DEFAULT_GAME

__all__ = ["SYSTEM_PROMPT", "TEMPLATES", "PREFILLS", "TEMPLATE_PREFILLS",
           "COMPACT_OMITTED", "build_messages", "build_prompt", "compact_rules", "prompt_text", "template_examples",
           "answer_prefill", "api_text", "uses_api"]

SYSTEM_PROMPT = ("You are an expert Python programmer. You answer with exactly one Python code block "
                 "and nothing else.")

_RULES_HEADER = ("Your program is checked before it runs; a program that breaks any of these rules "
                 "is rejected and scores nothing:")
_EXAMPLE_HEADER = ("Example of the answer format (a weak strategy: write a better one that keeps "
                   "every rule above):")
# The example headers of the moves and api templates: the game's own words about its example (GameSpec's
# moves_example_note / api_example_note), then the same request for every game.
_EXAMPLE_NOTE_HEADER = "{note}: write a better one{rules}."
_PLAIN_EXAMPLE_HEADER = "Example of the answer format. The example is a weak plan: write a better one{rules}."
_ANSWER = ("Answer with one ```python code block that defines `def strategy(board):` and returns "
           "one of {actions}. No explanation.")

_API_HEADER = "Functions of the game your program may call (exact and fast; they are the only way into the game):"

# Template name -> which parts the user message has.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "default": ("game", "rules", "example", "answer"),
    "rules_only": ("game", "rules", "answer"),
    "example_only": ("game", "example", "answer"),
    "minimal": ("game", "answer"),
    "compact": ("game", "compact_rules", "example", "answer"),
    "moves": ("game", "compact_rules", "moves_example", "answer"),
    "moves_only": ("game", "moves_example", "answer"),
    "moves_full_rules": ("game", "rules", "moves_example", "answer"),
    "api": ("game", "compact_rules", "api", "api_example", "answer"),
    "api_only": ("game", "api", "api_example", "answer"),
}

# Named openings of the model's answer (an *answer prefill*): the prompt ends with this text inside the
# assistant turn, so the model continues it. It is part of the prompt: never sampled, never in the loss or
# the log-prob ratio; the reward reads prefill + completion. "auto" picks the template's entry of
# TEMPLATE_PREFILLS.
PREFILLS: dict[str, str] = {
    "none": "",
    "fence": "```python\n",
    "signature": "```python\ndef strategy(board):\n",
    "indent": "```python\ndef strategy(board):\n    ",
    "moves": "```python\ndef strategy(board):\n    moves = legal_moves(board)\n",
    "return": "```python\ndef strategy(board):\n    moves = legal_moves(board)\n    return ",
}

# Template -> the prefill "auto" gives it, chosen from the prompt study (benchmarks/prompt_study.py, 128
# samples of the untrained SmolLM2-135M a condition, stop at the fence on; docs/learning.md, "Rungs for a small model"):
# the prefill with the most samples whose games all end honestly, then the most that play, then the most
# compliant. compact: the fence (7% played, against 3% without a prefill; no prefill ends a game honestly);
# api: none (6% end every game honestly; "indent" 3%; the signature alone 0%, and the model then writes no
# body at all; "moves" and "return" raise compliance to 52-59% but nothing plays: the model continues them
# with nonsense). Templates not named here open nothing.
TEMPLATE_PREFILLS: dict[str, str] = {"compact": "fence", "api": "none"}

# Prefills that call the game API: only templates that show the API may use them.
_API_PREFILLS = frozenset({"moves", "return"})

# The compact rule text: lines of (lead, ((rule id, phrase), ...), tail). A phrase is shown only
# while its rule is active in the policy (a policy that allows loops is not told "no loops"), a
# line only while one of its phrases is; "{...}" fields are filled from the policy. Every phrase
# names something the checker rejects under that rule id (tests/test_prompts.py checks each).
_COMPACT_LINES: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    ("Plain and deterministic: ", (
        ("no-import", "no `import`"),
        ("no-file-access", "no files, OS or network (`open`, `os`, `sys`)"),
        ("no-randomness", "no `random`, `time` or `hash()`"),
        ("no-interaction", "no `input` or `exit`"),
    ), "; the same board must always give the same move."),
    ("", (
        ("no-loop", "no `for` or `while` loops"),
        ("no-comprehension", "no comprehensions or generator expressions"),
        ("no-recursion", "no recursion"),
        ("no-iter", "no `iter()` or `next()`"),
    ), (": go over rows and cells with `map`, `filter`, `zip`, `any`, `all`, `sum`, `max`, `min`, "
        "`sorted` and `lambda`.")),
    ("", (
        ("builtin-not-allowed", "only these builtins: {functions}, and exceptions such as `Exception`"),
    ), "."),
    ("", (
        ("unknown-attribute", ("only methods of lists, dicts, sets, strings and numbers (`append`, `pop`, "
                               "`index`, `count`, `sort`, `copy`, `get`, `items`, `join`, `split`, ...); "
                               "no other attributes such as `board.size`")),
    ), "."),
    ("", (
        ("no-underscore", "no attribute starting with `_` and no name like `__x` or `_x_`"),
        ("no-dynamic-code", "no `eval`, `exec`, `getattr` or `globals`, and `type` only as `type(x)`"),
        ("no-base-exception", "no `BaseException` or `SystemExit`"),
    ), "."),
    ("Keep nothing between moves: ", (
        ("no-global", "no `global` or `nonlocal`"),
        ("no-mutable-default", "no default argument that is changed"),
        ("no-attribute-assign", "no assigning attributes"),
    ), "."),
    ("", (
        ("module-level-code", "{module_level}"),
        ("no-class", "no `class`"),
        ("no-decorator", "no decorators"),
        ("no-async", "no `async`"),
        ("no-generator", "no `yield`"),
        ("syntax-not-allowed", "no `with`"),
        ("annotation-not-type", "annotations only name types"),
    ), "."),
    ("Keep it small: ", (
        ("too-long", "under {max_source_bytes} bytes"),
        ("no-big-number", "no huge numbers"),
        ("no-big-sequence", "no huge sequences"),
    ), "."),
)

COMPACT_OMITTED: dict[str, str] = {
    # Active rules the compact text does not name, and why leaving them out tells no lie: the
    # checker still enforces them, they just concern code no honest strategy writes.
    "no-strategy": "the answer line itself asks for `def strategy(board):`",
    "internal-attribute": "frame, code and traceback attributes: only an escape attempt reaches them",
    "no-format-attribute": "attribute fields in .format strings: only an escape attempt writes them",
    "no-match-class": "class patterns in match statements: an escape detail",
    "too-deep": "200 levels of nesting: no honest program comes near",
    "pow-by-name": "pow through an alias: only a program hiding a huge power does that",
    "too-complex": "a budget of static analysis steps: honest programs under the size limit use a small part of it",
}
"""Rules the ``compact`` text leaves out on purpose (rule id -> why); every other active rule is named."""


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


def _module_level(policy: Any) -> str:
    what = ["`def strategy(board):`"]
    if getattr(policy, "allow_module_helpers", True):
        what.append("helper functions")
    if getattr(policy, "allow_module_constants", True):
        what.append("constants (numbers, strings, or tuples of those)")
    return "at module level only " + (", ".join(what[:-1]) + " and " + what[-1] if len(what) > 1 else what[0])


def compact_rules(policy: Any = None) -> str:
    """The policy's rules in a few lines (about a quarter of ``describe()``), for the ``compact`` templates.

    Only rules the policy enforces are named; the ones left out are :data:`COMPACT_OMITTED`. A policy
    without a rule registry (no ``active_rules``) can only be described in full: ``describe()`` is used.
    """
    policy = policy if policy is not None else _default_policy()
    if not hasattr(policy, "active_rules"):
        return policy.describe().strip()
    active = {r.id for r in policy.active_rules()}
    # Builtin functions only: the exception classes are summed up as "exceptions such as `Exception`".
    functions = sorted(n for n in policy.allowed_builtins if n[:1].islower())
    fields = {"functions": ", ".join(functions), "module_level": _module_level(policy),
              "max_source_bytes": getattr(policy, "max_source_bytes", "")}
    lines = []
    for lead, phrases, tail in _COMPACT_LINES:
        shown = [phrase.format(**fields) for rule_id, phrase in phrases if rule_id in active]
        if shown:
            text = lead + ", ".join(shown) + tail
            lines.append(f"- {text[0].upper()}{text[1:]}")
    return "\n".join(lines)


def _example_header(note: str, rules: str) -> str:
    """The line above a moves or api example: the game's note on it, or the plain header."""
    note = note.strip()
    return _EXAMPLE_NOTE_HEADER.format(note=note, rules=rules) if note else _PLAIN_EXAMPLE_HEADER.format(rules=rules)


def _moves_example(game: str, template: str) -> str:
    import envs

    example = envs.get(game).moves_example
    if not example.strip():
        raise ValueError(f"prompt template {template!r} needs a board-changing example and game {game!r} declares "
                         f"none (GameSpec.moves_example); use the default template")
    return example


def _api_example(game: str, template: str) -> str:
    import envs

    spec = envs.get(game)
    if not spec.api:
        raise ValueError(f"prompt template {template!r} lists the game's functions and game {game!r} declares "
                         f"none; use a template without the API, such as compact")
    if not spec.api_example.strip():
        raise ValueError(f"prompt template {template!r} needs an example written against the API and game {game!r} "
                         f"declares none (GameSpec.api_example); use the compact template")
    return spec.api_example


def uses_api(template: str) -> bool:
    """True when the template shows the game's API: its programs are scored with the API switched on."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    return "api" in TEMPLATES[template]


def api_text(game: str = DEFAULT_GAME) -> str:
    """The game's API as prompt lines, from its declaration: one ``- `signature`: doc`` line per function."""
    import envs

    return "\n".join(f"- `{f.signature}`: {f.doc}" for f in envs.get(game).api)


def answer_prefill(template: str = "default", prefill: str = "auto") -> str:
    """The text that opens the model's answer for ``template``: :data:`PREFILLS` by name ("auto": the template's)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    name = TEMPLATE_PREFILLS.get(template, "none") if prefill == "auto" else prefill
    if name not in PREFILLS:
        raise ValueError(f"unknown answer prefill {prefill!r}; choose auto or one of {', '.join(PREFILLS)}")
    if name in _API_PREFILLS and not uses_api(template):
        raise ValueError(f"answer prefill {name!r} calls the game's API, which template {template!r} does not show; "
                         f"use an api template or another prefill")
    return PREFILLS[name]


def template_examples(game: str = DEFAULT_GAME, template: str = "default") -> list[str]:
    """The example programs the ``template``'s prompt shows for ``game`` (none, or one)."""
    import envs

    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    parts = TEMPLATES[template]
    out = []
    if "example" in parts and envs.get(game).example.strip():
        out.append(envs.get(game).example.strip() + "\n")
    if "moves_example" in parts:
        out.append(_moves_example(game, template))
    if "api_example" in parts:
        out.append(_api_example(game, template))
    return out


def prompt_text(game: str = DEFAULT_GAME, policy: Any = None, *, template: str = "default",
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
    policy = policy if policy is not None else _default_policy()
    blocks: list[str] = []
    if "game" in parts:
        blocks.append(_game_text(spec, options or {}))
    if "rules" in parts:
        blocks.append(f"{_RULES_HEADER}\n{policy.describe().strip()}")
    if "compact_rules" in parts:
        blocks.append(f"{_RULES_HEADER}\n{compact_rules(policy)}")
    if "example" in parts and spec.example.strip():
        blocks.append(f"{_EXAMPLE_HEADER}\n```python\n{spec.example.strip()}\n```")
    if "moves_example" in parts:
        # Only a prompt that shows rules may point back at them.
        rules = " that keeps every rule above" if {"rules", "compact_rules"} & set(parts) else ""
        blocks.append(f"{_example_header(spec.moves_example_note, rules)}\n```python\n"
                      f"{_moves_example(game, template).strip()}\n```")
    if "api" in parts:
        _api_example(game, template)  # a clear error for a game without an API
        blocks.append(f"{_API_HEADER}\n{api_text(game)}")
    if "api_example" in parts:
        rules = " that keeps every rule above" if {"rules", "compact_rules"} & set(parts) else ""
        blocks.append(f"{_example_header(spec.api_example_note, rules)}\n```python\n"
                      f"{_api_example(game, template).strip()}\n```")
    if "answer" in parts:
        actions = ", ".join(f'"{a}"' for a in spec.actions)
        blocks.append(_ANSWER.format(actions=actions))
    return "\n\n".join(blocks)


def build_messages(game: str = DEFAULT_GAME, policy: Any = None, *, template: str = "default",
                   options: Mapping[str, Any] | None = None, prefill: str = "") -> list[dict[str, str]]:
    """The prompt as chat messages: a short system message and the user message.

    A non-empty ``prefill`` (the text itself, see :func:`answer_prefill`) is a final assistant message the
    model continues: TRL's ``continue_final_message``, and what :func:`build_prompt` renders.
    """
    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt_text(game, policy, template=template, options=options)}]
    if prefill:
        messages.append({"role": "assistant", "content": prefill})
    return messages


def build_prompt(game: str = DEFAULT_GAME, tokenizer: Any = None, policy: Any = None, *, template: str = "default",
                 options: Mapping[str, Any] | None = None, prefill: str = "") -> str | list[dict[str, str]]:
    """The prompt for ``game``: chat messages without a tokenizer, else the text the model reads.

    With a tokenizer that has a chat template, the template is applied with the assistant turn
    opened and ``prefill`` (the answer's opening text) written into it verbatim; without one, the
    system and user text are joined as plain text and the prefill follows.
    """
    if tokenizer is None:
        return build_messages(game, policy, template=template, options=options, prefill=prefill)
    messages = build_messages(game, policy, template=template, options=options)
    if getattr(tokenizer, "chat_template", None):
        # The prefill is appended to the rendered text rather than passed as a final assistant message: chat
        # templates differ in what they add around a continued message, and this way the model reads exactly it.
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefill
    return "\n\n".join(m["content"] for m in messages) + "\n\n" + prefill
