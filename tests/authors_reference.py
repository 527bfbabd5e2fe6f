"""The paper authors' metric code, transcribed line for line as an independent reference for the tests.

Source: maxschaffelder/synthetic_data_diversity (Schaffelder & Gatt, arXiv 2511.01490). Each function names
the file it copies; only file reading and printing are left out. Nothing here is used by synthmix itself:
tests compare synthmix's `paper` definitions with these.
"""

from __future__ import annotations

import re

import numpy as np
from nltk.tokenize import sent_tokenize, word_tokenize
from sacrebleu.metrics import BLEU
from scipy.optimize import curve_fit


# ---- exp_1/metric_calculation/lex_div/sacre_bleu.ipynb ----
def remove_markdown(text):
    text = re.sub(r"#+", "", text)
    text = re.sub(r"\*\*", "", text)
    text = re.sub(r"\*", "", text)
    return text.strip()


def is_valid_sentence(sentence):
    sentence = sentence.strip()
    if not sentence:
        return False
    cleaned = remove_markdown(sentence)
    if cleaned.replace(".", "").isdigit():
        return False
    if len(cleaned) < 3:
        return False
    if cleaned.endswith(".") and cleaned[:-1].isdigit():  # noqa: SIM103 - the authors' code, verbatim
        return False
    return True


def calculate_self_bleu(sentences, n_gram=4):
    if len(sentences) < 2:
        return 100.0
    bleu = BLEU(max_ngram_order=n_gram, effective_order=True)
    scores = []
    for i in range(len(sentences)):
        hypothesis = [sentences[i]]
        references = [[s] for j, s in enumerate(sentences) if i != j]
        scores.append(bleu.corpus_score(hypothesis, references).score)
    return sum(scores) / len(scores)


def load_and_clean_responses(responses):
    """The notebook's loader, given the (truthy) response strings of one file in file order."""
    clean_responses = []
    for resp in responses:
        sentences = sent_tokenize(resp)
        valid_sentences = [s for s in sentences if is_valid_sentence(s)]
        clean_sentences = [remove_markdown(s) for s in valid_sentences]
        final_sentences = [s for s in clean_sentences if len(s.split()) >= 4]
        if final_sentences:
            clean_responses.append(final_sentences)
    return clean_responses


def self_bleu_for_file(responses, mode, sample_number, seed):
    """One iteration of `calculate_self_bleu_scores` (seed = 42 + the file's position in its list)."""
    clean_responses = load_and_clean_responses(responses)
    np.random.seed(seed)
    if mode == "aggregated":
        eligible_responses = [r for r in clean_responses if len(r) >= 2]
    else:
        eligible_responses = clean_responses
    if len(eligible_responses) < sample_number:
        response_samples = eligible_responses
    else:
        indices = np.random.choice(len(eligible_responses), size=sample_number, replace=False)
        response_samples = [eligible_responses[i] for i in indices]
    if mode == "individual":
        scores = [calculate_self_bleu(sample, 3) for sample in response_samples if len(sample) >= 2]
        return float(np.mean([100 - s for s in scores]))
    all_sentences = [s for resp in response_samples for s in resp]
    return 100 - calculate_self_bleu(all_sentences, 3)


# ---- exp_1/metric_calculation/lex_div/heaps_law.ipynb ----
def remove_markdown_heaps(sentence):  # the Heaps notebook's version: no strip()
    sentence = re.sub(r"#+", "", sentence)
    sentence = re.sub(r"\*\*", "", sentence)
    sentence = re.sub(r"\*", "", sentence)
    return sentence


def heaps_law(n, K, beta):
    return K * (n**beta)


def calculate_heaps_parameters(responses, sample_step=1000):
    all_data = ""
    for response in responses:  # extract_text_from_jsonl: all_data += data[response_key]
        all_data += response
    text = remove_markdown_heaps(all_data)
    tokens = word_tokenize(text.lower())
    vocab = set()
    N_values, V_values = [], []
    for i in range(sample_step, len(tokens) + 1, sample_step):
        current_tokens = tokens[:i]
        vocab.update(current_tokens)
        N_values.append(i)
        V_values.append(len(vocab))
    params, _ = curve_fit(heaps_law, N_values, V_values)
    return params[0], params[1], N_values, V_values


# ---- exp_1/metric_calculation/sem_div/sbert_embeddings.ipynb ----
def is_valid_semantic_sentence(sentence: str) -> bool:
    sentence = sentence.strip()
    if not sentence:
        return False
    cleaned = sentence.replace("#", "").replace("*", "").strip()
    if cleaned.replace(".", "", 1).isdigit():
        return False
    if len(cleaned) < 3:
        return False
    parts = cleaned.split(".")
    if len(parts) > 0 and parts[0].isdigit() and len(cleaned) < 5:  # noqa: SIM103 - verbatim
        return False
    return True


def semantic_sample(responses, sample_size, seed):
    """The first file of the notebook's loop (np.random.seed(42) once, before the loop)."""
    all_sentences = []
    for response in responses:
        if response:
            sentences = sent_tokenize(response)
            all_sentences.extend([s for s in sentences if is_valid_semantic_sentence(s)])
    np.random.seed(seed)
    if len(all_sentences) >= sample_size:
        sampled_indices = np.random.choice(len(all_sentences), size=sample_size, replace=False)
        return [all_sentences[i] for i in sampled_indices]
    return all_sentences


# ---- exp_1/metric_calculation/sem_div/semantic_diversity.ipynb ----
def semantic_diversity_and_sample(embeddings, n_sample, seed):
    """The mean off-diagonal cosine distance, and the first group's test sample (np.random.seed(42) once)."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine_distances = 1 - unit @ unit.T
    mask = np.ones_like(cosine_distances, dtype=bool)
    np.fill_diagonal(mask, False)
    pairwise_distances = cosine_distances[mask]
    np.random.seed(seed)
    sampled = np.random.choice(pairwise_distances, size=n_sample, replace=False)
    return float(np.mean(pairwise_distances)), sampled


# ---- exp_3/pairwise_rankings/pairwise_ranking.py (helper_functions_pairwise.py) ----
def first_token_probabilities(model, tokenizer, messages, markers=("A", "B")):
    """P(marker) at the first generated token from generate()'s processed scores, as the authors read them
    (temperature 0.7, top_p 0.9, transformers' default top_k 50; their max_length is irrelevant to scores[0])."""
    import torch

    formatted = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer([formatted], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        outputs = model.generate(
            **inputs, max_new_tokens=1, num_return_sequences=1, temperature=0.7, top_p=0.9, top_k=50,
            do_sample=True, output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    first_token_softmax_probs = torch.softmax(outputs.scores[0][0, :].float(), dim=-1)
    ids = {m: tokenizer.encode(m, add_special_tokens=False) for m in markers}
    return {m: float(first_token_softmax_probs[ids[m][0]]) for m in markers}


# ---- exp_1/metric_calculation/perplexity_2/perplexity.py ----
def perplexity_v2(model, tokenizer, messages, response):
    """Every token after the generation prompt in the rendered conversation, end of turn included (no
    rounding here: the authors round each log-probability to 5 decimals in bf16)."""
    import torch
    import torch.nn.functional as F

    full = [*messages, {"role": "assistant", "content": response}]
    input_ids_full = tokenizer.apply_chat_template(
        full, tokenize=True, add_generation_prompt=False, return_dict=False
    )
    prompt_tokens = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    num_prompt_tokens = len(prompt_tokens)
    with torch.no_grad():
        logits = model(torch.tensor([input_ids_full])).logits
    log_probs = F.log_softmax(logits.double(), dim=-1)
    token_logprobs = []
    response_ids = input_ids_full[num_prompt_tokens:]
    for j, token_id in enumerate(response_ids):
        context_index = num_prompt_tokens + j - 1
        token_logprobs.append(log_probs[0, context_index, token_id].item())
    avg_neg_logp = -sum(token_logprobs) / len(token_logprobs)
    return float(np.exp(avg_neg_logp)), len(response_ids)
