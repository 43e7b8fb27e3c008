"""Teacher encoders: a further bi-encoder's cosine joins the distillation target."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.train import parse_teacher_encoder
from semrank.train._data import QueryGroup
from semrank.train._mining import MinedCollection, TeacherEmbeddings


def _unit(rows: list[list[float]]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return (array / np.linalg.norm(array, axis=1, keepdims=True)).astype(np.float16)


def _collection() -> MinedCollection:
    groups = [QueryGroup(query=f"q{i}", positive_ids=[i], negative_ids=[]) for i in range(3)]
    return MinedCollection(
        name="toy",
        weight=1.0,
        passages=["p0", "p1", "p2"],
        groups=groups,
        query_embeddings=_unit([[1, 0], [0, 1], [1, 1]]),
        passage_embeddings=_unit([[1, 0], [0, 1], [1, -1]]),
    )


def test_teacher_scores_add_each_extra_encoders_weighted_cosine() -> None:
    mined = _collection()
    alone = mined.teacher_scores(0, [0, 1, 2])
    extra_queries = _unit([[0, 1], [1, 0], [1, 2]])
    extra_passages = _unit([[0, 1], [1, 1], [1, 0]])
    mined.extra_teachers.append(
        TeacherEmbeddings(
            weight=2.0, query_embeddings=extra_queries, passage_embeddings=extra_passages
        )
    )
    combined = mined.teacher_scores(0, [0, 1, 2])
    extra = extra_passages.astype(np.float32) @ extra_queries[0].astype(np.float32)
    np.testing.assert_allclose(combined, alone + 2.0 * extra, rtol=1e-6)
    assert alone[2] > alone[1] and combined[1] > combined[2]  # the extra teacher reorders


def test_keeping_groups_keeps_every_encoders_query_rows_aligned() -> None:
    mined = _collection()
    extra_queries = _unit([[0, 1], [1, 0], [1, 2]])
    mined.extra_teachers.append(
        TeacherEmbeddings(
            weight=1.0, query_embeddings=extra_queries, passage_embeddings=_unit([[1, 0]] * 3)
        )
    )
    mined.keep_groups([0, 2])
    assert [g.query for g in mined.groups] == ["q0", "q2"]
    assert mined.query_embeddings.shape[0] == 2
    np.testing.assert_array_equal(mined.extra_teachers[0].query_embeddings, extra_queries[[0, 2]])


def test_teacher_encoder_argument_is_checked(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert parse_teacher_encoder(str(tmp_path)) == (tmp_path, 1.0)
    assert parse_teacher_encoder(f"{tmp_path}:0.5") == (tmp_path, 0.5)
    with pytest.raises(InvalidInputError, match="must be a number"):
        parse_teacher_encoder(f"{tmp_path}:heavy")
    with pytest.raises(InvalidInputError, match=r"no config\.json"):
        parse_teacher_encoder(str(tmp_path / "missing"))


def test_a_teacher_encoder_at_a_windows_drive_path_keeps_its_drive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`C:\\models\\teacher` was split at its drive's ':' ("the weight after ':' must be a
    number, e.g. C:1.0"). Here the Windows paths are folders of the current one, so real."""
    monkeypatch.chdir(tmp_path)
    for folder in (Path("C:\\models\\teacher"), Path("d:/models/teacher")):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    assert parse_teacher_encoder("C:\\models\\teacher") == (Path("C:\\models\\teacher"), 1.0)
    assert parse_teacher_encoder("C:\\models\\teacher:0.5") == (Path("C:\\models\\teacher"), 0.5)
    assert parse_teacher_encoder("d:/models/teacher:2") == (Path("d:/models/teacher"), 2.0)
    with pytest.raises(InvalidInputError, match=re.escape("e.g. C:\\models\\teacher:1.0")):
        parse_teacher_encoder("C:\\models\\teacher:heavy")


def _second_encoder(base: Path, target: Path) -> Path:
    """The tiny base with other random weights: a teacher that ranks differently."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(base))
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    model.save_pretrained(str(target))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(target))
    return target


@pytest.mark.slow
def test_training_data_carry_the_teacher_encoders_cosine(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    from semrank.train._loop import prepare_data
    from semrank.train._mining import embed_texts
    from tiny_models import tiny_train_config

    teacher = _second_encoder(tiny_base, tmp_path / "teacher")
    config = tiny_train_config(tiny_base, pairs_file, tmp_path / "run")
    plain, _, plain_val = prepare_data(config)
    config = dataclasses.replace(config, teacher_encoders=((teacher, 0.5),))
    mined, _, teacher_val = prepare_data(config)
    collection = mined[0]
    assert teacher_val is not None and plain_val is not None
    # After the validation split, group 3's teacher scores are still its own query's.
    group = collection.groups[3]
    ids = [*group.positive_ids, *group.negative_ids[:3]]
    model, tokenizer = (
        AutoModel.from_pretrained(str(teacher)),
        AutoTokenizer.from_pretrained(str(teacher)),
    )
    query = embed_texts(model, tokenizer, [group.query], max_length=64)[0].astype(np.float32)
    docs = embed_texts(model, tokenizer, [collection.passages[i] for i in ids], max_length=128)
    expected = plain[0].teacher_scores(3, ids) + 0.5 * (docs.astype(np.float32) @ query)
    np.testing.assert_allclose(collection.teacher_scores(3, ids), expected, atol=2e-3)
    assert list((tmp_path / "run" / "cache").glob("pairs-teacher-*/passages.npy"))


@pytest.mark.slow
def test_a_teacher_that_pools_its_cls_token_is_embedded_that_way(
    tiny_base: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    import json

    import torch
    from transformers import AutoModel, AutoTokenizer

    from semrank.train._mining import embed_texts, encoder_pooling

    teacher = _second_encoder(tiny_base, tmp_path / "bge-like")
    (teacher / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_cls_token": True}
    (teacher / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    assert encoder_pooling(teacher) == "cls" and encoder_pooling(tiny_base) == "mean"
    model, tokenizer = (
        AutoModel.from_pretrained(str(teacher)),
        AutoTokenizer.from_pretrained(str(teacher)),
    )
    texts = ["fleas bite dogs", "the capital of france is paris and it is large"]
    got = embed_texts(model, tokenizer, texts, max_length=64, pooling="cls").astype(np.float32)
    with torch.inference_mode():  # reference: the first token's state, unit length (fp32)
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        first = model(**batch).last_hidden_state[:, 0]
        want = torch.nn.functional.normalize(first, dim=-1).numpy()
    np.testing.assert_allclose(got, want, atol=0.03)  # bf16 autocast, fp16 storage
    mean = embed_texts(model, tokenizer, texts, max_length=64).astype(np.float32)
    assert not np.allclose(mean, want, atol=0.03)
