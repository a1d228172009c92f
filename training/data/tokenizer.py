"""Byte-level BPE tokenizer trained with `tokenizers`, saved as `tokenizer.json` with the run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOS = "<|endoftext|>"
FILENAME = "tokenizer.json"


class BPETokenizer:
    """Byte-level BPE: any text round-trips; `<|endoftext|>` separates documents."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        eos = tokenizer.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"tokenizer has no {EOS} token")
        self._tok = tokenizer
        self.eos_id = eos

    @classmethod
    def train(
        cls, texts: Iterable[str], *, vocab_size: int, min_frequency: int = 2
    ) -> BPETokenizer:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=[EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @classmethod
    def load(cls, directory: Path) -> BPETokenizer:
        return cls(Tokenizer.from_file(str(directory / FILENAME)))

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / FILENAME
        tmp = path.with_name(FILENAME + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    def to_json(self) -> str:
        return self._tok.to_str(pretty=True)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts))]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)
