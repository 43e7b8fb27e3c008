"""What `semrank train` refuses so that a run never loses earlier work or trains on nothing:
resuming with other settings or without a checkpoint, data too small for its lists or for a
validation split, report files that do not read, numbers that would poison the loss."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from semrank.errors import DataFormatError, InvalidInputError
from semrank.train import DataSpec, TrainConfig, train
from tiny_models import tiny_train_config


def _config(base: Path, data: Path, output: Path, **overrides: Any) -> TrainConfig:
    settings: dict[str, Any] = {"max_steps": 2, "eval_every": 2, **overrides}
    return tiny_train_config(base, data, output, **settings)  # type: ignore[no-any-return]


def _digest(folder: Path) -> str:
    return hashlib.md5((folder / "model.safetensors").read_bytes()).hexdigest()


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_resume_keeps_the_runs_settings_and_never_restarts_over_its_best(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    best = train(_config(tiny_base, pairs_file, output))
    record = (output / "config.json").read_text()
    before = _digest(best)
    changed = _config(tiny_base, pairs_file, output, max_steps=4, architecture="gated")
    with pytest.raises(InvalidInputError, match=r"architecture: 'cross' -> 'gated'"):
        train(changed, resume=True)
    assert (output / "config.json").read_text() == record  # the record still matches
    # A longer budget is what resuming is for.
    train(_config(tiny_base, pairs_file, output, max_steps=4), resume=True)
    (output / "checkpoint.pt").unlink()
    kept = _digest(best)
    with pytest.raises(InvalidInputError, match=r"no checkpoint\.pt to continue from"):
        train(_config(tiny_base, pairs_file, output, max_steps=6), resume=True)
    assert _digest(best) == kept  # best/ was not replaced by a run from step 0
    assert before  # (the first run's best model was written)


@pytest.mark.parametrize("resume", [False, True])
def test_a_models_folder_is_not_taken_for_a_run_to_resume(
    tiny_base: Path, pairs_file: Path, tmp_path: Path, resume: bool
) -> None:
    """`--resume` "into" a model (as the refusal without it advised) replaced its config.json
    with the run's record: the model no longer loaded."""
    import shutil

    model = tmp_path / "mymodel"
    shutil.copytree(tiny_base, model)
    before = (model / "config.json").read_text()
    with pytest.raises(InvalidInputError, match=r"holds a model .* --init-from .*mymodel"):
        train(_config(tiny_base, pairs_file, model), resume=resume)
    assert (model / "config.json").read_text() == before


def test_one_query_is_too_few_to_hold_out_validation(tiny_base: Path, tmp_path: Path) -> None:
    data = _write_jsonl(
        tmp_path / "one.jsonl",
        [{"query": "a", "positive": "alpha text", "negatives": ["b1", "b2", "b3", "b4"]}],
    )
    output = tmp_path / "run"
    with pytest.raises(InvalidInputError, match=r"1 training query is too few .*--val-queries 0"):
        train(_config(tiny_base, data, output))
    assert not (output / "config.json").exists()  # nothing recorded for a refused run


def test_a_pool_too_small_for_the_lists_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    # Four queries with one passage between them: every list would be that passage alone.
    rows = [{"query": f"query {i}", "positive": "same passage"} for i in range(4)]
    data = _write_jsonl(tmp_path / "same.jsonl", rows)
    with pytest.raises(InvalidInputError, match=r"has 0 passages besides its positives, fewer "
                       r"than --negatives 3"):  # fmt: skip
        train(_config(tiny_base, data, tmp_path / "run", val_queries=0))


def test_report_files_are_read_before_training_with_the_eval_loaders(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    missing = _config(
        tiny_base,
        pairs_file,
        tmp_path / "a",
        report_tasks=(("dl", tmp_path / "no.json", tmp_path / "q.txt"),),
    )
    with pytest.raises(DataFormatError, match=r"no\.json"):
        train(missing)
    assert not (tmp_path / "a" / "cache").exists()  # refused before any data was mined
    run = tmp_path / "run.json"
    hits = [{"qid": "q1", "docid": "d1", "rank": 1, "score": 1.0, "content": "comet facts"}]
    run.write_text(json.dumps([{"query": "comet", "hits": hits}]))
    beir_qrels = tmp_path / "qrels.tsv"
    beir_qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    from semrank.train._evaluate import load_trec_rerank_task

    task = load_trec_rerank_task(run, beir_qrels, name="dl")  # BEIR qrels read, not ignored
    assert task.qrels == {"q1": {"d1": 1}} and task.candidates == {"q1": [("d1", "comet facts")]}
    other = tmp_path / "other.tsv"
    other.write_text("q9\td1\t1\n")
    with pytest.raises(DataFormatError, match=r"no query of .*run\.json is judged"):
        load_trec_rerank_task(run, other, name="dl")


def test_report_queries_judged_only_below_zero_are_left_out_as_eval_leaves_them(
    tmp_path: Path,
) -> None:
    # trec_eval's C code crashed the training process (a segfault at the first evaluation,
    # after mining) on a query whose only judgment is junk (-2, as TREC Web qrels hold).
    from semrank.train._evaluate import load_trec_rerank_task, ndcg_at_10

    hits = [
        {"qid": qid, "docid": doc, "rank": 1, "score": 1.0, "content": f"{doc} facts"}
        for qid, doc in (("q1", "d1"), ("q2", "d2"))
    ]
    run = tmp_path / "run.json"
    run.write_text(
        json.dumps([{"query": "comet", "hits": hits[:1]}, {"query": "x", "hits": hits[1:]}])
    )
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 2\nq2 0 d2 -2\n")
    task = load_trec_rerank_task(run, qrels, name="web")
    assert task.qrels == {"q1": {"d1": 2}} and list(task.candidates) == ["q1"]
    assert ndcg_at_10(task.qrels, {"q1": {"d1": 1.0}}) == 1.0
    junk_only = tmp_path / "junk.txt"
    junk_only.write_text("q1 0 d1 -2\n")
    with pytest.raises(DataFormatError, match=r"--report web: .*junk\.txt: .*no judgment of 0"):
        load_trec_rerank_task(run, junk_only, name="web")


def test_beir_training_qrels_with_a_bad_line_are_named(tmp_path: Path) -> None:
    from semrank.train import load_collection

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    _write_jsonl(beir / "corpus.jsonl", [{"_id": "d1", "text": "body"}])
    _write_jsonl(beir / "queries.jsonl", [{"_id": "q1", "text": "query"}])
    (beir / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq7\td4\t1.0\n"
    )
    with pytest.raises(DataFormatError, match=r"train\.tsv:3"):
        load_collection(DataSpec(path=beir))


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ({"threads": -1}, r"threads=-1 \(--threads\)"),
        ({"distill_weight": float("nan")}, r"distill_weight=nan \(--distill-weight\)"),
        ({"label_weight": -0.5}, r"label_weight=-0.5"),
        ({"layer_lr_decay": -1.0}, r"layer_lr_decay=-1.0 \(--layer-lr-decay\)"),
        ({"eval_every": -1}, r"eval_every=-1 \(--eval-every\)"),
        ({"val_queries": -3}, r"val_queries=-3"),
        ({"teacher_model_weight": float("inf")}, r"teacher_model_weight=inf"),
        # 0 validated (and saved a checkpoint) after every step
        ({"eval_minutes": 0}, r"eval_minutes=0 \(--eval-minutes\)"),
        ({"eval_minutes": float("nan")}, r"eval_minutes=nan"),
        # Accepted, then a traceback after mining (numpy's generator takes no negative seed),
        # an out-of-memory kill, and a segfault in OpenBLAS.
        ({"seed": -1}, r"seed=-1 \(--seed\): must be a whole number from 0 to"),
        ({"batch_queries": 100_000}, r"batch_queries=100000 \(--batch-queries\): at most 1024"),
        ({"threads": 100_000}, r"threads=100000 \(--threads\): at most 1024"),
    ],
)
def test_numbers_that_would_poison_or_flip_training_are_refused(
    tmp_path: Path, option: dict[str, Any], named: str
) -> None:
    data = (DataSpec(path=tmp_path / "pairs.jsonl", name="mine"),)
    with pytest.raises(InvalidInputError, match=named):
        TrainConfig(base=tmp_path, data=data, output=tmp_path / "run", max_steps=1, **option)


@pytest.mark.slow
def test_a_diverging_run_stops_and_keeps_what_it_saved(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    config = dataclasses.replace(_config(tiny_base, pairs_file, output, max_steps=30), lr=1e30)
    with pytest.raises(InvalidInputError, match=r"the loss became (nan|inf) at step \d+") as err:
        train(config)
    # No best/ or checkpoint had been saved: the message named them as kept.
    assert "kept as saved" not in str(err.value) and "lower --lr in a new --output" in str(
        err.value
    )
    assert not (output / "last").exists()  # no export of the diverged weights


@pytest.mark.slow
def test_resume_refuses_data_that_changed_and_a_damaged_record(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """A cut file crashed the resume with an IndexError; a grown one resumed on another split;
    an edited passage reused the old embeddings; a half-written config.json was a traceback."""
    data = tmp_path / "pairs.jsonl"
    data.write_text(pairs_file.read_text())
    output = tmp_path / "run"
    train(_config(tiny_base, data, output))
    assert json.loads((output / "config.json").read_text())["data_digest"]
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:-10]) + "\n")
    caches = sorted((output / "cache").iterdir())
    with pytest.raises(InvalidInputError, match="the training data differ"):
        train(_config(tiny_base, data, output, max_steps=4), resume=True)
    assert sorted((output / "cache").iterdir()) == caches  # refused before mining again
    data.write_text("\n".join(lines).replace("facts", "details") + "\n")
    with pytest.raises(InvalidInputError, match="the training data differ"):
        train(_config(tiny_base, data, output, max_steps=4), resume=True)
    (output / "config.json").write_text('{"base": ')
    with pytest.raises(InvalidInputError, match=r"config\.json is damaged") as damaged:
        train(_config(tiny_base, data, output, max_steps=4), resume=True)
    # A model --init-from takes (it refuses checkpoint.pt, which this named).
    assert f"its model {output / 'best'}, where there is one, can seed" in str(damaged.value)


@pytest.mark.parametrize("max_length", [100_000, 4])
def test_a_max_length_the_base_cannot_read_is_refused_before_mining(
    tiny_base: Path, pairs_file: Path, tmp_path: Path, max_length: int
) -> None:
    output = tmp_path / "run"
    with pytest.raises(InvalidInputError, match=f"--max-length {max_length}"):
        train(_config(tiny_base, pairs_file, output, max_length=max_length))
    assert not (output / "cache").exists()  # nothing was mined


def test_a_cls_pooling_base_is_mined_with_cls_pooling(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """Mining and the teacher used mean pooling whatever the base said: with a bge-style base
    the negatives and the distillation target came from a model that is not the base."""
    import shutil

    import numpy as np

    from semrank.train._loop import prepare_data
    from semrank.train._mining import embed_texts
    from semrank.train._model import load_encoder

    base = tmp_path / "cls-base"
    shutil.copytree(tiny_base, base)
    kinds = "sentence_transformers.models"
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": f"{kinds}.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": f"{kinds}.Pooling"},
    ]
    (base / "modules.json").write_text(json.dumps(modules))
    (base / "1_Pooling").mkdir()
    (base / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_cls_token": True,
                    "pooling_mode_mean_tokens": False})
    )  # fmt: skip
    config = _config(base, pairs_file, tmp_path / "run", val_queries=0)
    config.output.mkdir()
    (mined, *_), _, _ = prepare_data(config)
    encoder, tokenizer = load_encoder(base)
    queries = [g.query for g in mined.groups]
    cls = embed_texts(encoder, tokenizer, queries, max_length=64, pooling="cls")
    mean = embed_texts(encoder, tokenizer, queries, max_length=64, pooling="mean")
    np.testing.assert_allclose(mined.query_embeddings, cls, atol=2e-3)
    assert np.abs(mined.query_embeddings.astype(np.float32) - mean).max() > 1e-2


def test_calibration_takes_out_the_offset_a_ranking_loss_leaves() -> None:
    from semrank.train._evaluate import fit_calibration

    rng = np.random.default_rng(0)
    qrels, run = {}, {}
    for q in range(40):
        qrels[f"q{q}"] = {"d0": 1}
        run[f"q{q}"] = {f"d{d}": float(-40 + rng.normal(3.0 if d == 0 else 0.0)) for d in range(8)}
    scale, shift = fit_calibration(qrels, run)  # type: ignore[misc]
    probabilities = [
        1 / (1 + np.exp(-(scale * logit + shift)))
        for docs in run.values()
        for logit in docs.values()
    ]
    assert scale > 0 and np.mean(probabilities) == pytest.approx(1 / 8, abs=0.01)
    assert fit_calibration({q: dict.fromkeys(run[q], 1) for q in run}, run) is None  # one label
    backwards = {q: {d: -s for d, s in docs.items()} for q, docs in run.items()}
    assert fit_calibration(qrels, backwards) is None  # ranks relevant candidates last


def test_a_validation_query_is_not_trained_on_from_another_source(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """Two --data sources sharing queries: the split held queries out of one source only, and
    trained on all of them from the other (validation, and the best model kept by it, inflated)."""
    from semrank.train._loop import prepare_data

    copy = tmp_path / "copy.jsonl"
    copy.write_text(pairs_file.read_text().replace("tell me about", "Tell me  about"))
    config = dataclasses.replace(
        _config(tiny_base, pairs_file, tmp_path / "run"),
        data=(DataSpec(path=pairs_file, name="a"), DataSpec(path=copy, name="b")),
    )
    config.output.mkdir()
    mined, task, _ = prepare_data(config)
    assert task is not None and len(task.queries) >= 1
    held_out = {q.lower() for q in task.queries.values()}
    trained = {" ".join(g.query.split()).lower() for m in mined for g in m.groups}
    assert trained and not held_out & trained


def test_a_run_resumed_from_elsewhere_with_its_paths_spelled_otherwise_is_the_same_run(
    tiny_base: Path, pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--resume compared paths as typed: 'pairs.jsonl' then '/abs/pairs.jsonl' was refused."""
    import shutil

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(pairs_file, work / "pairs.jsonl")
    monkeypatch.chdir(work)
    train(_config(tiny_base, Path("pairs.jsonl"), Path("run"), max_steps=2))
    monkeypatch.chdir(tmp_path)
    resumed = _config(tiny_base, work / "pairs.jsonl", work / "run", max_steps=3)
    assert train(resumed, resume=True) == work / "run" / "best"
    other = _config(tiny_base, work / "pairs.jsonl", work / "run", max_steps=4, lr=1e-3)
    with pytest.raises(InvalidInputError, match="lr"):  # a real change is still refused
        train(other, resume=True)


def _piped(data: bytes, readers: list[int]) -> Path:
    """A pipe holding ``data``, by the path `<(cmd)` gives (/dev/fd/N)."""
    import os
    import threading

    read, write = os.pipe()
    readers.append(read)

    def feed() -> None:
        with os.fdopen(write, "wb") as pipe:
            pipe.write(data)

    threading.Thread(target=feed, daemon=True).start()
    return Path(f"/dev/fd/{read}")


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd (Linux, macOS)")
def test_data_and_a_corpus_piped_in_train_and_resume_piped_again(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """`--data <(cmd)` was refused ("cannot tell the format of '/dev/fd/63'"), corpus=<(cmd)
    "does not exist"; and the run recorded the pipe as /proc/PID/fd/pipe:[N], so a resume given
    the same data through a pipe again was refused as changing it."""
    import os

    corpus = _write_jsonl(tmp_path / "c.jsonl", [{"title": "Flea circus", "text": "x"}])
    readers: list[int] = []

    def piped_data() -> tuple[DataSpec, ...]:
        data = _piped(pairs_file.read_bytes(), readers)
        return (DataSpec(path=data, name="pairs", corpus=_piped(corpus.read_bytes(), readers)),)

    try:
        config = _config(tiny_base, pairs_file, tmp_path / "run", max_steps=2)
        train(dataclasses.replace(config, data=piped_data()))
        record = json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))
        assert record["data"][0]["path"] == record["data"][0]["corpus"] == "(a pipe)"
        resumed = dataclasses.replace(config, data=piped_data(), max_steps=3)
        assert train(resumed, resume=True) == tmp_path / "run" / "best"
    finally:
        for read in readers:
            os.close(read)


def test_a_run_saved_by_an_earlier_semrank_resumes(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """Runs saved before warmup_steps defaulted to None (it was 50) or before --data took
    corpus= were refused with a change no command could undo ("warmup_steps: 50 -> None")."""
    run = tmp_path / "run"
    train(_config(tiny_base, pairs_file, run, max_steps=2, warmup_steps=None))
    record = run / "config.json"
    saved = json.loads(record.read_text())
    assert saved["warmup_steps"] is None and "corpus" in saved["data"][0]
    saved["warmup_steps"] = 50  # as the earlier version wrote them
    del saved["data"][0]["corpus"], saved["record_version"]
    record.write_text(json.dumps(saved))
    resumed = _config(tiny_base, pairs_file, run, max_steps=3, warmup_steps=None)
    assert train(resumed, resume=True) == run / "best"
    saved = json.loads(record.read_text())
    saved["warmup_steps"] = 7  # a setting the run really had
    record.write_text(json.dumps(saved))
    with pytest.raises(InvalidInputError, match=r"warmup_steps: 7 -> None"):
        train(_config(tiny_base, pairs_file, run, max_steps=4, warmup_steps=None), resume=True)
    # A run saved by this version with an explicit 50 keeps it: resumed with 50, refused
    # without it (the old default applies to old records only).
    today = tmp_path / "today"
    train(_config(tiny_base, pairs_file, today, max_steps=2, warmup_steps=50))
    again = _config(tiny_base, pairs_file, today, max_steps=3, warmup_steps=50)
    assert train(again, resume=True) == today / "best"
    with pytest.raises(InvalidInputError, match=r"warmup_steps: 50 -> None"):
        train(_config(tiny_base, pairs_file, today, max_steps=4, warmup_steps=None), resume=True)


def test_training_continues_from_semranks_int8_cross_encoder_as_it_scores() -> None:
    """transformers read the shipped cross-encoder's int8 tensors as unknown and left every
    weight random: --init-from it (which the --base refusal recommends) trained from noise."""
    import torch

    from semrank import Reranker
    from semrank.models import resolve
    from semrank.train._evaluate import score_pairs
    from semrank.train._model import build_cross_encoder

    folder = resolve("semrank-minilm-l6").path / "cross-encoder"
    model, tokenizer = build_cross_encoder(folder)
    docs = ["Fleas feed on the blood of mammals.", "Paris is the capital of France."]
    with torch.no_grad():
        trained = score_pairs(
            model, tokenizer, [("what do fleas eat", d) for d in docs], max_length=128
        )
    served = Reranker(str(folder), backend="onnx").score("what do fleas eat", docs, raw=True)
    np.testing.assert_allclose(trained, served, atol=0.15)  # bf16 autocast in score_pairs
    assert trained[0] > trained[1] + 3


AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma\n"
ZEN4_CPUINFO = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
GRAVITON3_CPUINFO = "processor\t: 0\nFeatures\t: fp asimd asimddp sve i8mm bf16\n"


@pytest.mark.parametrize(
    ("cpuinfo", "bf16"), [(AVX2_CPUINFO, False), (ZEN4_CPUINFO, True), (GRAVITON3_CPUINFO, True)]
)
def test_training_computes_in_bf16_only_where_the_cpu_does(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpuinfo: str, bf16: bool
) -> None:
    """bf16 autocast ran on every CPU: where bf16 is not native (AVX2 laptops, Xeons before
    Cooper Lake) torch emulates it, and a MiniLM-L6 step took 66 s against 6.6 s in fp32."""
    import torch

    from semrank.runtime import _select
    from semrank.train._evaluate import encode_pairs, score_pairs
    from semrank.train._model import build_cross_encoder

    model, tokenizer = build_cross_encoder(tiny_base)
    pairs = [(f"tell me about topic {i}", f"facts of topic {i} and more " * 4) for i in range(8)]
    with torch.inference_mode():
        fp32 = model(**encode_pairs(tokenizer, pairs, max_length=64)).logits[:, 0].numpy()
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    monkeypatch.setattr(_select, "PROC_CPUINFO", tmp_path / "cpuinfo")
    _select.cpu_computes_bf16.cache_clear()
    try:
        scores = score_pairs(model, tokenizer, pairs, max_length=64)
    finally:
        monkeypatch.undo()
        _select.cpu_computes_bf16.cache_clear()
    if bf16:
        assert np.abs(scores - fp32).max() > 1e-4  # computed in bf16
    else:
        np.testing.assert_allclose(scores, fp32, atol=1e-6)


def test_trained_checkpoints_training_cannot_read_as_served_are_refused(
    tmp_path: Path, tiny_model: Any
) -> None:
    """A 2-label classifier trained on its 'not relevant' logit (semrank serves logit 1 - logit
    0); a classifier without its pooler trained and scored with a random one."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from semrank.errors import ModelLoadError
    from semrank.train._model import build_cross_encoder

    with pytest.raises(InvalidInputError, match="2-label classifier"):
        build_cross_encoder(tiny_model("bert", num_labels=2))
    no_pooler = tmp_path / "no-pooler"
    shutil.copytree(tiny_model("bert"), no_pooler)
    weights = load_file(str(no_pooler / "model.safetensors"))
    save_file(
        {k: v for k, v in weights.items() if "pooler" not in k},
        str(no_pooler / "model.safetensors"),
    )
    with pytest.raises(ModelLoadError, match="pooler"):
        build_cross_encoder(no_pooler)


def test_a_bi_or_gated_run_from_a_cross_encoder_builds_the_architecture_asked_for(
    tiny_model: Any,
) -> None:
    """The new loading path for trained cross-encoders ran before the architecture check: a
    'bi' run crashed at its first export, a 'gated' one trained a plain BERT classifier."""
    import torch

    from semrank.models import resolve
    from semrank.runtime import torch_gated
    from semrank.runtime.torch_backend import load_checkpoint
    from semrank.train._model import build_cross_encoder

    for architecture in ("gated", "bi"):
        model, _ = build_cross_encoder(tiny_model("bert"), architecture=architecture)
        assert model.config.model_type == torch_gated.MODEL_TYPE, architecture
    # From semrank's int8 cross-encoder: its own (widened) weights, not transformers' random ones.
    shipped = resolve("semrank-minilm-l6").path / "cross-encoder"
    gated, _ = build_cross_encoder(shipped, architecture="gated")
    widened = load_checkpoint("AutoModelForSequenceClassification", shipped)
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
        assert torch.equal(gated.bert.state_dict()[name], widened.bert.state_dict()[name]), name
    with pytest.raises(InvalidInputError, match="'xlm-roberta' cross-encoder"):
        build_cross_encoder(tiny_model("roberta"), architecture="gated")
    # A gated run continued as "bi" trains what it exports: the bi-encoder (gates shut, frozen).
    from semrank.train._model import SHUT_GATE

    as_bi, _ = build_cross_encoder(tiny_model("gated"), architecture="bi")
    assert bool((as_bi.cross_gates == SHUT_GATE).all()) and not as_bi.cross_gates.requires_grad


def test_a_checkpoint_that_cannot_be_written_is_named_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    """A full disk was a torch traceback ("unexpected pos ...") and left checkpoint.tmp."""
    import torch

    from semrank.errors import StorageError
    from semrank.train._loop import RunState, _save_checkpoint

    class Sampler:  # the sampler's only part a checkpoint reads
        def state(self) -> dict[str, Any]:
            return {"position": 3}

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(StorageError, match=r"is the disk full\?.*no checkpoint was saved"):
        # A folder where the file goes: torch.save fails as on a full disk.
        (tmp_path / "checkpoint.tmp").mkdir()
        _save_checkpoint(path, model, optimizer, Sampler(), RunState())  # type: ignore[arg-type]
    (tmp_path / "checkpoint.tmp").rmdir()
    _save_checkpoint(path, model, optimizer, Sampler(), RunState())  # type: ignore[arg-type]
    assert path.is_file() and not (tmp_path / "checkpoint.tmp").exists()
    (tmp_path / "checkpoint.tmp").mkdir()
    with pytest.raises(StorageError, match="rerun the command with --resume"):
        _save_checkpoint(path, model, optimizer, Sampler(), RunState())  # type: ignore[arg-type]


@pytest.mark.usefixtures("windows_fsync")
def test_a_checkpoint_is_saved_where_fsync_needs_a_writable_file(tmp_path: Path) -> None:
    """Windows flushes no file opened read-only: the checkpoint was flushed through one, and
    `semrank train` stopped at its first checkpoint saying "is the disk full?"."""
    import torch

    from semrank.train._loop import RunState, _load_checkpoint, _save_checkpoint

    class Sampler:  # the sampler's only parts a checkpoint writes and reads
        def state(self) -> dict[str, Any]:
            return {"position": 3}

        def restore(self, state: dict[str, Any]) -> None:
            self.loaded = state

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "checkpoint.pt"
    _save_checkpoint(path, model, optimizer, Sampler(), RunState(step=7))  # type: ignore[arg-type]
    assert not (tmp_path / "checkpoint.tmp").exists()
    sampler = Sampler()
    assert _load_checkpoint(path, model, optimizer, sampler).step == 7  # type: ignore[arg-type]
    assert sampler.loaded == {"position": 3}


class _RunsCodeWhenUnpickled:
    """What a crafted checkpoint.pt holds: unpickling it calls ``open(marker, "w")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_a_resume_never_runs_code_a_checkpoint_pickles(tmp_path: Path) -> None:
    """`--resume` unpickled checkpoint.pt in full: a run folder from someone else ran whatever
    code its checkpoint named. It is read as tensors and plain values only, and refused."""
    import torch

    from semrank.train._loop import _load_checkpoint

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "state": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(DataFormatError, match=r"holds Python objects .* not loaded"):
        _load_checkpoint(path, model, optimizer, None)  # type: ignore[arg-type]
    assert not marker.exists()
    # Bytes that are no pickle at all are still "damaged", not a traceback.
    path.write_bytes(b"hello, not a checkpoint")
    with pytest.raises(DataFormatError, match=r"checkpoint\.pt is damaged"):
        _load_checkpoint(path, model, optimizer, None)  # type: ignore[arg-type]


@pytest.mark.slow
def test_without_a_validation_split_no_ndcg_is_recorded(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """The step number was recorded as the best model's nDCG@10 (2.0 after two steps)."""
    best = train(_config(tiny_base, pairs_file, tmp_path / "run", val_queries=0))
    record = json.loads((best / "semrank_training.json").read_text())
    assert record["best_step"] == 2 and record["best_val_ndcg10"] is None


@pytest.mark.slow
def test_a_new_best_replaces_the_whole_folder_not_file_by_file(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """best/model.onnx of an earlier export stayed beside a later best's weights."""
    output = tmp_path / "run"
    train(_config(tiny_base, pairs_file, output, val_queries=0, export_onnx=True))
    assert (output / "best" / "model.onnx").is_file()
    best = train(_config(tiny_base, pairs_file, output, val_queries=0, max_steps=4), resume=True)
    assert json.loads((best / "semrank_training.json").read_text())["best_step"] == 4
    assert not (best / "model.onnx").exists()
    assert sorted(p.name for p in output.iterdir() if p.name.startswith(("best", "last"))) == [
        "best",
        "last",
    ]


@pytest.mark.slow
def test_exported_models_are_readable_as_new_files_are_for_the_user_who_serves_them(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """safetensors wrote model.safetensors private (0600): a model trained as one user (a
    Docker build as root) failed to load for the service's user, every other file readable."""
    output = tmp_path / "run"
    train(_config(tiny_base, pairs_file, output, val_queries=0))
    plain = tmp_path / "plain.txt"
    plain.write_text("a file made as the umask says")
    expected = stat.S_IMODE(plain.stat().st_mode)
    for folder in (output / "best", output / "last"):
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if p.is_file()}
        assert "model.safetensors" in modes
        assert modes == dict.fromkeys(modes, expected), folder


@pytest.mark.slow
def test_ctrl_c_stops_after_the_step_with_a_checkpoint_that_resumes(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """Ctrl-C stopped mid-step and lost everything since the last checkpoint (10 minutes)."""
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "semrank.cli", "train", "--data", str(pairs_file),
        "--base", str(tiny_base), "--output", str(output), "--max-steps", "100000",
        "--eval-every", "5", "--negatives", "3", "--max-length", "32", "--val-queries", "8",
        "--val-candidates", "6", "--threads", "1", "--no-onnx",
    ]  # fmt: skip
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (output / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode != 0
    said = re.search(r"stopped at step (\d+); the same command with --resume continues", stderr)
    assert said, stderr[-2000:]
    import torch

    saved = torch.load(output / "checkpoint.pt", weights_only=False)["state"]["step"]
    assert saved == int(said.group(1))
    at = command.index("--max-steps") + 1
    resumed = [*command[:at], str(saved + 2), *command[at + 1 :], "--resume"]
    subprocess.run(resumed, check=True, capture_output=True, timeout=120)
    assert json.loads((output / "last" / "semrank_training.json").read_text())["step"] == saved + 2


def test_validation_lists_of_only_relevant_passages_are_said_to_select_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """nDCG@10 is 1.0 for any order of such lists: best/ stayed the first model, unsaid."""
    import logging

    from semrank.train._evaluate import RankingTask
    from semrank.train._loop import _warn_if_validation_cannot_select

    caplog.set_level(logging.WARNING, logger="semrank.train")
    candidates = {"q1": [("a", "A"), ("b", "B")]}
    positives = RankingTask(name="v", queries={"q1": "q"}, candidates=candidates,
                            qrels={"q1": {"a": 1, "b": 2}})  # fmt: skip
    _warn_if_validation_cannot_select(positives)
    assert "only relevant passages" in caplog.text
    caplog.clear()
    mixed = dataclasses.replace(positives, qrels={"q1": {"a": 1}})
    _warn_if_validation_cannot_select(mixed)
    assert caplog.text == ""


@pytest.mark.slow
def test_a_resume_names_a_damaged_checkpoint_and_logs_each_evaluation_once(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """A checkpoint cut short (a power loss before it reached the disk) gave a traceback or
    a bare "Aborted!"; a resume from a checkpoint older than the last evaluation logged that
    evaluation twice."""
    import shutil

    output = tmp_path / "run"
    train(_config(tiny_base, pairs_file, output))  # steps 1-2, evaluated at 2
    checkpoint = output / "checkpoint.pt"
    at_step_2 = checkpoint.read_bytes()
    train(_config(tiny_base, pairs_file, output, max_steps=4), resume=True)  # evaluated at 4
    checkpoint.write_bytes(at_step_2)  # as if the save after step 4's evaluation was lost
    train(_config(tiny_base, pairs_file, output, max_steps=4), resume=True)
    logged = (output / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["step"] for row in logged] == [2, 4]

    for damaged in (at_step_2[: len(at_step_2) // 2], b""):
        checkpoint.write_bytes(damaged)
        with pytest.raises(DataFormatError, match=r"the checkpoint .*checkpoint\.pt is damaged"):
            train(_config(tiny_base, pairs_file, output, max_steps=6), resume=True)
    with pytest.raises(DataFormatError, match=rf"--init-from {re.escape(str(output / 'best'))}"):
        train(_config(tiny_base, pairs_file, output, max_steps=6), resume=True)
    shutil.rmtree(output / "best")
    with pytest.raises(DataFormatError, match=r"delete it to start the run again from step 0"):
        train(_config(tiny_base, pairs_file, output, max_steps=6), resume=True)


@pytest.mark.slow
def test_a_resume_before_the_first_checkpoint_says_it_starts_from_step_0(
    tiny_base: Path, pairs_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed before its first checkpoint (10 minutes in), a run resumed from step 0 unsaid."""
    import logging
    import shutil

    output = tmp_path / "run"
    train(_config(tiny_base, pairs_file, output))
    for name in ("checkpoint.pt", "best", "last"):  # what a run killed early has not written
        target = output / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    caplog.set_level(logging.WARNING, logger="semrank.train")
    train(_config(tiny_base, pairs_file, output), resume=True)
    assert f"--resume: no checkpoint in {output} yet" in caplog.text
    assert "starting from step 0" in caplog.text


def test_a_lone_surrogate_in_training_data_is_named_with_its_line(
    tmp_path: Path, tiny_base: Path
) -> None:
    """Half an emoji in a positive crashed the data digest with a UnicodeEncodeError."""
    rows = [{"query": f"q{i}", "positive": f"p{i}"} for i in range(3)]
    rows.append({"query": "fleas", "positive": "a flea \ud83d"})
    data = _write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InvalidInputError, match=r"d\.jsonl:4\.positive holds a lone surrogate"):
        train(_config(tiny_base, data, tmp_path / "run"))


def test_a_folder_a_run_holds_is_refused_to_a_second_run(
    tmp_path: Path, tiny_base: Path, pairs_file: Path
) -> None:
    """Two runs (or a --resume while the first still ran) wrote into one folder: config.json
    of one, best/ and last/ of the other, and a resume continued the other run's weights."""
    import fcntl

    output = tmp_path / "run"
    output.mkdir()
    with (output / ".lock").open("a+") as held:  # as a run still going holds it
        held.write("process 4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(InvalidInputError, match=r"in use by a training run that is still "
                           r"going \(process 4242\)"):  # fmt: skip
            train(_config(tiny_base, pairs_file, output))
        assert sorted(p.name for p in output.iterdir()) == [".lock"]
    train(_config(tiny_base, pairs_file, output))  # once it has ended
    assert (output / "best" / "config.json").is_file()


def test_no_query_left_after_the_validation_split_is_said(tmp_path: Path, tiny_base: Path) -> None:
    """Two spellings of one query: one held out, the other dropped with it; numpy then failed
    with "a must be a positive integer"."""
    rows = [{"query": "Fleas?", "positive": "fleas bite"}, {"query": "fleas?", "positive": "x"}]
    data = _write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InvalidInputError, match="no query is left to train on once the 1 "):
        train(_config(tiny_base, data, tmp_path / "run", val_queries=1, val_candidates=2))


def test_a_tokenizer_saved_without_segments_gives_the_pairs_segment_ids(tiny_model: Any) -> None:
    """A BERT folder whose tokenizer is a plain PreTrainedTokenizerFast returned no
    token_type_ids: training read every passage token as segment 0, the runtime as 1."""
    from semrank.train._evaluate import encode_pairs
    from semrank.train._model import build_cross_encoder

    folder = tiny_model("bert", head="encoder")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config.get("tokenizer_class") == "PreTrainedTokenizerFast"  # the case at hand
    _model, tokenizer = build_cross_encoder(folder)
    encoded = encode_pairs(tokenizer, [("a query", "a passage")], max_length=32)
    assert encoded["token_type_ids"].max().item() == 1


def test_corpus_rows_with_a_title_alone_join_the_pool_and_a_folder_is_named(
    tmp_path: Path, tiny_base: Path, pairs_file: Path
) -> None:
    """A BEIR corpus row with a title and empty text refused the whole run; a corpus that is a
    folder was said not to exist."""
    from semrank.train._loop import load_data

    corpus = _write_jsonl(tmp_path / "c.jsonl", [{"title": "Flea circus", "text": ""}])
    spec = DataSpec(path=pairs_file, name="pairs", corpus=corpus)
    config = dataclasses.replace(_config(tiny_base, pairs_file, tmp_path / "run"), data=(spec,))
    (collection,) = load_data(config)
    assert "Flea circus" in collection.passages
    folder = dataclasses.replace(spec, corpus=tmp_path)
    with pytest.raises(DataFormatError, match=r"corpus '.*': a folder, not a file; give a JSONL"):
        load_data(dataclasses.replace(config, data=(folder,)))


def test_an_onnx_export_cut_short_leaves_no_model_onnx(tmp_path: Path, tiny_model: Any) -> None:
    """A full disk left a truncated best/model.onnx that every later load failed to parse.
    The write is cut short here by a file-size limit, as a full disk cuts it."""
    import shutil
    import subprocess
    import sys

    folder = shutil.copytree(tiny_model("bert"), tmp_path / "best")
    script = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from semrank.errors import StorageError\n"
        "from semrank.train._model import _export_onnx\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "try:\n"
        "    _export_onnx(Path(sys.argv[1]))\n"
        "except StorageError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert f"cannot write {folder / 'model.onnx'}" in done.stdout, done.stderr[-2000:]
    assert not (folder / "model.onnx").exists() and not (folder / "model.onnx.partial").exists()


def test_mining_is_cached_by_the_base_folder_however_its_path_is_typed(
    tmp_path: Path, tiny_base: Path, pairs_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume naming --base by another path (absolute, or from another folder) mined again
    (hours on a large collection) and kept a second copy of the cache."""
    from semrank.train._loop import prepare_data

    monkeypatch.chdir(tiny_base.parent)
    output = tmp_path / "run"
    for base in (Path(tiny_base.name), tiny_base):
        prepare_data(_config(base, pairs_file, output))
    assert len(list((output / "cache").iterdir())) == 1


def test_a_beir_document_judged_both_ways_by_its_text_counts_as_positive(tmp_path: Path) -> None:
    """Two ids of one text, judged 1 and 0 for a query, became one passage that was both a
    positive and a negative of it (the JSONL reader already counted it as positive)."""
    from semrank.train import load_collection

    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "a", "title": "", "text": "fleas live for months"},
        {"_id": "copy", "title": "", "text": "fleas live for months"},
        {"_id": "b", "title": "", "text": "paris is in france"},
    ]
    _write_jsonl(root / "corpus.jsonl", corpus)
    _write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "how long do fleas live"}])
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\n"
                                              "q1\tcopy\t0\nq1\tb\t0\n")  # fmt: skip
    (group,) = load_collection(DataSpec(path=root, name="beir")).groups
    assert not set(group.positive_ids) & set(group.negative_ids)
    assert len(group.positive_ids) == 1 and len(group.negative_ids) == 1


def test_paths_given_as_text_are_paths() -> None:
    """DataSpec(path="pairs.jsonl") failed on .name, TrainConfig(output="run") on .exists()."""
    spec = DataSpec(path="pairs.jsonl", corpus="c.jsonl")  # type: ignore[arg-type]
    assert spec.path == Path("pairs.jsonl") and spec.corpus == Path("c.jsonl")
    assert spec.source_name == "pairs"
    config = TrainConfig(base="base", data=(spec,), output="run")  # type: ignore[arg-type]
    assert (config.base, config.output) == (Path("base"), Path("run"))


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGHUP"), reason="no SIGHUP on Windows")
def test_sigterm_and_sighup_save_a_checkpoint_and_end_the_run_as_that_signal(
    tiny_base: Path, pairs_file: Path, tmp_path: Path
) -> None:
    """A closed terminal (an ssh connection dropped) killed the run mid-step: everything since
    the last checkpoint was lost. A run started under `nohup` (SIGHUP ignored) goes on.
    A SIGTERM (systemd, Kubernetes, a batch queue) ended the run with 130, Ctrl-C's status,
    which a supervisor counts as a failure; its log said "Ctrl-C". The nohup run, going on
    after its SIGHUP, is the one stopped by SIGTERM: two runs, each seconds to start, not three.
    """
    import signal
    import subprocess
    import sys

    script = (
        "import logging, sys; sys.path.insert(0, sys.argv[1]); "
        "logging.basicConfig(level=logging.INFO); "
        "from pathlib import Path; from tiny_models import tiny_train_config; "
        "from semrank.train import train; "
        "train(tiny_train_config(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]), "
        "max_steps=1_000_000, eval_every=0, eval_minutes=1000, checkpoint_minutes=1000))"
    )
    tests = str(Path(__file__).parent)
    runs = {}
    for name, hangup in (("hung-up", signal.SIG_DFL), ("nohup", signal.SIG_IGN)):
        args = [sys.executable, "-c", script, tests, str(tiny_base), str(pairs_file)]
        runs[name] = subprocess.Popen(  # both at once: each takes seconds to start
            [*args, str(tmp_path / name)],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda hangup=hangup: signal.signal(signal.SIGHUP, hangup),
        )

    def logged(run: subprocess.Popen[str], what: str) -> None:
        assert run.stderr is not None
        while what not in (line := run.stderr.readline()):
            assert line, f"the run ended before it logged {what!r}"

    try:
        for run in runs.values():  # in its steps: its signal handlers are set
            logged(run, ":step 50 loss")
            run.send_signal(signal.SIGHUP)
        logged(runs["nohup"], ":step 100 loss")  # it goes on
        runs["nohup"].send_signal(signal.SIGTERM)
        logs = {name: run.communicate(timeout=120)[1] for name, run in runs.items()}
    finally:
        for run in runs.values():
            run.kill()
    for name, signum in (("hung-up", signal.SIGHUP), ("nohup", signal.SIGTERM)):
        assert runs[name].returncode == -signum, logs[name][-2000:]
        assert f"{signum.name}: stopping after this step" in logs[name]
        assert "Ctrl-C" not in logs[name]
        assert (tmp_path / name / "checkpoint.pt").is_file()
    assert "SIGHUP" not in logs["nohup"]
