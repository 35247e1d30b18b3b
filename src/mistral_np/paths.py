"""Where things are: the repository, its fetched data, its figures and the book's own model."""
from pathlib import Path
import os
import stat

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"                        # fetched by tools/fetch_data.py, never committed
FIGURES_DIR = REPO_ROOT / "figures"
DEFAULT_MODEL = REPO_ROOT / "models" / "pocket-mistral"
MISTRAL_TOKENIZER = DATA_DIR / "mistral-tokenizer" / "tokenizer.model"
SMOLLM2_GGUF = DATA_DIR / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def require_regular_file(path, what="file"):
    """Refuse an existing path that is not a regular file (or a link to one): reading a FIFO or a
    device would wait forever, and a folder cannot be read as a file."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device or socket")
        raise ValueError(f"{path}: the {what} is {kind}, not a regular file; put the real file there")
    return Path(path)


def shown(path):
    """A path as a reader should see it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
