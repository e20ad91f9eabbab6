"""How long a training row is, in tokens, as the trainer will see it.

One rule for ``cra curate-data`` (which drops rows over ``--max-tokens``) and ``cra train``
(which drops rows over the recipe's ``max_length``): prompt and answer through the
tokenizer's chat template when it has one, counted without added special tokens.
"""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]


def token_lengths(tokenizer: Any, prompts: list[Messages], answers: list[Messages]) -> list[int]:
    """Tokens of each prompt + answer (the chat template when the tokenizer has one)."""
    texts = []
    for p, a in zip(prompts, answers, strict=True):
        if getattr(tokenizer, "chat_template", None):
            texts.append(tokenizer.apply_chat_template(p + a, tokenize=False))
        else:
            texts.append("\n".join(m.get("content", "") for m in p + a))
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
