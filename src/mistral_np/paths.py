"""Where things are: the repository, its fetched data, its figures and the book's own model."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"                        # fetched by tools/fetch_data.py, never committed
FIGURES_DIR = REPO_ROOT / "figures"
DEFAULT_MODEL = REPO_ROOT / "models" / "pocket-mistral"
MISTRAL_TOKENIZER = DATA_DIR / "mistral-tokenizer" / "tokenizer.model"
SMOLLM2_GGUF = DATA_DIR / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
