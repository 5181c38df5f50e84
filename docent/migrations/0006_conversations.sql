-- Conversations live in the answer log: a follow-up is read with the earlier answers of its
-- conversation (kept as long as answers are, and only for the API key that asked them).
ALTER TABLE answers ADD COLUMN conversation_id text;
ALTER TABLE answers ADD COLUMN standalone_question text;
CREATE INDEX answers_conversation ON answers (conversation_id, created_at) WHERE conversation_id IS NOT NULL;
