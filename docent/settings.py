"""Every knob of docent in one typed object.

Sources, highest priority first: explicit overrides (CLI flags), environment variables
(`DOCENT_…`, nested with `__`, e.g. `DOCENT_CHUNKING__CHUNK_SIZE=300`; plus the
conventional `DATABASE_URL`, `REDIS_URL`, `RAY_ADDRESS`), a YAML file (`--config FILE`
or `DOCENT_CONFIG`), then the defaults below.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from docent.errors import UsageError
from docent.types import (
    AnchorStyle,
    ChunkUnit,
    CondenserKind,
    EmbeddingBackend,
    EmbeddingProvider,
    ExtractiveEmbedding,
    Fusion,
    LexicalBackend,
    ModelKind,
    RedisFailure,
    RetrievalMode,
    SlackMode,
    Strategy,
    UrlStyle,
)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"

# The YAML file of the settings being built, when given explicitly rather than by DOCENT_CONFIG.
_config_file: ContextVar[str | None] = ContextVar("docent_config_file", default=None)


class EmbeddingSettings(BaseModel):
    model: str = Field(
        DEFAULT_EMBEDDING_MODEL,
        description="sentence-transformers name or path; with provider=openai, the endpoint's model name",
    )
    provider: EmbeddingProvider = EmbeddingProvider.SENTENCE_TRANSFORMERS
    base_url: str | None = Field(None, description="OpenAI-compatible embeddings endpoint (provider=openai)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the endpoint's key")
    batch_size: int = Field(64, ge=1, description="texts per forward pass (or per endpoint request)")
    device: str | None = Field(None, description="torch device; default: cuda when present, else cpu")
    max_seq_length: int | None = Field(None, ge=1, description="override the model's token limit")
    query_prefix: str = Field("", description="prepended to queries (e.g. 'query: ' for e5/bge models)")
    query_backend: EmbeddingBackend = Field(
        EmbeddingBackend.ONNX_INT8, description="how the query service embeds questions: PyTorch, an ONNX export (same vectors, "
        "~2x faster on a CPU; exported once under data_dir) or its int8 quantisation (~3x faster; vectors drift "
        "slightly, retrieval_score on the Ray eval set unchanged)"
    )
    ingest_backend: EmbeddingBackend = Field(
        EmbeddingBackend.ONNX_INT8, description="how ingest embeds chunks on a CPU: the same choices as query_backend, "
        "the same exported file (with a GPU, PyTorch on CUDA always)"
    )


class ChunkingSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    chunk_size: int = Field(300, ge=1, description="maximum chunk length, in `unit`")
    chunk_overlap: int = Field(50, ge=0, description="overlap between neighbouring chunks, in `unit`")
    unit: ChunkUnit = Field(ChunkUnit.CHARS, description="chars, or tokens of the embedding model")
    include_titles: bool = Field(True, description="embed and index chunks with their page and section titles")

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, overlap: int, info: Any) -> int:
        size = info.data.get("chunk_size")
        if size is not None and overlap >= size:
            raise ValueError(f"chunk_overlap ({overlap}) must be smaller than chunk_size ({size})")
        return overlap


class IngestSettings(BaseModel):
    exclude: list[str] = Field(
        default_factory=lambda: ["**/_build/**", "**/_templates/**", "**/_includes/**", "**/.*/**"],
        description="glob patterns (relative to the ingested root) of files never ingested",
    )
    anchor_style: AnchorStyle = Field(
        AnchorStyle.SPHINX, description="how heading anchors are slugged: Sphinx/docutils ids or GitHub's"
    )
    url_style: UrlStyle = Field(
        UrlStyle.HTML, description="how the site publishes a file's page under --base-url: html (guide/setup.html), "
        "directory (guide/setup/), none (guide/setup); fixed per index"
    )
    embed_actors: int = Field(1, ge=1, description="size of the embedding actor pool")
    embed_block_rows: int = Field(
        512, ge=1, description="chunks handed to an embedding actor at once (sorted by length inside)"
    )
    num_gpus: float | None = Field(None, ge=0, description="GPUs per embedding actor; default: 1 when the cluster has GPUs")
    embed_threads: int | None = Field(
        None, ge=1, description="CPU threads per embedding actor; default: the machine's cores / embed_actors"
    )
    write_batch_chunks: int = Field(2000, ge=1, description="chunks of finished documents written per transaction")
    s3_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint for every s3:// URI (MinIO, …); default: AWS_ENDPOINT_URL, else AWS"
    )
    s3_region: str | None = Field(
        None, description="region of the buckets; default: AWS_REGION / AWS_DEFAULT_REGION / ~/.aws, else us-east-1"
    )
    s3_access_key_id_env: str = Field(
        "AWS_ACCESS_KEY_ID", description="environment variable holding the S3 access key id; with it unset, the "
        "default AWS chain (~/.aws, an instance or pod role)"
    )
    s3_secret_access_key_env: str = Field(
        "AWS_SECRET_ACCESS_KEY", description="environment variable holding the S3 secret access key"
    )
    s3_session_token_env: str = Field(
        "AWS_SESSION_TOKEN", description="environment variable holding a session token (temporary keys; optional)"
    )


class CrawlSettings(BaseModel):
    """`docent ingest https://…/`: how a docs site is read, politely."""

    concurrency: int = Field(4, ge=1, description="requests in flight at once (Ray Data fetch tasks)")
    requests_per_second: float = Field(
        8.0, gt=0, description="most requests per second to the site, all tasks together (a robots.txt Crawl-delay lowers it)"
    )
    retries: int = Field(3, ge=0, description="further tries of a request that failed to connect, or got 429 or 5xx")
    retry_backoff_s: float = Field(1.0, ge=0, description="wait before the first retry, doubled for each next one")
    max_retry_after_s: float = Field(60.0, ge=0, description="longest Retry-After honoured; a longer one fails the page")
    timeout_s: float = Field(20.0, gt=0, description="per request")
    max_pages: int = Field(5000, ge=1, description="pages read at most; a larger site is cut there (and nothing is pruned)")
    respect_robots: bool = Field(True, description="obey the site's robots.txt (Disallow, Crawl-delay)")
    user_agent: str = Field("docent-crawler", description="sent with every request, and matched against robots.txt")


class DatabaseSettings(BaseModel):
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(10, ge=1)
    hnsw_m: int = Field(16, ge=2, description="HNSW graph degree")
    hnsw_ef_construction: int = Field(64, ge=4, description="HNSW build-time candidate list")
    hnsw_ef_search: int = Field(100, ge=1, description="HNSW query-time candidate list")
    revive_interval_s: float = Field(
        5.0, gt=0, description="a service finding the embedded PostgreSQL gone starts it again at most this often"
    )


class LexicalSettings(BaseModel):
    backend: LexicalBackend = Field(
        LexicalBackend.BM25S, description="bm25s (fast, persisted) or rank-bm25 BM25Okapi (reference; built in memory)"
    )
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    stemming: bool = Field(True, description="Snowball English stemming of tokens")
    stopwords: bool = Field(True, description="drop English stop words")
    identifiers: bool = Field(
        False, description="also index `map_batches`, `ray.data.Dataset` whole, beside their parts"
    )


class RetrievalSettings(BaseModel):
    mode: RetrievalMode = RetrievalMode.HYBRID
    num_chunks: int = Field(13, ge=0, description="chunks returned to the generator")
    lexical_k: int = Field(5, ge=0, description="BM25 hits joined to the semantic ones")
    candidates: int = Field(50, ge=1, description="hits fetched from each retriever before fusion")
    fusion: Fusion = Field(
        Fusion.RRF, description="reference: lexical hits inserted after the first lexical_k semantic ones; rrf: reciprocal-rank fusion"
    )
    rrf_k: int = Field(60, ge=1, description="reciprocal-rank fusion constant")
    lexical_weight: float = Field(1.0, ge=0, description="weight of the lexical ranking in rrf")
    page_weight: float = Field(
        0.5, ge=0, description="rrf: weight of a page's own rank (its best chunk's place among pages, in each "
        "ranking) added to its chunks' scores, so a page both retrievers find through different chunks rises "
        "(0: chunks alone)"
    )
    max_chunks_per_page: int = Field(
        1, ge=0, description="at most this many chunks of one page in the results (0: no limit)"
    )
    strategy: Strategy = Field(
        Strategy.CHUNKS, description="return chunks, chunks with their neighbours, or their whole sections"
    )
    window: int = Field(1, ge=1, description="neighbours on each side (sentence-window)")
    continuation_hits: int = Field(
        3, ge=0, description="top hits that carry the next chunk of their section (the offline answer may continue into it)"
    )
    section_budget: int = Field(2000, ge=1, description="characters of a section returned (parent-section)")


class RerankSettings(BaseModel):
    enabled: bool = Field(True, description="rerank when a tag classifier (or a cross-encoder) is available")
    threshold: float = Field(0.9, ge=0, le=1, description="tag probability needed to move a docs area first")
    k: int = Field(13, ge=1, description="chunks kept after reranking")
    cross_encoder_model: str | None = None
    base_url: str | None = Field(
        None, description="docs URL whose first path segment is a page's area (its tag); default: the one the tag "
        "classifier was trained with, and for the flywheel the site's root"
    )
    artifact: Path | None = Field(None, description="tag classifier file; default: <data_dir>/models/reranker.zip")


class RouterSettings(BaseModel):
    threshold: float = Field(0.5, ge=0, le=1, description="p(open-source answers well) needed to route there")
    artifact: Path | None = Field(None, description="router file; default: <data_dir>/models/router.zip")
    label_tolerance: float = Field(
        0.0, ge=0, description="train --from-eval: label 1 where the open-source LLM's quality is within this of the strong one's"
    )


class LLMSettings(BaseModel):
    name: str = Field(description="what answers and metrics call this LLM")
    model: str = Field(description="the endpoint's model name")
    base_url: str = Field(description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    context_length: int = Field(4096, ge=1, description="tokens the model accepts, prompt and answer together")
    max_tokens: int = Field(512, ge=1, description="longest answer asked for, in tokens")
    prompt_price: float = Field(0.0, ge=0, description="$ per million prompt tokens")
    sampled_price: float = Field(0.0, ge=0, description="$ per million sampled tokens")
    tokenizer: str | None = Field(
        None, description="local Hugging Face tokenizer (dir or cached name) counting this LLM's tokens; "
        "default: the embedding model's, which counts a little high for BPE models"
    )
    timeout_s: float = Field(30.0, gt=0, description="seconds without a response (or a streamed token) before giving up")
    max_retries: int = Field(2, ge=0, description="retries with backoff on 429, 5xx and timeouts before falling back")


class ExtractiveSettings(BaseModel):
    """The offline answer: the best passage of the best source (services/generator/extractive.py)."""

    embedding: ExtractiveEmbedding = Field(
        ExtractiveEmbedding.STATIC, description="sentence vectors: the model's static token vectors "
        "(sub-millisecond) or the full embedding model (tens of ms per sentence on a CPU)"
    )
    hits: int = Field(3, ge=1, description="top sources read for a passage")
    rank_weight: float = Field(
        0.5, ge=0, description="relevance bonus of source 1 (halved for source 2, a third for 3…): the retriever's order counts"
    )
    max_chars: int = Field(600, ge=50, description="longest passage, code aside")
    max_code_lines: int = Field(20, ge=1, description="lines of a quoted code block before it is cut")
    keep_ratio: float = Field(
        0.75, ge=0, le=1, description="a following sentence joins the passage if this share of the best one's relevance"
    )
    second_ratio: float = Field(
        1.1, ge=0, description="a second source's passage needs this share of the first's relevance…"
    )
    max_redundancy: float = Field(0.8, ge=-1, le=1, description="…and at most this cosine similarity to it")


class AbstentionSettings(BaseModel):
    """Saying "the docs don't cover this" instead of answering (docent/scope.py)."""

    enabled: bool = Field(True, description="abstain when the index's scope model finds the question out of scope")
    min_similarity: float = Field(
        0.35, ge=-1, le=1, description="for an index not calibrated yet: abstain below this best question–chunk similarity"
    )
    max_in_scope_abstained: float = Field(
        0.03, ge=0, lt=1, description="`docent calibrate`: the share of in-scope questions the threshold may abstain on"
    )
    regularisation: float = Field(1.0, gt=0, description="`docent calibrate`: inverse L2 strength of the logistic fit")
    answer: str = Field("The documentation doesn't seem to cover this.", description="what an abstained answer says")
    nearest_pages: int = Field(3, ge=0, description="pages an abstained answer lists as the nearest")


class GenerationSettings(BaseModel):
    llms: list[LLMSettings] = Field(default_factory=list)
    oss_llm: str | None = Field(None, description="name of the LLM the router sends easy questions to")
    strong_llm: str | None = Field(None, description="name of the LLM for the rest")
    fallback: list[str] | None = Field(
        None, description="LLMs tried in order when the chosen one fails; default: the other configured LLMs"
    )
    extractive_fallback: bool = Field(True, description="when every LLM failed, answer extractively")
    temperature: float = 0.0
    context_fraction: float = Field(0.5, gt=0, le=1, description="share of the context length given to retrieved text")
    extractive: ExtractiveSettings = Field(default_factory=lambda: ExtractiveSettings())
    system_prompt: str = (
        "Answer the query using only the numbered sources provided. Be succinct. "
        "Cite the source of each statement by its number, like [1]. "
        "If the sources do not answer the query, reply only: "
        "\"The documentation doesn't seem to cover this.\""
    )
    citation_threshold: float = Field(
        0.64, ge=0, le=1, description="a cited claim is supported when its source scores at least this (docent/citations.py; chosen by bench/citations.py)"
    )


class ConversationSettings(BaseModel):
    """Follow-up questions: made to stand alone before retrieval (services/gateway/conversation.py)."""

    condenser: CondenserKind = Field(
        CondenserKind.AUTO, description="auto: an LLM when one is configured, else offline (no LLM); or force either"
    )
    condense_llm: str | None = Field(None, description="the LLM that condenses; default: the cheapest configured")
    max_turns: int = Field(6, ge=1, description="earlier turns (questions and answers) a follow-up is read with")
    max_turn_chars: int = Field(1500, ge=1, description="each earlier turn is cut to this many characters for the condenser")
    condense_prompt: str = (
        "Rewrite the user's last question so that it can be understood without the conversation: "
        "replace pronouns and references such as \"it\", \"that\" or \"what about\" by what they refer to. "
        "If the question already stands on its own, repeat it unchanged. "
        "Reply with the question only."
    )
    condense_max_tokens: int = Field(96, ge=1, description="longest standalone question the LLM may write, in tokens")


class ServingSettings(BaseModel):
    host: str = Field("127.0.0.1", description="where `docent serve` listens")
    port: int = Field(8000, ge=1, le=65535)
    url: str = Field("http://127.0.0.1:8000", description="the gateway `docent query` calls")
    max_query_chars: int = Field(2000, ge=1, description="longest question accepted")
    max_num_chunks: int = Field(50, ge=1, description="largest num_chunks a request may ask for")
    embed_max_batch_size: int = Field(16, ge=1, description="queries embedded in one forward pass")
    embed_batch_wait_s: float = Field(
        0.0, ge=0, description="how long a query waits for others to share its pass (queries arriving during a pass share the next one anyway)"
    )
    query_cache_size: int = Field(4096, ge=0, description="recent query vectors kept per embedder replica (0: none)")
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with 503s")
    readiness_timeout_s: float = Field(2.0, gt=0, description="how long /readyz waits for each check")
    request_timeout_s: float = Field(
        120.0, gt=0, description="longest wait for an answer (/query) or for its first words (/stream); past it, "
        "503 with Retry-After: a replica being replaced is waited for at most this long"
    )
    index_preload: bool = Field(True, description="load the default index when the retriever starts")
    index_refresh_s: float = Field(30.0, gt=0, description="how often the retriever looks for re-ingested indexes")
    otlp_traces_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint receiving a span per pipeline stage, e.g. http://collector:4318/v1/traces"
    )
    log_buffer_records: int = Field(
        1000, ge=1, description="log lines each Serve replica buffers before writing (1: each at once; errors flush at once)"
    )
    log_flush_s: float = Field(
        1.0, gt=0, description="how often a replica writes the log lines it buffers (and at exit): at most this much is lost"
    )
    throughput_optimized: bool = Field(
        True, description="start local Ray with RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (gRPC between deployments, "
        "user code on the replica's own loop, buffered logs): ~25 % less latency and CPU per request here"
    )


class RateLimitSettings(BaseModel):
    enabled: bool = True
    requests: int = Field(60, ge=1, description="requests one API key (or, without auth, one client address) may make per window")
    window_s: float = Field(60.0, gt=0, description="the sliding window the limit counts over, in seconds")


class CacheSettings(BaseModel):
    enabled: bool = True
    ttl_s: int = Field(3600, ge=1, description="seconds a cached answer is served")
    local_entries: int = Field(1024, ge=1, description="answers the in-process cache keeps when there is no Redis")


class GatewaySettings(BaseModel):
    """What the gateway enforces around the pipeline: limits, cache, CORS, the answer log."""

    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    redis_failure: RedisFailure = Field(
        RedisFailure.OPEN, description="Redis unreachable: open = answer without cache and limits; closed = refuse with 503"
    )
    redis_timeout_s: float = Field(0.25, gt=0, description="longest wait for one Redis call on the request path")
    redis_retry_s: float = Field(5.0, gt=0, description="after a Redis failure, how long before Redis is tried again")
    key_prefix: str = Field("docent:", description="prefix of every Redis key docent writes")
    cors_origins: list[str] = Field(
        default_factory=list, description="origins whose pages may call the API (the widget on a docs site), or ['*']"
    )
    answer_retention_days: int = Field(90, ge=1, description="answers and their feedback are deleted after this many days")
    max_comment_chars: int = Field(2000, ge=1, description="longest feedback comment accepted")


class SlackSettings(BaseModel):
    mode: SlackMode = Field(
        SlackMode.SOCKET, description="socket: Socket Mode (needs an app-level token); http: the Events API on `port`"
    )
    host: str = Field("0.0.0.0", description="where the bot's HTTP server listens (events in http mode, /healthz always)")
    port: int = Field(3000, ge=1, le=65535)
    bot_token_env: str = Field("SLACK_BOT_TOKEN", description="environment variable holding the bot token (xoxb-…)")
    app_token_env: str = Field("SLACK_APP_TOKEN", description="environment variable holding the app-level token (xapp-…, socket mode)")
    signing_secret_env: str = Field("SLACK_SIGNING_SECRET", description="environment variable holding the signing secret (http mode)")
    api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL")
    update_interval_s: float = Field(1.0, gt=0, description="least time between two updates of a streaming answer (Slack allows ~1 a second)")
    max_message_chars: int = Field(3000, ge=100, description="longest text in one message; longer answers continue in more messages")
    gateway_timeout_s: float = Field(60.0, gt=0, description="how long the bot waits for the gateway before apologising")


class PriceSettings(BaseModel):
    prompt: float = Field(ge=0, description="$ per million prompt tokens")
    sampled: float = Field(ge=0, description="$ per million sampled tokens")


def _reference_prices() -> dict[str, PriceSettings]:
    """The reference guide's price table, for cost analysis of LLMs not configured to answer."""
    table = {
        "gpt-3.5-turbo": (1.5, 2), "gpt-4": (30, 60), "gpt-4-1106-preview": (10, 30),
        "llama-2-7b": (0.15, 0.15), "llama-2-13b": (0.25, 0.25), "llama-2-70b": (1, 1),
        "codellama-34b": (1, 1), "mistral-7b": (0.15, 0.15), "mixtral-8x7b": (0.5, 0.5),
    }
    return {name: PriceSettings(prompt=prompt, sampled=sampled) for name, (prompt, sampled) in table.items()}


class EvaluationSettings(BaseModel):
    judge: str | None = Field(None, description="configured LLM that grades answers (quality_score, Ragas-style metrics)")
    judge_attempts: int = Field(3, ge=1, description="tries for a judge reply with a usable score")
    concurrency: int = Field(4, ge=1, description="questions answered (and judged) at once")
    relevancy_questions: int = Field(3, ge=1, description="questions generated back from an answer (answer relevancy)")
    golden_sections_per_task: int = Field(8, ge=1, description="sections per Ray task generating golden questions")
    golden_min_section_chars: int = Field(200, ge=1, description="shortest section a golden question is asked about")
    golden_dedup_similarity: float = Field(
        0.8, gt=0, le=1, description="golden questions at least this similar (token Jaccard) to a kept one are dropped"
    )
    prices: dict[str, PriceSettings] = Field(
        default_factory=_reference_prices,
        description="$ per million tokens of LLMs to estimate costs for (configured LLMs use their own prices)",
    )


class ExperimentSettings(BaseModel):
    trial_cpus: float = Field(1.0, gt=0, description="CPUs Ray Tune reserves per trial")
    trial_gpus: float = Field(0.0, ge=0, description="GPUs Ray Tune reserves per trial")
    max_concurrent_trials: int | None = Field(None, ge=1, description="trials at once; default: as resources allow")
    runs_dir: Path | None = Field(None, description="trial folders (responses, evaluation); default: <data_dir>/experiments")
    artifact_location: str | None = Field(
        None, description="where new experiments keep their MLflow artifacts, e.g. s3://bucket/mlflow (endpoint and keys: "
        "ingest.s3_*); default: <data_dir>/mlflow/artifacts with the local store, the server's choice with a tracking server"
    )


class FinetuneSettings(BaseModel):
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=2, description="question-section pairs per step (in-batch negatives)")
    learning_rate: float = Field(2e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="pairs held out for the retrieval evaluator")
    max_new_words: int = Field(1000, ge=0, description="most frequent out-of-vocabulary corpus words added (with --add-vocab)")
    seed: int = 1234


class FlywheelSettings(BaseModel):
    low_score: float = Field(
        0.3, description="an answer whose top_score (the best cosine similarity of question and a source, as logged) "
        "is below this is a low-score problem; with all-MiniLM-L6-v2 good hits score about 0.4–0.7"
    )
    report_limit: int = Field(50, ge=1, description="worst questions listed by `docent flywheel report` (--limit)")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DOCENT_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    data_dir: Path = Field(Path("~/.local/share/docent"), description="embedded database, artifacts, caches")
    index: str | None = Field(None, description="index name; default derived from model and chunking")
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "DOCENT_DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL", "DOCENT_REDIS_URL"))
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS", "DOCENT_RAY_ADDRESS"))
    auth_enabled: bool = Field(
        True, description="require an API key (Authorization: Bearer) on /query, /stream and /feedback (DOCENT_AUTH_ENABLED)"
    )
    api_key: str | None = Field(
        None, description="the key docent's own clients (docent query, the Slack bot) send to the gateway (DOCENT_API_KEY)"
    )
    mlflow_tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "DOCENT_MLFLOW_TRACKING_URI"),
        description="MLflow tracking server for experiments; default: an SQLite store under <data_dir>/mlflow",
    )

    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    crawl: CrawlSettings = Field(default_factory=CrawlSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    lexical: LexicalSettings = Field(default_factory=LexicalSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    rerank: RerankSettings = Field(default_factory=RerankSettings)
    router: RouterSettings = Field(default_factory=RouterSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    experiment: ExperimentSettings = Field(default_factory=ExperimentSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    flywheel: FlywheelSettings = Field(default_factory=FlywheelSettings)
    abstention: AbstentionSettings = Field(default_factory=AbstentionSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, path: Path) -> Path:
        return path.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        config_file = _config_file.get() or os.environ.get("DOCENT_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    def model_artifact(self, kind: ModelKind) -> Path:
        configured = self.rerank.artifact if kind == ModelKind.RERANKER else self.router.artifact
        return (configured or self.data_dir / "models" / f"{kind}.zip").expanduser()

    @property
    def onnx_dir(self) -> Path:
        """Where ONNX exports of embedding models are kept, one folder per model (queries and ingest share it)."""
        return self.data_dir / "models" / "onnx"

    @property
    def index_name(self) -> str:
        return self.index or default_index_name(self.embedding.model, self.chunking)


def default_index_name(model: str, chunking: ChunkingSettings) -> str:
    """e.g. `all-minilm-l6-v2-300-50`; token-sized chunks get a `t` suffix on the size."""
    short = re.sub(r"[^a-z0-9]+", "-", Path(model.rstrip("/")).name.lower()).strip("-")
    unit = "t" if chunking.unit == ChunkUnit.TOKENS else ""
    titles = "" if chunking.include_titles else "-notitles"
    return f"{short}-{chunking.chunk_size}{unit}-{chunking.chunk_overlap}{titles}"


class ConfigFileError(UsageError, ValueError):
    pass


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a YAML file, the environment and nested `overrides` (None values ignored)."""
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigFileError(f"config file not found: {config_file}")
    token = _config_file.set(str(config_file) if config_file is not None else None)
    try:
        return Settings(**_drop_none(overrides))
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"config file {config_file or os.environ.get('DOCENT_CONFIG')} is not valid YAML: {exc}") from exc
    finally:
        _config_file.reset(token)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned
