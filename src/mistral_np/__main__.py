"""Command line: python -m mistral_np generate "To be, or not to be" [--model DIR] ..."""
import argparse
import importlib
import importlib.util
import os
import re
import sys
import time

from . import DEFAULT_MODEL, generate, load, load_tokenizer
from .generate import check_sampling


def chat_text(model_path, user_message):
    """The prompt a chat model expects for one user message, from its GGUF file's chat template."""
    from .gguf import find_gguf, is_gguf, read_metadata
    from .gguf_tokenizer import chat_prompt
    if not is_gguf(model_path):
        raise ValueError(f"--chat needs a model with a chat template (a GGUF file such as SmolLM2's); "
                         f"{model_path} has none")
    return chat_prompt(read_metadata(find_gguf(model_path)), [{"role": "user", "content": user_message}])


class FlagError(Exception):
    """A flag's value that is not a number. Not a ValueError, so that argparse lets it through
    instead of printing its usage: main prints it as one line, like every other error."""


def example(kind, default, help_text):
    """A value to suggest for a flag of type kind (int or float): its default, else the first
    number its help gives after "default:" or "e.g.", else 4096 (a size, a window, a seed) or 0.5."""
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return default
    found = re.search(r"(?:default:|e\.g\.)\s*(-?\d[\d.e+-]*\d|\d)", help_text or "")
    return found.group(1) if found else 4096 if kind is int else 0.5


class Number:
    """The type of a flag of type int or float: the number, or a one-line FlagError that names
    the flag and the fix ('1e8' for a whole number is written out: 100000000)."""

    def __init__(self, action):
        self.kind, self.flag = action.type, max(action.option_strings, key=len, default=action.dest)
        self.example = example(action.type, action.default, action.help)

    def __call__(self, text):
        try:
            return self.kind(text)
        except ValueError:
            pass
        if self.kind is float:
            raise FlagError(f"{self.flag}: {text!r} is not a number; give e.g. {self.flag} {self.example}")
        try:
            whole = float(text)
        except ValueError:
            whole = None
        if whole is not None and whole.is_integer():
            raise FlagError(f"{self.flag}: {text!r} is not written in digits; give {self.flag} {int(whole)}")
        raise FlagError(f"{self.flag}: {text!r} is not a whole number; give e.g. {self.flag} {self.example}")


class Parser(argparse.ArgumentParser):
    """argparse, with every flag of type int or float (in every command) typed by Number."""

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.type in (int, float):
            action.type = Number(action)
        return action


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help gives every option's default, unless its help already says it or the option is required."""
    def _get_help_string(self, action):
        if action.required or "default" in (action.help or "").lower():
            return action.help
        return super()._get_help_string(action)


def read_prompt(a):
    """The prompt: the argument itself, stdin for "-", or --prompt-file's text; one final newline
    of stdin or a file is dropped (files end with one), the text must be UTF-8."""
    if a.prompt_file is not None:
        if a.prompt is not None:
            raise ValueError("give the prompt as an argument or with --prompt-file, not both")
        where = f"--prompt-file {a.prompt_file}"
        if not os.path.exists(a.prompt_file):
            raise FileNotFoundError(f"{where}: no such file")
        if not os.path.isfile(a.prompt_file):              # a folder, or a FIFO that could block forever
            raise ValueError(f"{where}: not a regular file")
        with open(a.prompt_file, "rb") as f:
            data = f.read()
    elif a.prompt == "-":
        where, data = "the prompt on stdin", getattr(sys.stdin, "buffer", sys.stdin).read()
    elif a.prompt is None:
        raise ValueError("no prompt: give it as an argument, - to read it from stdin, or --prompt-file PATH")
    else:
        return a.prompt
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text (byte {e.start} is {data[e.start]:#04x})") from None
    return text.removesuffix("\n").removesuffix("\r") if text.endswith("\n") else text


def cmd_generate(a):
    check_sampling(a.temperature, a.top_k, a.top_p, a.max_new_tokens)     # before minutes of loading
    a.prompt = read_prompt(a)
    if a.chunk_size is not None and a.chunk_size < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {a.chunk_size}")
    prompt = chat_text(a.model, a.prompt) if a.chat else a.prompt    # a model without a template: now
    model = load(a.model)
    tokenizer = load_tokenizer(a.model)
    t0, n = time.perf_counter(), 0
    pieces = generate(model, tokenizer, prompt, a.max_new_tokens, a.temperature, a.top_k,
                      a.top_p, a.seed, a.chunk_size, lookahead=a.lookahead)
    sys.stdout.write(a.prompt + ("\n" if a.chat else ""))            # only once the arguments are checked
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
        n += 1
    dt = time.perf_counter() - t0
    sys.stdout.write("\n")                                                  # output ends its line
    sys.stdout.flush()
    print(f"[{n} pieces in {dt:.1f} s]", file=sys.stderr)


def parser():
    """The command line: generate here, the other commands from their modules' add_cli."""
    p = Parser(prog="python -m mistral_np", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="generate text from a prompt")
    g.add_argument("prompt", nargs="?", help='the text to continue; "-" reads it from stdin (default: none, '
                   "then --prompt-file gives it)")
    g.add_argument("--prompt-file", metavar="PATH", help="read the prompt from this UTF-8 text file (one final "
                   "newline dropped; default: none, the prompt argument gives it)")
    g.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="checkpoint folder, or a .gguf file (default: the pocket model)")
    g.add_argument("--chat", action="store_true",
                   help="send the prompt as a user message through the model's chat template (GGUF)")
    g.add_argument("--max-new-tokens", type=int, default=200, help="stop after this many tokens (or at EOS)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest tokens; 0 = all")
    g.add_argument("--top-p", type=float, default=1.0, help="sample from the likeliest tokens holding this "
                   "much probability; 1 = all")
    g.add_argument("--seed", type=int, default=None, help="sampling seed (default: a fresh one each run)")
    g.add_argument("--chunk-size", type=int, default=None, metavar="T",
                   help="pre-fill the prompt T tokens at a time (default: the largest chunk whose "
                        "attention scores fit in 256 MiB; any size gives the same result)")
    g.add_argument("--lookahead", type=int, default=0, metavar="K",
                   help="draft up to K tokens by prompt lookup and check them in one pass "
                        "(speculative decoding; same greedy output). Default: 0, one token per pass")
    g.set_defaults(run=cmd_generate)
    # Other commands live beside the code they run: each such module has add_cli(subparsers).
    for name in ("train", "bench", "quantize"):
        if importlib.util.find_spec(f"mistral_np.{name}"):
            importlib.import_module(f"mistral_np.{name}").add_cli(sub)
    for command in sub.choices.values():                # every command's --help shows the defaults
        command.formatter_class = Help
    return p


def main(argv=None):
    try:
        a = parser().parse_args(argv)
        a.run(a)
    except (FileNotFoundError, ValueError, KeyError, FlagError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:               # the reader went away (`| head`): nothing left to say
        try:                              # and nothing for Python to complain about at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141                        # as a shell reports a SIGPIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller --chunk-size, a quantized model, or close other "
              "programs", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
