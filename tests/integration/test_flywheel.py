"""`docent flywheel report | export` over a real PostgreSQL holding answers and feedback as the gateway logs them.

Each test gets a database of its own (on the session's server), so the answers other tests
log through the gateway do not show up here and counts can be exact.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from docent.db import connect
from docent.settings import Settings
from docent.text import normalise_question
from evaluation.flywheel import FlywheelError, docs_area, parse_since
from evaluation.runner import open_eval_set

pytestmark = pytest.mark.integration

BASE_URL = "https://orbit.example/docs/"
NOW = datetime.now(UTC)

BATCH = "How do I set the batch size in map_batches?"
BATCH_AGAIN = "How do I set the batch size in map_batches"  # the same question, once normalised
DEPLOY = "How do I deploy a model with Serve?"
NIGHT = "What does the scheduler do at night?"
QUANTUM = "Does Orbit support quantum annealing?"
TUNE = "How do I tune hyperparameters?"
CHANGELOG = "Where is the changelog?"
INSTALL = "How do I install Orbit?"
OLD = "Why was the old API removed?"
DRY_RUN = "What does the --dry-run flag do?"


def _url_of_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def fresh_db(database_url):
    """A new, migrated database on the session's server: its URL."""
    name = f"flywheel_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(database_url, f'CREATE DATABASE "{name}"'))
    url = _url_of_database(database_url, name)

    async def migrate():
        await (await connect(Settings(database_url=url))).close()

    asyncio.run(migrate())
    yield url
    asyncio.run(_admin(database_url, f'DROP DATABASE "{name}" WITH (FORCE)'))


def _source(path: str, similarity: float | None, number: int = 1) -> dict:
    """A source as the gateway logs it; similarity None: found by BM25 alone. Its score is a fused rank's."""
    url = path if path.startswith("https://") else BASE_URL + path
    return {"number": number, "source": url, "title": path.rsplit("/", 1)[-1], "score": 1 / (60 + number),
            "similarity": similarity}


def _answer(question: str, sources: list[dict], llm: str = "gpt-4", route_llm: str | None = None,
            fallbacks: list[dict] | None = None, age: timedelta = timedelta(hours=1), text: str = "An answer [1].",
            votes: tuple[tuple[str, str | None], ...] = ()) -> dict:
    """An `answers` row as the gateway writes it, with the feedback given on it."""
    return {
        "id": uuid.uuid4().hex, "created_at": NOW - age, "question": question, "index_name": "orbit",
        "answer": text, "sources": sources,
        "top_score": max((s["similarity"] for s in sources if s["similarity"] is not None), default=None),
        "llm": llm, "route": {"llm": route_llm or llm, "probability_oss": None, "reason": "the configured LLM"},
        "fallbacks": fallbacks or [], "votes": votes,
    }


async def _log(url: str, answers: list[dict]) -> None:
    conn = await asyncpg.connect(url)
    try:
        for a in answers:
            await conn.execute(
                "INSERT INTO answers (id, created_at, question, index_name, answer, sources, top_score, llm, route,"
                " fallbacks, usage, cost, timings_ms)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9::jsonb, $10::jsonb, $11::jsonb, 0.0, $12::jsonb)",
                a["id"], a["created_at"], a["question"], a["index_name"], a["answer"], json.dumps(a["sources"]),
                a["top_score"], a["llm"], json.dumps(a["route"]), json.dumps(a["fallbacks"]),
                json.dumps({"prompt_tokens": 100, "completion_tokens": 20}), json.dumps({"total": 42.0}),
            )
            for voter, (rating, comment) in enumerate(a["votes"]):
                await conn.execute(
                    "INSERT INTO feedback (answer_id, rating, comment, created_at, voter) VALUES ($1, $2, $3, $4, $5)",
                    a["id"], rating, comment, a["created_at"] + timedelta(minutes=1), f"key:user-{voter}",
                )
    finally:
        await conn.close()


def _logged_answers() -> list[dict]:
    return [
        _answer(BATCH, [_source("data/transforming-data.html#batch-size", 0.62),
                        _source("data/api.html#map-batches", 0.55, 2)],
                votes=(("down", "wrong parameter name"), ("down", None)), text="Use the batch_size argument [1]."),
        _answer("how do i set the batch size in MAP_BATCHES", [_source("data/transforming-data.html", 0.7)],
                votes=(("up", None),)),
        _answer(DEPLOY, [_source("serve/deploy.html#models", 0.55)], llm="extractive", route_llm="gpt-4",
                fallbacks=[{"llm": "gpt-4", "reason": "timed out after 30 s"}], age=timedelta(minutes=30)),
        _answer(NIGHT, [_source("cluster/scheduler.html", None)], llm="extractive", route_llm="gpt-4",
                age=timedelta(minutes=20)),  # found by BM25 alone: no top_score, and no low score for that
        _answer(QUANTUM, [], llm="extractive", text="The docs do not say."),
        # Ranked first by BM25 alone, but the most similar source (the best) is the second.
        _answer(TUNE, [_source("guide/cli.html#flags", None), _source("tune/search.html#spaces", 0.12, 2)]),
        _answer(CHANGELOG, [_source("https://elsewhere.example/changes/log.html", 0.2)]),
        _answer(INSTALL, [_source("guide/install.html#pip", 0.8)], votes=(("up", "clear"),)),
        _answer(DRY_RUN, [_source("guide/cli.html#dry-run", None)]),  # BM25 alone: NULL top_score, no problem
        _answer(OLD, [_source("api/client.html", 0.6)], age=timedelta(days=30), votes=(("down", "outdated"),)),
    ]


def _config(tmp_path: Path, **extra) -> Path:
    config = tmp_path / "docent.yaml"
    values = {"rerank": {"base_url": BASE_URL}, "flywheel": {"low_score": 0.3}}
    config.write_text(yaml.safe_dump(values | extra))
    return config


def _docent(url: str, *args: str):
    result = CliRunner().invoke(app, list(args), env={"DATABASE_URL": url})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output + result.stderr
    return result


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_report_ranks_merges_and_groups_the_worst_questions(fresh_db, tmp_path):
    asyncio.run(_log(fresh_db, _logged_answers()))
    out = tmp_path / "report"

    config = _config(tmp_path)
    done = _docent(fresh_db, "--config", str(config), "flywheel", "report", "--since", "7d", "--out", str(out))
    assert done.exit_code == 0, done.stderr

    rows = list(csv.DictReader(io.StringIO((out / "flywheel.csv").read_text())))
    # Score order: 2 down-votes (10), no sources (3), the two fallbacks (2, latest first), the low scores (1).
    assert [r["question"] for r in rows] == [BATCH, QUANTUM, NIGHT, DEPLOY, TUNE, CHANGELOG]
    batch = rows[0]
    assert (batch["area"], batch["score"], batch["problems"]) == ("data", "10", "down-voted ×2")
    counts = (batch["asked"], batch["answers_with_problems"], batch["down_votes"], batch["up_votes"])
    assert counts == ("2", "1", "2", "1")  # the up-vote is on the other, unproblematic answer
    assert batch["comments"] == "wrong parameter name"
    assert batch["best_source"] == f"{BASE_URL}data/transforming-data.html#batch-size"
    assert batch["sources"].split(" | ") == [f"{BASE_URL}data/transforming-data.html#batch-size",
                                             f"{BASE_URL}data/api.html#map-batches"]
    by_question = {r["question"]: r for r in rows}
    assert by_question[QUANTUM]["area"] == "other" and by_question[QUANTUM]["problems"] == "no sources ×1"
    assert by_question[DEPLOY]["problems"] == "fallback ×1" and by_question[DEPLOY]["area"] == "serve"
    assert by_question[DEPLOY]["fallbacks"] == "gpt-4: timed out after 30 s"
    assert by_question[NIGHT]["problems"] == "fallback ×1"  # extractive, though the route chose gpt-4
    tune = by_question[TUNE]
    assert tune["problems"] == "low score ×1" and tune["top_score"] == "0.12"
    # The best source is the most similar one, not the first listed (BM25's): its area, its similarity as top_score.
    assert tune["area"] == "tune" and tune["best_source"] == f"{BASE_URL}tune/search.html#spaces"
    assert tune["source_similarities"] == "bm25 | 0.120"
    assert by_question[NIGHT]["top_score"] == "" and by_question[NIGHT]["source_similarities"] == "bm25"
    assert by_question[CHANGELOG]["area"] == "other"  # its source is not under the docs' base URL

    markdown = (out / "flywheel.md").read_text()
    for area, count in (("data", 1), ("serve", 1), ("cluster", 1), ("tune", 1), ("other", 2)):
        assert f"## {area} ({count} question{'s' if count > 1 else ''})" in markdown
    assert markdown.index("## data") < markdown.index("## other") < markdown.index("## tune")  # worst area first
    assert r"### 1. How do I set the batch size in map\_batches?" in markdown
    assert "asked 2 times (1 with a problem)" in markdown and "votes: 2 down, 1 up" in markdown
    assert "- comment: wrong parameter name" in markdown
    assert f"]({BASE_URL}data/api.html#map-batches) · similarity 0.550 · score 0.01613" in markdown
    assert f"]({BASE_URL}cluster/scheduler.html) · similarity – · score 0.01639" in markdown
    assert "top_score – (every source was found by BM25 alone: no similarity)" in markdown  # NIGHT's answer
    assert "gpt-4 failed: timed out after 30 s" in markdown and "No sources were retrieved." in markdown
    assert INSTALL not in markdown and DRY_RUN not in markdown and OLD not in markdown  # no problem; before --since

    shown = _flat(done.stdout)
    assert "listed the worst 6 of 6 questions" in shown
    summary = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
               for line in done.stdout.splitlines() if line.count("│") > 3}
    # questions, asked, down-voted, no sources, fallback, low score
    assert summary["data"] == ["1", "2", "1", "0", "0", "0"]
    assert summary["other"] == ["2", "2", "0", "1", "0", "1"]
    assert summary["all"] == ["6", "7", "1", "1", "2", "2"]
    assert list(summary).index("other") < list(summary).index("tune")  # worst area first


def test_the_limit_lists_the_worst_and_the_summary_counts_all(fresh_db, tmp_path):
    asyncio.run(_log(fresh_db, _logged_answers()))
    # top_score is a similarity whatever the retrieval mode: the threshold reads the same under hybrid RRF.
    config = _config(tmp_path, retrieval={"mode": "hybrid", "fusion": "rrf"}, flywheel={"low_score": 0.15})
    out = tmp_path / "report"

    done = _docent(fresh_db, "--config", str(config), "flywheel", "report", "--out", str(out), "--limit", "2", "--json")
    assert done.exit_code == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["answers"], summary["questions"], summary["listed"]) == (10, 6, 2)  # OLD is in: no --since
    # TUNE's 0.12 is below 0.15; CHANGELOG's 0.2 no longer is.
    assert summary["kinds"] == {"down_vote": 2, "no_sources": 1, "fallback": 2, "low_score": 1}
    assert summary["low_score"] == 0.15 and "score_note" not in summary
    rows = list(csv.DictReader(io.StringIO((out / "flywheel.csv").read_text())))
    assert [r["question"] for r in rows] == [BATCH, OLD]
    assert CHANGELOG not in (out / "flywheel.md").read_text()


def test_down_voted_questions_export_as_an_eval_set_the_runner_loads(fresh_db, tmp_path):
    asyncio.run(_log(fresh_db, _logged_answers() + [
        _answer(BATCH_AGAIN, [], age=timedelta(minutes=10), votes=(("down", "no sources at all"),)),
    ]))
    target = tmp_path / "flywheel-eval.jsonl"

    done = _docent(fresh_db, "flywheel", "export", "--out", str(target))
    assert done.exit_code == 0, done.stderr
    assert "exported 2 down-voted question(s) (4 down-votes)" in _flat(done.stdout)

    eval_set = open_eval_set(target)  # as `docent eval run --eval FILE` reads it
    # One question per normalised form, in the form asked most often (the latest of equals); no gold source.
    assert [(q.question, q.source) for q in eval_set.questions] == [(BATCH_AGAIN, ""), (OLD, "")]
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    batch = rows[0]["flywheel"]
    assert (batch["gold"], batch["down_votes"], batch["up_votes"], batch["asked"]) == ("unknown", 3, 1, 3)
    assert batch["comments"] == ["wrong parameter name", "no sources at all"]
    assert batch["retrieved_sources"] == []  # of the latest down-voted answer, which had none
    assert len(batch["answer_ids"]) == 2 and "answer" not in rows[0]  # a down-voted answer is no reference

    recent = tmp_path / "recent.jsonl"
    assert _docent(fresh_db, "flywheel", "export", "--since", "7d", "--out", str(recent)).exit_code == 0
    assert [q.question for q in open_eval_set(recent).questions] == [BATCH_AGAIN]


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_the_eval_set_can_go_to_object_storage(fresh_db, s3_server, monkeypatch):
    from pyarrow import fs

    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL": s3_server, "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    client = fs.S3FileSystem(endpoint_override=s3_server, scheme="http", access_key="test", secret_key="test",
                             region="us-east-1", allow_bucket_creation=True)
    bucket = f"evals-{uuid.uuid4().hex[:8]}"
    client.create_dir(bucket)
    asyncio.run(_log(fresh_db, _logged_answers()))

    done = _docent(fresh_db, "flywheel", "export", "--out", f"s3://{bucket}/flywheel/eval.jsonl")
    assert done.exit_code == 0, done.stderr
    with client.open_input_stream(f"{bucket}/flywheel/eval.jsonl") as written:
        questions = [json.loads(line)["question"] for line in written.read().decode().splitlines()]
    assert questions == [BATCH, OLD]

    missing = _docent(fresh_db, "flywheel", "export", "--out", f"s3://no-such-bucket-{bucket}/eval.jsonl")
    assert missing.exit_code == 2 and "cannot write s3://no-such-bucket-" in _flat(missing.stderr)


def test_nothing_to_report_or_export_is_said_and_succeeds(fresh_db, tmp_path):
    out, target = tmp_path / "report", tmp_path / "eval.jsonl"
    empty = _docent(fresh_db, "flywheel", "report", "--out", str(out))
    assert empty.exit_code == 0 and "no answers logged in the whole log" in _flat(empty.stdout)
    assert "No answer in this period has a problem." in (out / "flywheel.md").read_text()

    asyncio.run(_log(fresh_db, [_answer(INSTALL, [_source("guide/install.html#pip", 0.8)])]))
    fine = _docent(fresh_db, "--config", str(_config(tmp_path)), "flywheel", "report", "--out", str(out))
    assert fine.exit_code == 0 and "none of the 1 answers logged in the whole log has a problem" in _flat(fine.stdout)
    assert list(csv.reader(io.StringIO((out / "flywheel.csv").read_text())))[1:] == []

    nothing = _docent(fresh_db, "flywheel", "export", "--since", "2999-01-01", "--out", str(target))
    assert nothing.exit_code == 0 and "no down-voted answers since 2999-01-01 00:00 UTC" in _flat(nothing.stdout)
    assert not target.exists()  # an empty eval set is no eval set: open_eval_set refuses one


def test_bad_input_is_a_clear_error_without_a_traceback(fresh_db, tmp_path):
    unparseable = _docent(fresh_db, "flywheel", "report", "--since", "last tuesday", "--out", str(tmp_path / "r"))
    assert unparseable.exit_code == 2 and "--since 'last tuesday' is not a date" in _flat(unparseable.stderr)

    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    blocked = _docent(fresh_db, "flywheel", "report", "--out", str(a_file))
    assert blocked.exit_code == 2 and f"cannot create the report folder {a_file}" in _flat(blocked.stderr)
    nested = _docent(fresh_db, "flywheel", "report", "--out", str(a_file / "inside"))
    assert nested.exit_code == 2 and "cannot create the report folder" in _flat(nested.stderr)

    no_folder = _docent(fresh_db, "flywheel", "export", "--out", str(tmp_path / "missing" / "eval.jsonl"))
    assert no_folder.exit_code == 2 and f"the folder {tmp_path / 'missing'} does not exist" in _flat(no_folder.stderr)
    a_folder = _docent(fresh_db, "flywheel", "export", "--out", str(tmp_path))
    assert a_folder.exit_code == 2 and "is a folder" in _flat(a_folder.stderr)

    nowhere = "postgresql://docent@127.0.0.1:1/docent"  # nothing listens on port 1
    for command in (("report", "--out", str(tmp_path / "r")), ("export", "--out", str(tmp_path / "e.jsonl"))):
        down = _docent(nowhere, "flywheel", *command)
        assert down.exit_code == 1 and "cannot connect to PostgreSQL at" in _flat(down.stderr), down.stderr
    assert not (tmp_path / "e.jsonl").exists()


def test_dates_areas_and_questions_are_read_as_documented():
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since("2026-03-01T09:30", now) == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert parse_since("2026-03-01T09:30+02:00", now) == datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7) and parse_since("12H", now) == now - timedelta(hours=12)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    for bad in ("yesterday", "2026-13-01", "7 days", ""):
        with pytest.raises(FlywheelError, match="is not a date"):
            parse_since(bad, now)

    assert docs_area(f"{BASE_URL}serve/deploy.html#models", BASE_URL) == "serve"
    assert docs_area(f"{BASE_URL}ray-observability/a/b.html", BASE_URL) == "ray-observability"
    assert docs_area(f"{BASE_URL}index.html#welcome", BASE_URL) == "other"  # a page at the top: no area
    assert docs_area("https://elsewhere.example/serve/x.html", BASE_URL) == "other"
    assert docs_area(None, BASE_URL) == "other"

    assert normalise_question("  How do I use Serve?? ") == normalise_question("how do i use serve")


def test_without_a_base_url_an_area_is_the_first_segment_under_the_site_root():
    assert docs_area("https://docs.example.org/guide/setup/#install", None) == "guide"
    assert docs_area("https://docs.example.org/index.html", None) == "other"
    assert docs_area("guide/setup.md", None) == "other"
