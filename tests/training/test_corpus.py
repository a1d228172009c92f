import json
from pathlib import Path

import pytest

from training.data import BPETokenizer, DataConfig, Dataset, UserCorpus, build_dataset
from training.data.build import collect_documents, split_documents
from training.data.mathgen import math_document

from .conftest import small_data_config


def test_builtin_domains_with_disjoint_heldout(dataset: Dataset, data_dir: Path) -> None:
    assert dataset.domains == ("code", "math", "prose")
    for domain, docs in collect_documents(small_data_config(data_dir)).items():
        parts = split_documents(domain, docs, 0.1)
        train, held = {n for n, _ in parts["train"]}, {n for n, _ in parts["heldout"]}
        assert train and held and not train & held
        assert len(train) + len(held) == len(docs) == len({n for n, _ in docs})
        assert dataset.manifest["documents"][domain] == {"train": len(train), "heldout": len(held)}
        assert len(dataset.train[domain]) > len(dataset.heldout[domain]) > 0
    code = dataset.tokenizer.decode(dataset.train["code"][:2000].tolist())
    assert "def " in code or "import " in code
    assert " = " in dataset.tokenizer.decode(dataset.train["math"][:200].tolist())


def test_math_documents_are_pure_functions_of_seed() -> None:
    assert math_document(0, 5) == math_document(0, 5)
    assert math_document(0, 5) != math_document(1, 5) != math_document(0, 6)
    for line in math_document(3, 1).splitlines():
        if line.count("+") == 1 and "=" in line and "(" not in line and "?" not in line:
            left, right = line.split(" = ")
            a, b = left.split(" + ")
            assert int(a) + int(b) == int(right)


def test_tokenizer_round_trip_and_save_load(dataset: Dataset, tmp_path: Path) -> None:
    tok = dataset.tokenizer
    text = "def f(x):\n    return x ** 2  # ünïcode ✓\n\n12 + 30 = 42"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert 0 < len(ids) < len(text.encode())
    assert tok.vocab_size == 512
    tok.save(tmp_path)
    loaded = BPETokenizer.load(tmp_path)
    assert loaded.encode(text) == ids and loaded.eos_id == tok.eos_id
    assert loaded.encode_batch([text, "abc"]) == tok.encode_batch([text, "abc"])


def test_cached_build_is_reused(dataset: Dataset, data_dir: Path) -> None:
    manifest = (data_dir / "manifest.json").stat().st_mtime_ns
    again = build_dataset(small_data_config(data_dir))
    assert again.digest == dataset.digest
    assert (data_dir / "manifest.json").stat().st_mtime_ns == manifest


def test_user_corpora_from_text_and_jsonl(tmp_path: Path, dataset: Dataset) -> None:
    texts = [
        f"Story {i}: the quick brown fox number {i} jumps over the lazy dog." for i in range(40)
    ]
    for i, text in enumerate(texts[:20]):
        (tmp_path / f"doc{i}.txt").write_text(text)
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in texts[20:]) + "\n\n")
    tok_dir = tmp_path / "tok"
    dataset.tokenizer.save(tok_dir)
    config = DataConfig(
        cache_dir=tmp_path / "cache",
        builtin=(),
        tokenizer_path=tok_dir,
        user_corpora=(
            UserCorpus(domain="stories", paths=tuple(sorted(tmp_path.glob("doc*.txt")))),
            UserCorpus(domain="more", paths=(jsonl,)),
        ),
    )
    built = build_dataset(config)
    assert built.domains == ("more", "stories")
    assert (
        built.manifest["documents"]["more"]["train"]
        + built.manifest["documents"]["more"]["heldout"]
        == 20
    )
    stream = built.train["stories"].tolist() + built.heldout["stories"].tolist()
    assert stream.count(built.tokenizer.eos_id) == 20
    assert "quick brown fox" in built.tokenizer.decode(stream)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="text"):
        build_dataset(
            DataConfig(
                cache_dir=tmp_path / "c2",
                builtin=(),
                user_corpora=(UserCorpus(domain="bad", paths=(bad, jsonl)),),
            )
        )
    with pytest.raises(ValueError, match="domain name"):
        UserCorpus(domain="Bad Name", paths=(jsonl,))


def test_changed_config_rebuilds_in_place(tmp_path: Path) -> None:
    config = DataConfig(cache_dir=tmp_path, builtin=("math",), vocab_size=300, math_documents=40)
    first = build_dataset(config)
    config.math_seed = 1
    second = build_dataset(config)
    assert second.digest != first.digest
    assert build_dataset(config).digest == second.digest
    assert json.loads((tmp_path / "manifest.json").read_text())["digest"] == second.digest
