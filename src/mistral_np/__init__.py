"""Mistral 7B from scratch in NumPy: the code the book builds, one concept per module.

    paths        where the repository, its data, figures and the pocket model are
    config       ModelArgs, reading config.json / params.json
    weights      the weight layout: names, shapes, the nested dict the model takes
    safetensors  reading and writing the weight files, memory-mapped
    bf16         bfloat16 bits widened to float32 where they are used (and the blocked product)
    int8         int8 rows with a scale each, as a weight type; quantize: writing such checkpoints
    quants       GGML's block types (Q8_0, Q4_0, Q4_1, ...) as weights; kquants: the K-quants;
                 kmatmul: K-quant products without widening whole blocks
    layers       RMSNorm, rotary embeddings, SwiGLU, linear (and the weight-type protocol)
    attention    the sliding-window mask and grouped-query attention
    cache        the rolling buffer KV cache
    model        the transformer block and the Model (forward, new_cache, prefill)
    checkpoint   load(path) for Hugging Face's and Mistral's layouts (and GGUF), save()
    gguf         reading and writing llama.cpp's GGUF files: metadata, tensors, a Model
    tokenizer    SentencePiece with streaming-safe decoding; gguf_tokenizer: BPE from a GGUF file
    sampling     greedy, temperature, top-k, top-p
    generate     the generation loop
    speculative  several tokens per pass: prompt-lookup drafts checked in one pass (lookahead=k)
    costs        parameters, bytes, FLOPs and KV cache: from a config, and counted on arrays
    bench        speed and memory of a checkpoint, measured
    backward     the hand-written gradients and the batched training forward pass
    evaluate     losses and bits per character
    train        training the pocket model: optimiser, data, checkpoints, the loop
    corpus       the fetched Shakespeare text and its split
    figures      drawing the book's figures (one module per chapter)
    book         the chapters' helper: show a function's source
"""
from pathlib import Path

from .checkpoint import load, save
from .config import MISTRAL_7B, ModelArgs, read_config
from .generate import generate, generate_ids, sample
from .model import Model, random_model
from .gguf import find_gguf, is_gguf, read_metadata
from .gguf_tokenizer import tokenizer_from_gguf
from .paths import DEFAULT_MODEL, REPO_ROOT, SMOLLM2_GGUF
from .tokenizer import Tokenizer


def load_tokenizer(path=DEFAULT_MODEL):
    """The tokenizer of a checkpoint: tokenizer.model beside its weights, or a GGUF file's own."""
    if is_gguf(path):
        file = find_gguf(path)
        return tokenizer_from_gguf(read_metadata(file), file)
    return Tokenizer(Path(path) / "tokenizer.model")


__all__ = ["load", "save", "generate", "generate_ids", "sample", "Model", "random_model", "ModelArgs", "MISTRAL_7B",
           "read_config", "Tokenizer", "load_tokenizer", "DEFAULT_MODEL",
           "REPO_ROOT", "SMOLLM2_GGUF"]
