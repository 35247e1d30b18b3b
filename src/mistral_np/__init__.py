"""Mistral 7B from scratch in NumPy: the code the book builds, one concept per module.

    config      ModelArgs, reading config.json / params.json
    safetensors reading and writing the weight files, memory-mapped
    bf16        bfloat16 bits widened to float32 where they are used
    layers      RMSNorm, rotary embeddings, SwiGLU, linear
    attention   the sliding-window mask and grouped-query attention
    cache       the rolling buffer KV cache
    model       the transformer block and the Model (forward, new_cache, prefill)
    checkpoint  load(path) for Hugging Face's and Mistral's layouts, save()
    tokenizer   SentencePiece with streaming-safe decoding
    generate    sampling and the generation loop
"""
from pathlib import Path

from .checkpoint import load, save
from .config import MISTRAL_7B, ModelArgs, read_config
from .generate import generate, generate_ids, sample
from .model import Model, random_model
from .tokenizer import Tokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "pocket-mistral"


def load_tokenizer(model_dir=DEFAULT_MODEL):
    """The tokenizer.model that sits beside a checkpoint's weights."""
    return Tokenizer(Path(model_dir) / "tokenizer.model")


__all__ = ["load", "save", "generate", "generate_ids", "sample", "Model", "random_model", "ModelArgs", "MISTRAL_7B",
           "read_config", "Tokenizer", "load_tokenizer", "DEFAULT_MODEL"]
