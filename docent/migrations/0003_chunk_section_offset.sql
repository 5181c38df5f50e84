-- Where each chunk starts in its section's text, so neighbouring chunks can be joined
-- exactly (sentence-window and parent-section retrieval). Chunks written before this
-- migration keep NULL and are joined by their shared text instead.
DO $$
DECLARE
    index_row record;
BEGIN
    FOR index_row IN SELECT id FROM indexes LOOP
        EXECUTE format('ALTER TABLE chunks_%s ADD COLUMN IF NOT EXISTS section_offset integer', index_row.id);
    END LOOP;
END $$;
