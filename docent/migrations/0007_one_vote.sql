-- One vote per voter and answer: a new vote replaces the voter's earlier one. The voter is
-- the API key (or, with auth off, the caller's address); earlier rows each count as their own.
ALTER TABLE feedback ADD COLUMN voter text;
UPDATE feedback SET voter = 'row:' || id;
ALTER TABLE feedback ALTER COLUMN voter SET NOT NULL;
CREATE UNIQUE INDEX feedback_one_vote ON feedback (answer_id, voter);
