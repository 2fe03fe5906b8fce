-- gomail schema, version 3: a word index instead of a trigram index for message_fts.
--
-- Why: the trigram index of version 2 made every delivery index ~one entry per character of
-- the message's text (a 2 KB body: ~2,000 trigrams). Measured with 3,000 deliveries of 2 KB
-- messages, 20 at a time (the writer's group commit): ~1,300 deliveries/s with the trigram
-- index against ~8,000/s with no full-text index, which halved SMTP acceptance. A word index
-- (unicode61, ~300 tokens for the same body, column-level detail) takes ~2,800/s, and the
-- database is a third smaller.
--
-- What changes for IMAP SEARCH BODY/TEXT (see SqliteStore.search_text): the index gives the
-- candidate messages from the query's words, each as a prefix term ("word"*), and each
-- candidate is then checked exactly (case-insensitive substring), so there are no false
-- positives. A substring that starts inside a word ("voice" in "invoice") is no longer found,
-- as with Dovecot's FTS plugins and Gmail; a query without word characters ("@", "--") is
-- answered by scanning the folder's message_meta rows.
--
--   * tokenize unicode61 remove_diacritics 2: words are runs of letters and digits; case and
--     diacritics are folded in the index ("café" and "cafe" are one term), which only widens
--     the candidates: the exact check decides;
--   * detail = column: the index records which column a word is in (SEARCH BODY looks in text
--     only) but not its positions: phrase and NEAR queries are unsupported, and not needed
--     since the exact check replaces them. detail = none would be ~5% cheaper to write but
--     cannot restrict to a column;
--   * no prefix indexes: measured on 30,000 messages, prefix = '1 2 3' made indexing 2.8x
--     slower and only sped up one-letter prefix queries (30 ms -> 7 ms), whose candidates (all
--     messages) cost far more to check anyway.

DROP TRIGGER message_meta_insert;
DROP TRIGGER message_meta_delete;
DROP TRIGGER message_meta_update;
DROP TABLE message_fts;

CREATE VIRTUAL TABLE message_fts USING fts5 (
    header_text, text, content = 'message_meta', content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2', detail = column
);

CREATE TRIGGER message_meta_insert AFTER INSERT ON message_meta
BEGIN
    INSERT INTO message_fts (rowid, header_text, text)
    VALUES (NEW.id, NEW.header_text, NEW.text);
END;

CREATE TRIGGER message_meta_delete AFTER DELETE ON message_meta
BEGIN
    INSERT INTO message_fts (message_fts, rowid, header_text, text)
    VALUES ('delete', OLD.id, OLD.header_text, OLD.text);
END;

CREATE TRIGGER message_meta_update AFTER UPDATE OF header_text, text ON message_meta
BEGIN
    INSERT INTO message_fts (message_fts, rowid, header_text, text)
    VALUES ('delete', OLD.id, OLD.header_text, OLD.text);
    INSERT INTO message_fts (rowid, header_text, text)
    VALUES (NEW.id, NEW.header_text, NEW.text);
END;

-- Index the bodies stored before this version.
INSERT INTO message_fts (message_fts) VALUES ('rebuild');
