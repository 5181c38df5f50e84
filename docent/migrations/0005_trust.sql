-- An index's scope model (docent calibrate): when to say "the docs don't cover this".
CREATE TABLE index_scopes (
    index_id      integer PRIMARY KEY REFERENCES indexes (id) ON DELETE CASCADE,
    model         jsonb NOT NULL,
    calibrated_at timestamptz NOT NULL DEFAULT now()
);

-- Whether an answer abstained, and how many of its citations its sources did not support:
-- the flywheel's signals of answers users may not trust.
ALTER TABLE answers ADD COLUMN abstained boolean NOT NULL DEFAULT false;
ALTER TABLE answers ADD COLUMN unsupported_citations integer NOT NULL DEFAULT 0;
