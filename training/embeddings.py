"""Fine-tuning a sentence-transformers embedding model on question → section pairs.

The reference's two ways, with MultipleNegativesRankingLoss (each question's section is
its positive, the other sections of the batch its negatives):

- `full`: every weight of the model;
- `embedding-layer`: only the word-embedding matrix, the encoder frozen (less prone to
  overfit a small data set; the reference's better variant).

Optionally, the frequent corpus words the tokenizer cuts into several word pieces join
its WordPiece vocabulary, their vectors initialised with the mean of their pieces'
vectors. An information-retrieval evaluator (held-out questions among their sections and
other sections of the index) scores the model before training and after every epoch. The output folder is a plain sentence-transformers model:
`docent ingest --embedding-model DIR` builds an index with it.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from docent.datasets import EvalSetError, held_out, read_json_rows
from docent.errors import UsageError
from docent.sections import StoredSection
from docent.settings import FinetuneSettings, Settings
from docent.types import FinetuneMode, embedding_text

log = logging.getLogger(__name__)

MANIFEST = "docent-finetune.json"
EVALUATOR_NAME = "validation"
# Evaluator metrics shown before → after (cosine similarity, as the index searches).
REPORTED_METRICS = ("accuracy@1", "accuracy@10", "mrr@10", "ndcg@10")
_WORD = re.compile(r"\b[a-zA-Z]+\b")
# Sections no pair names, added to the validation sections in the evaluator's corpus: with
# the validation sections alone, a sample of a few hundred pairs scores 1.0 before training.
DISTRACTORS = 500
MIN_WORD_COUNT = 2  # a word seen once is noise, not vocabulary
MIN_WORD_LENGTH = 3

Progress = Callable[[str, int | None, int | None], None]  # (stage, done, total)


class FinetuneError(UsageError, ValueError):
    """Inputs that cannot make a fine-tuning run: the message says which and why."""


@dataclass(frozen=True)
class SectionPair:
    question: str
    source: str
    text: str  # the section, as the index embeds it: titles first line, then the body


@dataclass
class TrainingPairs:
    pairs: list[SectionPair]
    rows: int  # rows in the data file
    dropped: int  # rows whose source has no text in the index
    dropped_sources: int  # distinct such sources
    index: str
    distractors: list[str] = field(default_factory=list)  # texts of sections no row names: evaluator corpus only
    held_out: int = 0  # rows left out as the held-out tenth (before `rows` was counted)

    @property
    def usable(self) -> int:
        return self.rows - self.dropped


@dataclass
class FinetuneResult:
    base_model: str
    mode: str
    add_vocab: bool
    out: str
    index: str
    rows: int
    dropped: int
    pairs_used: int
    train_pairs: int
    validation_pairs: int
    validation_sections: int
    validation_corpus: int  # the validation sections and the distractors
    new_tokens: int
    new_token_examples: list[str]
    trainable_parameters: int
    total_parameters: int
    epochs: int
    steps: int
    batch_size: int
    learning_rate: float
    seconds: float  # training, with the evaluations after each epoch
    total_seconds: float  # everything: model load, vocabulary, evaluations, training, saving
    metrics_before: dict[str, float]  # the base model
    metrics_with_new_words: dict[str, float]  # with --add-vocab: after adding the words, before training
    metrics_after: dict[str, float]
    metrics_per_epoch: list[dict[str, float]] = field(default_factory=list)
    held_out: int = 0  # pairs left out as the held-out tenth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- data


def load_pairs_file(path: Path) -> list[tuple[str, str]]:
    """(question, source) rows of a JSON array (embedding_qa.json) or JSON lines (a golden set)."""
    try:
        rows = read_json_rows(Path(path), "training data")
    except EvalSetError as exc:
        raise FinetuneError(str(exc)) from None
    pairs = []
    for where, row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("source"), str):
            raise FinetuneError(f"{path}, {where}: every row needs a `question` and a `source` string")
        question, source = row["question"].strip(), row["source"].strip()
        if question and source:
            pairs.append((question, source))
    if not pairs:
        raise FinetuneError(f"{path}: no {{question, source}} rows")
    return pairs


async def section_texts(
    settings: Settings, index_name: str, sources: Sequence[str], distractors: int = 0, seed: int = 0
) -> tuple[dict[str, str], dict[str, str]]:
    """(source URL → its section's text, for `sources`; the same for up to `distractors` other sections).

    A section's text is its chunks in order, overlaps kept once, under its titles (as the
    index embeds them). The other sections are a seeded sample of the index's rest.
    """
    from docent.db import connect
    from docent.store import IndexStore

    conn = await connect(settings)
    try:
        store = IndexStore(conn)
        index = await store.require(index_name)
        wanted = sorted(set(sources))
        texts = _titled(await store.sections(index, wanted))
        others: dict[str, str] = {}
        if distractors > 0:
            sections = await store.sections(index)
            rest = sorted(set(sections) - set(wanted))
            picked = random.Random(seed).sample(rest, min(distractors, len(rest)))
            others = _titled({source: sections[source] for source in picked})
    finally:
        await conn.close()
    return texts, others


def _titled(sections: dict[str, StoredSection]) -> dict[str, str]:
    """Each section's text under its titles, as the index embeds its chunks (empty sections left out)."""
    texts = {}
    for source, section in sections.items():
        body = section.text.strip()
        if body:
            texts[source] = embedding_text(section.page_title, section.section_title, body)
    return texts


async def load_training_pairs(
    settings: Settings,
    data: Path,
    index_name: str | None = None,
    sample: int | None = None,
    distractors: int | None = None,
    skip_held_out: bool = False,
) -> TrainingPairs:
    """The data file's pairs with their section texts from the index; a seeded sample of them when asked.

    With `skip_held_out`, the held-out tenth of the questions (`docent.datasets.held_out`)
    is left out, so that retrieval with the fine-tuned model can be scored on questions
    (and sections) it never saw.

    `distractors` other sections of the index (default DISTRACTORS) join the validation
    sections in the evaluator's corpus, so that a small sample does not make retrieval
    trivially easy.
    """
    index_name = index_name or settings.index_name
    seed = settings.finetune.seed
    rows = load_pairs_file(data)
    kept_out = 0
    if skip_held_out:
        kept = [(q, s) for q, s in rows if not held_out(q)]
        kept_out, rows = len(rows) - len(kept), kept
    if sample is not None and sample < 2:
        raise FinetuneError(f"--sample {sample}: at least 2 pairs are needed")
    extra = DISTRACTORS if distractors is None else distractors
    if extra < 0:
        raise FinetuneError(f"--distractors {extra}: give 0 or more")
    texts, others = await section_texts(settings, index_name, [source for _, source in rows], extra, seed)
    pairs = [SectionPair(q, s, texts[s]) for q, s in rows if s in texts]
    missing = {s for _, s in rows if s not in texts}
    if not pairs:
        raise FinetuneError(
            f"none of the {len(rows)} sources in {data} has text in index {index_name!r}: "
            "was the index built from the same docs, with the same --base-url?"
        )
    if sample is not None and sample < len(pairs):
        pairs = random.Random(seed).sample(pairs, sample)
    dropped = sum(1 for _, source in rows if source not in texts)
    return TrainingPairs(pairs, len(rows), dropped, len(missing), index_name, list(others.values()), kept_out)


def split_pairs(
    pairs: Sequence[SectionPair], fraction: float, seed: int
) -> tuple[list[SectionPair], list[SectionPair]]:
    """(train, validation), split by section: a validation section is never trained on.

    About `fraction` of the pairs go to validation, at least one section; sections are
    drawn in a seeded random order.
    """
    by_source: dict[str, list[SectionPair]] = {}
    for pair in pairs:
        by_source.setdefault(pair.source, []).append(pair)
    sources = sorted(by_source)
    if len(sources) < 2:
        raise FinetuneError("the pairs name a single section: at least 2 are needed (one to train, one to validate)")
    random.Random(seed).shuffle(sources)
    wanted = max(1, round(len(pairs) * fraction))
    validation: list[SectionPair] = []
    held = 0
    while len(validation) < wanted and held < len(sources) - 1:
        validation.extend(by_source[sources[held]])
        held += 1
    train = [pair for source in sources[held:] for pair in by_source[source]]
    rng = random.Random(seed)
    rng.shuffle(train)
    return train, validation


def retrieval_evaluator(validation: Sequence[SectionPair], batch_size: int, distractors: Sequence[str] = ()):
    """Validation questions against the validation sections (plus `distractors`); a question's own section is relevant."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    corpus_ids = {source: f"d{i}" for i, source in enumerate(dict.fromkeys(p.source for p in validation))}
    corpus = {corpus_ids[p.source]: p.text for p in validation}
    corpus.update({f"x{i}": text for i, text in enumerate(distractors)})
    queries = {f"q{i}": p.question for i, p in enumerate(validation)}
    relevant = {f"q{i}": {corpus_ids[p.source]} for i, p in enumerate(validation)}
    return InformationRetrievalEvaluator(
        queries, corpus, relevant, name=EVALUATOR_NAME, batch_size=batch_size, show_progress_bar=False,
        accuracy_at_k=[1, 3, 5, 10], precision_recall_at_k=[10], mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[100],
        write_csv=False,
    )


def key_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The reported metrics out of an evaluator's (or the trainer's `eval_`-prefixed) dict."""
    found = {}
    for name in REPORTED_METRICS:
        for key, value in metrics.items():
            if key.endswith(f"{EVALUATOR_NAME}_cosine_{name}"):
                found[name] = round(float(value), 4)
    return found


# ---------------------------------------------------------------------------- model surgery


def word_embeddings(model) -> Any:
    """The transformer's input (word-piece) embedding module of a sentence-transformers model."""
    return model[0].auto_model.get_input_embeddings()


def out_of_vocabulary_words(tokenizer, texts: Sequence[str], limit: int) -> list[tuple[str, list[int]]]:
    """The `limit` most frequent words of `texts` the tokenizer cuts into several pieces, each with its piece ids.

    Words as the reference took them: letters only, `_` separating words (`num_gpus` →
    `num`, `gpus`, as a BERT pre-tokenizer splits it), lower-cased when the tokenizer
    lower-cases; only words seen at least twice.
    """
    if limit <= 0:
        return []
    lower = tokenizer.tokenize("Word") == tokenizer.tokenize("word")
    counts: Counter[str] = Counter()
    for text in texts:
        words = _WORD.findall(text.replace("_", " "))
        counts.update(w.lower() if lower else w for w in words if len(w) >= MIN_WORD_LENGTH)
    vocab = tokenizer.get_vocab()
    chosen: list[tuple[str, list[int]]] = []
    for word, count in counts.most_common():
        if count < MIN_WORD_COUNT or len(chosen) >= limit:
            break
        if word in vocab:
            continue
        pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(word))
        if len(pieces) > 1 and tokenizer.unk_token_id not in pieces:
            chosen.append((word, pieces))
    return chosen


def add_vocabulary(model, words: Sequence[tuple[str, list[int]]]) -> list[str]:
    """Add `words` to the WordPiece vocabulary; each new vector is the mean of the word's pieces' vectors.

    As vocabulary entries (not "added tokens", which match anywhere in a text) they behave
    as the model's own words: `gpus` is one token in `num_gpus` and `gpus`, while
    `configuration` stays whole after `config` joins. The model then embeds a text
    nearly as before (a word's one vector stands for its pieces' several), and training
    refines the new vectors.
    """
    import torch
    from transformers import AutoTokenizer

    if not words:
        return []
    tokenizer = model.tokenizer
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"].get("type") != "WordPiece":
        raise FinetuneError(
            f"--add-vocab extends WordPiece vocabularies (BERT-like models); this model's tokenizer is {spec['model'].get('type')}"
        )
    vocab: dict[str, int] = spec["model"]["vocab"]
    next_id = 1 + max([*vocab.values(), *(token["id"] for token in spec.get("added_tokens", []))])
    new_ids: dict[str, int] = {}
    for word, _ in words:
        if word not in vocab:
            vocab[word] = new_ids[word] = next_id
            next_id += 1
    with tempfile.TemporaryDirectory(prefix="docent-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        (Path(folder) / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        (Path(folder) / "vocab.txt").unlink(missing_ok=True)  # the tokenizer must come from tokenizer.json
        extended = AutoTokenizer.from_pretrained(folder)
    if extended.convert_tokens_to_ids(words[0][0]) != new_ids.get(words[0][0], vocab[words[0][0]]):
        raise FinetuneError("the tokenizer did not take the new words: --add-vocab is not supported for this model")
    first = model[0]
    if getattr(first, "processor", None) is tokenizer:  # sentence-transformers ≥ 6: the tokenizer is the processor
        first.processor = extended
    else:
        model.tokenizer = extended
    model[0].auto_model.resize_token_embeddings(next_id, mean_resizing=False)
    weight = word_embeddings(model).weight
    with torch.no_grad():
        for word, pieces in words:
            if word in new_ids:
                weight[new_ids[word]] = weight[pieces].mean(dim=0)
    return list(new_ids)


def set_trainable(model, mode: FinetuneMode) -> tuple[int, int]:
    """Freeze what `mode` leaves fixed; (trainable, total) parameter counts."""
    embedding = word_embeddings(model).weight
    for parameter in model.parameters():
        parameter.requires_grad = mode == FinetuneMode.FULL or parameter is embedding
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


# ---------------------------------------------------------------------------- output folder


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a file, or a non-empty folder unless `overwrite` and it holds an earlier fine-tuned model."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FinetuneError(f"--out {out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FinetuneError(f"--out {out} is not empty: choose another folder, or add --overwrite to replace it")
    if not (out / MANIFEST).is_file():
        raise FinetuneError(
            f"--out {out} is not empty and holds no fine-tuned model ({MANIFEST}): --overwrite only replaces "
            "an earlier output; choose another folder"
        )


def _replace_dir(staged: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    staged.rename(out)


# ---------------------------------------------------------------------------- training


@contextmanager
def _quiet_libraries():
    """transformers/datasets print bars and advice on every run; the CLI shows its own progress."""
    import datasets
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = datasets.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    st_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
        st_logger.setLevel(st_level)


def _progress_callback(progress: Progress | None, epochs_seen: list[dict[str, float]]):
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if progress is not None:
                progress("training", state.global_step, state.max_steps)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            found = key_metrics(metrics or {})
            if found:
                epochs_seen.append({"epoch": round(float(state.epoch or 0), 2), **found})

    return Report()


def finetune_embeddings(
    settings: Settings,
    training: TrainingPairs,
    out: Path,
    mode: FinetuneMode | str = FinetuneMode.FULL,
    add_vocab: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> FinetuneResult:
    """Fine-tune `settings.embedding.model` on `training`, validate each epoch, save the model to `out`."""
    started = time.perf_counter()
    options: FinetuneSettings = settings.finetune
    if mode not in set(FinetuneMode):
        raise FinetuneError(f"--mode must be one of {', '.join(FinetuneMode)}, not {mode!r}")
    mode = FinetuneMode(mode)
    if settings.embedding.provider != "sentence-transformers":
        raise FinetuneError("only a sentence-transformers model can be fine-tuned here (embedding.provider)")
    out = Path(out).expanduser().resolve()
    check_out_dir(out, overwrite)
    train, validation = split_pairs(training.pairs, options.validation_fraction, options.seed)
    if len(train) < options.batch_size:
        raise FinetuneError(
            f"{len(train)} training pairs (after {len(validation)} held out for validation) do not fill one batch of "
            f"{options.batch_size}: use a larger --sample or a smaller --batch-size"
        )

    report = progress or (lambda *_: None)
    report("loading the model", None, None)
    with _quiet_libraries():
        model = _load_trainable(settings)
        evaluator = retrieval_evaluator(validation, settings.embedding.batch_size, training.distractors)
        report("evaluating the base model", None, None)
        before = key_metrics(evaluator(model))
        new_words: list[str] = []
        with_new_words: dict[str, float] = {}
        if add_vocab:
            report("adding corpus words to the vocabulary", None, None)
            texts = list(dict.fromkeys(p.text for p in train))
            new_words = add_vocabulary(model, out_of_vocabulary_words(model.tokenizer, texts, options.max_new_words))
            with_new_words = key_metrics(evaluator(model)) if new_words else dict(before)
        trainable, total = set_trainable(model, mode)
        epochs_seen: list[dict[str, float]] = []
        with tempfile.TemporaryDirectory(prefix="docent-finetune-") as scratch:
            trainer = _trainer(model, settings, train, evaluator, Path(scratch), _progress_callback(progress, epochs_seen))
            train_started = time.perf_counter()
            output = trainer.train()
            seconds = time.perf_counter() - train_started
        after = dict(epochs_seen[-1]) if epochs_seen else key_metrics(evaluator(model))
        after.pop("epoch", None)
        report("saving", None, None)
        result = FinetuneResult(
            base_model=settings.embedding.model, mode=mode, add_vocab=add_vocab, out=str(out), index=training.index,
            rows=training.rows, dropped=training.dropped, pairs_used=len(training.pairs), train_pairs=len(train),
            validation_pairs=len(validation), validation_sections=len({p.source for p in validation}),
            validation_corpus=len({p.source for p in validation}) + len(training.distractors),
            new_tokens=len(new_words), new_token_examples=new_words[:20], trainable_parameters=trainable,
            total_parameters=total, epochs=options.epochs, steps=int(output.global_step), batch_size=options.batch_size,
            learning_rate=options.learning_rate, seconds=round(seconds, 1), total_seconds=0.0,
            metrics_before=before, metrics_with_new_words=with_new_words, metrics_after=after,
            metrics_per_epoch=epochs_seen, held_out=training.held_out,
        )
        _save(model, result, out, started)
    return result


def _load_trainable(settings: Settings):
    from docent.embedding.model import SentenceTransformerEmbedder

    # The project's loader: the packaged all-MiniLM-L6-v2 for its names, any local folder, clear errors.
    model = SentenceTransformerEmbedder(settings.embedding).model
    model.train()
    return model


def _trainer(model, settings: Settings, train: Sequence[SectionPair], evaluator, scratch: Path, callback):
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import PrinterCallback, ProgressCallback

    options = settings.finetune
    dataset = Dataset.from_dict({"anchor": [p.question for p in train], "positive": [p.text for p in train]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(scratch),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        learning_rate=options.learning_rate,
        warmup_steps=float(options.warmup_ratio),  # a float below 1: a share of all steps
        weight_decay=0.0,
        seed=options.seed,
        data_seed=options.seed,
        # A repeated section in a batch would be its own question's negative.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=str(model.device) == "cpu",
        dataloader_num_workers=0,
    )

    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict):
            pass  # the model is saved without a model card (its widget examples cost a pass over the data)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=MultipleNegativesRankingLoss(model),
        evaluator=evaluator,
        callbacks=[callback],
    )
    for printer in (PrinterCallback, ProgressCallback):  # progress goes through `callback`
        trainer.remove_callback(printer)
    return trainer


def _save(model, result: FinetuneResult, out: Path, started: float) -> None:
    """Write the model and its manifest next to `out`, then move it into place (no half-written folder)."""
    # Caches keyed by the model's path and config (the ONNX query export) must see a new model
    # when a folder is overwritten by another run: give each run's config its own id.
    model[0].auto_model.config.docent_finetune_id = uuid.uuid4().hex
    for parameter in model.parameters():
        parameter.requires_grad = True  # saved models load trainable; freezing was this run's choice
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save(str(staged), create_model_card=False)
        result.total_seconds = round(time.perf_counter() - started, 1)
        (staged / MANIFEST).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        _replace_dir(staged, out)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
