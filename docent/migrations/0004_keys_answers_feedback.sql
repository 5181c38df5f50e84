-- API keys (only a hash of each key is stored), every answer the gateway gives, and
-- the feedback on those answers: the data flywheel's raw material.
CREATE TABLE api_keys (
    id           serial PRIMARY KEY,
    name         text NOT NULL,
    prefix       text NOT NULL,               -- the key's public start: finds the row, shown in listings
    key_hash     text NOT NULL,               -- sha256 of the whole key, hex
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
CREATE UNIQUE INDEX api_keys_prefix ON api_keys (prefix);

CREATE TABLE answers (
    id          text PRIMARY KEY,             -- the answer_id clients send with feedback
    created_at  timestamptz NOT NULL DEFAULT now(),
    api_key     text,                         -- name of the key that asked (NULL without auth)
    question    text NOT NULL,
    index_name  text NOT NULL,
    answer      text NOT NULL,
    sources     jsonb NOT NULL,               -- [{number, source, title, score}], without the text
    top_score   double precision,             -- best cosine similarity of question and a source (NULL: none found semantically)
    llm         text NOT NULL,
    route       jsonb NOT NULL,
    fallbacks   jsonb NOT NULL,
    usage       jsonb NOT NULL,
    cost        double precision NOT NULL,
    timings_ms  jsonb NOT NULL,
    cached      boolean NOT NULL DEFAULT false
);
CREATE INDEX answers_created_at ON answers (created_at);

CREATE TABLE feedback (
    id          bigserial PRIMARY KEY,
    answer_id   text NOT NULL REFERENCES answers (id) ON DELETE CASCADE,
    rating      text NOT NULL CHECK (rating IN ('up', 'down')),
    comment     text,
    api_key     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feedback_answer_id ON feedback (answer_id);
