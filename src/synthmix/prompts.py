"""How a prompt is put to a model: chat messages with a system prompt, or a few-shot completion text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from synthmix.config import FewShotExample, Source

# Prompt scaffolding for base (non-chat) models, written for this project. These are formatting
# examples only; they are never stored or labelled as data.
DEFAULT_FEWSHOT = (
    FewShotExample(
        instruction="Name three primary colours.",
        response="The three primary colours of paint are red, yellow and blue.",
    ),
    FewShotExample(
        instruction="Explain in one or two sentences what a thermometer measures.",
        response="A thermometer measures temperature, that is, how hot or cold something is. "
        "Most show it in degrees Celsius or Fahrenheit.",
    ),
)
FEWSHOT_STOP = ("\nInstruction:", "\n\nInstruction")


def chat_messages(prompt: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*messages, {"role": "user", "content": prompt}]


def fewshot_text(prompt: str, examples: tuple[FewShotExample, ...] | list[FewShotExample]) -> str:
    shots = "".join(f"Instruction: {e.instruction}\nResponse: {e.response}\n\n" for e in examples)
    return f"{shots}Instruction: {prompt}\nResponse:"


def source_request(item_id: str, prompt: str, source: Source) -> dict[str, Any]:
    """A generation request for one source: `messages` for chat models, `text` for few-shot base models."""
    if source.prompt_format == "chat":
        return {"id": item_id, "messages": chat_messages(prompt, source.system_prompt)}
    examples = source.fewshot_examples or DEFAULT_FEWSHOT
    return {"id": item_id, "text": fewshot_text(prompt, examples), "stop": list(FEWSHOT_STOP)}


SUMMARY_INSTRUCTION = "Summarize the following text."  # few-shot base sources: the task in the instruction


def summary_request(item_id: str, article: str, source: Source, system_prompt: str) -> dict[str, Any]:
    """A summarisation request: a chat source gets `system_prompt` (the paper's summarisation prompt, in
    place of the source's own) and the article as the user turn; a few-shot source gets the article after
    SUMMARY_INSTRUCTION."""
    if source.prompt_format == "chat":
        return {"id": item_id, "messages": chat_messages(article, system_prompt)}
    return source_request(item_id, f"{SUMMARY_INSTRUCTION}\n\n{article}", source)


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut `text` at the first stop string; say whether one was found."""
    cuts = [text.index(s) for s in stop or () if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def chat_token_ids(
    tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of a chat prompt in the tokenizer's chat template; templates without a system role (Gemma)
    get the system prompt merged into the first user turn. Every backend that tokenizes locally (transformers,
    vllm) builds prompts with this, so all of them see the same tokens."""
    from jinja2.exceptions import TemplateError

    try:
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
        )
    except TemplateError:
        if not messages or messages[0]["role"] != "system":
            raise
        encoded = tokenizer.apply_chat_template(
            merge_system_prompt(messages),
            add_generation_prompt=add_generation_prompt,
            tokenize=True,
            return_dict=True,
        )
    return list(encoded["input_ids"])


def merge_system_prompt(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The system prompt merged into the first user turn, for chat templates without a system role."""
    if not messages or messages[0]["role"] != "system":
        return messages
    if len(messages) < 2:
        return [{"role": "user", "content": messages[0]["content"]}]
    first = {"role": messages[1]["role"], "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}
    return [first, *messages[2:]]


def request_token_ids(tokenizer: Any, request: dict[str, Any]) -> list[int]:
    """The prompt tokens of a generation request: the chat template for `messages`, the plain tokenizer (with
    its special tokens) for few-shot `text`."""
    if "messages" in request:
        return chat_token_ids(tokenizer, request["messages"])
    return list(tokenizer(request["text"], add_special_tokens=True)["input_ids"])


def answer_forms(options: Sequence[str]) -> list[str]:
    """The token strings a judge's answer is read from: each option bare and with a leading space ("A", " A").

    A judge may start its answer with "A" or with " A" (byte-level BPE writes the latter "ĠA", SentencePiece
    "▁A"); both mean the same verdict, so backends are asked for both."""
    return [form for option in options for form in (option, " " + option)]
