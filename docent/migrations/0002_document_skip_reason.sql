-- A file that could not be used is recorded with its hash and why, so an unchanged
-- unreadable file is not read again on every run.
ALTER TABLE documents ADD COLUMN skip_reason text;
