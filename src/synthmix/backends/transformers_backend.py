"""The transformers backend: always available, CPU or GPU.

Batched generation with left padding; prompts sorted by length so a batch wastes little padding. Each
batch is seeded from (seed, batch position), so a resumed run regenerates an unfinished batch exactly as an
uninterrupted run would have (on the same hardware and library versions).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm

from synthmix.backends import register
from synthmix.config import Generation
from synthmix.io import DataError, fingerprint
from synthmix.prompts import cut_at_stop

log = logging.getLogger(__name__)


def pick_device() -> tuple[str, Any]:
    """bf16 on a GPU, fp32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    return "cpu", torch.float32


def load_model(model_dir: str, adapter_dir: str | None = None, merge: bool = True) -> tuple[Any, Any]:
    """Load a materialised model (and tokenizer), optionally with a LoRA adapter on top."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = pick_device()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
        if merge:
            model = model.merge_and_unload()
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def chat_token_ids(
    tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of a chat prompt; templates without a system role (Gemma) get it merged into the first turn."""
    from jinja2.exceptions import TemplateError

    try:
        encoded = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
        )
    except TemplateError:
        if not messages or messages[0]["role"] != "system":
            raise
        merged = [
            {"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"},
            *messages[2:],
        ]
        encoded = tokenizer.apply_chat_template(
            merged, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=True
        )
    return list(encoded["input_ids"])


def fits_context(n_prompt_tokens: int, context_length: int | None, max_new_tokens: int) -> bool:
    """Whether a prompt leaves room for `max_new_tokens` in the context (unknown context: assume it does)."""
    return context_length is None or n_prompt_tokens + max_new_tokens <= context_length


def reject_long_prompts(
    lengths: dict[str, int], context_length: int | None, max_new_tokens: int, desc: str = "generate"
) -> None:
    """Raise DataError naming the first prompt (of `lengths`: id -> prompt tokens) that does not fit.

    Used with `generation.prompt_overflow: reject`, before anything is generated.
    """
    long = [(key, n) for key, n in lengths.items() if not fits_context(n, context_length, max_new_tokens)]
    if not long:
        return
    assert context_length is not None  # an unknown context fits every prompt
    key, n = long[0]
    others = f" ({len(long) - 1} more prompt(s) are too long)" if len(long) > 1 else ""
    keep = max(1, context_length - max_new_tokens)
    raise DataError(
        f"{desc}: prompt '{key}' has {n} tokens, but the model's context is {context_length} tokens and "
        f"{max_new_tokens} of them are kept for the answer (max_new_tokens){others}. Nothing was generated. "
        f"Set prompt_overflow: truncate in this stage's generation settings (keeps the last {keep} tokens "
        "of each long prompt), lower max_new_tokens, or shorten the prompts"
    )


@register("transformers")
class TransformersBackend:
    name = "transformers"

    def __init__(self, model_dir: str, adapter_dir: str | None = None):
        self.model, self.tokenizer = load_model(model_dir, adapter_dir)
        self.context_length = getattr(self.model.config, "max_position_embeddings", None)
        self.truncated_prompts = 0

    def encode(self, request: dict[str, Any]) -> list[int]:
        if "messages" in request:
            return chat_token_ids(self.tokenizer, request["messages"])
        return self.tokenizer(request["text"], add_special_tokens=True)["input_ids"]

    def _fit_context(self, ids: list[int], request_id: str, max_new_tokens: int) -> list[int]:
        """Keep the end of a prompt that would not fit the context window; warn and count."""
        if fits_context(len(ids), self.context_length, max_new_tokens):
            return ids
        assert self.context_length is not None
        keep = max(1, self.context_length - max_new_tokens)
        self.truncated_prompts += 1
        warnings.warn(
            f"prompt '{request_id}' has {len(ids)} tokens; kept the last {keep} so that "
            f"{max_new_tokens} new tokens fit the {self.context_length}-token context",
            stacklevel=2,
        )
        return ids[-keep:]

    def generate(
        self,
        requests: list[dict[str, Any]],
        settings: Generation,
        skip: set[str] | frozenset[str] = frozenset(),
        desc: str = "generate",
    ) -> Iterator[dict[str, Any]]:
        """Yield one result per request not in `skip`, in batch order."""
        import torch

        encoded = [self.encode(r) for r in requests]
        if settings.prompt_overflow == "reject":  # before the first batch, so no finished answer is lost
            lengths = {r["id"]: len(ids) for r, ids in zip(requests, encoded, strict=True)}
            reject_long_prompts(lengths, self.context_length, settings.max_new_tokens, desc)
        encoded = [
            self._fit_context(ids, r["id"], settings.max_new_tokens)
            for r, ids in zip(requests, encoded, strict=True)
        ]
        order = sorted(range(len(requests)), key=lambda i: (-len(encoded[i]), requests[i]["id"]))
        batches = [order[i : i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
        pad_id = self.tokenizer.pad_token_id
        todo = sum(1 for r in requests if r["id"] not in skip)
        with tqdm(total=todo, desc=desc, unit="prompt") as bar:
            for position, batch in enumerate(batches):
                if all(requests[i]["id"] in skip for i in batch):
                    continue
                width = max(len(encoded[i]) for i in batch)
                input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids = encoded[i]
                    input_ids[row, width - len(ids) :] = torch.tensor(ids)
                    attention[row, width - len(ids) :] = 1
                stop = requests[batch[0]].get("stop")
                torch.manual_seed(int(fingerprint(settings.seed, position), 16) % (2**31))
                sample = settings.temperature > 0
                with torch.inference_mode():
                    output = self.model.generate(
                        input_ids=input_ids.to(self.model.device),
                        attention_mask=attention.to(self.model.device),
                        max_new_tokens=settings.max_new_tokens,
                        do_sample=sample,
                        temperature=settings.temperature if sample else None,
                        top_p=settings.top_p if sample else None,
                        top_k=0 if sample else None,  # the paper samples with top_p only
                        pad_token_id=pad_id,
                        stop_strings=stop,
                        tokenizer=self.tokenizer if stop else None,
                    )
                new_tokens = output[:, width:].cpu()
                for row, i in enumerate(batch):
                    request = requests[i]
                    if request["id"] in skip:
                        continue
                    tokens = [t for t in new_tokens[row].tolist() if t != pad_id]
                    eos = self.tokenizer.eos_token_id
                    ended = bool(tokens) and tokens[-1] == eos or len(tokens) < settings.max_new_tokens
                    text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                    text, stopped = cut_at_stop(text, request.get("stop"))
                    yield {
                        "id": request["id"],
                        "response": text.strip(),
                        "n_prompt_tokens": len(encoded[i]),
                        "n_tokens": len(tokens),
                        "finish_reason": "stop" if (ended or stopped) else "length",
                    }
                    bar.update(1)
