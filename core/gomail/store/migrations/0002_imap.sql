-- gomail schema, version 2: what the IMAP server needs beyond version 1.
--
--   * mailboxes.recent_from: messages with uid >= recent_from are \Recent (not yet claimed
--     by a session that SELECTed the folder);
--   * message_meta: per body (blob), what FETCH ENVELOPE/BODYSTRUCTURE, SEARCH on headers,
--     SORT and THREAD need, computed by the caller at delivery/append, so that they read no
--     bodies; every copy of a body shares it, and it goes with the blob (trigger below);
--   * message_fts: the full-text index (FTS5, trigram: IMAP SEARCH is a case-insensitive
--     substring match) over message_meta's header_text and text, an external-content table
--     kept by triggers.

ALTER TABLE mailboxes ADD COLUMN recent_from INTEGER NOT NULL DEFAULT 1;

CREATE TABLE message_meta (
    id            INTEGER PRIMARY KEY,     -- the rowid of message_fts
    blob          TEXT NOT NULL UNIQUE,    -- blobs.sha256
    envelope      TEXT,
    bodystructure TEXT,
    body          TEXT,
    part_map      TEXT,
    header_text   TEXT NOT NULL DEFAULT '',
    text          TEXT NOT NULL DEFAULT '',
    subject       TEXT NOT NULL DEFAULT '',
    from_         TEXT NOT NULL DEFAULT '',
    to_           TEXT NOT NULL DEFAULT '',
    cc            TEXT NOT NULL DEFAULT '',
    bcc           TEXT NOT NULL DEFAULT '',
    sort_subject  TEXT NOT NULL DEFAULT '',
    sort_from     TEXT NOT NULL DEFAULT '',
    sort_to       TEXT NOT NULL DEFAULT '',
    sort_cc       TEXT NOT NULL DEFAULT '',
    date          REAL,
    message_id    TEXT NOT NULL DEFAULT '',
    in_reply_to   TEXT NOT NULL DEFAULT '',
    refs          TEXT NOT NULL DEFAULT ''
);

CREATE VIRTUAL TABLE message_fts USING fts5 (
    header_text, text, content = 'message_meta', content_rowid = 'id', tokenize = 'trigram'
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

-- A body's meta goes with the body (blobs_unreferenced deletes the row at refcount 0).
CREATE TRIGGER blobs_delete AFTER DELETE ON blobs
BEGIN
    DELETE FROM message_meta WHERE blob = OLD.sha256;
END;

-- QRESYNC and IDLE ask for the expunges of a folder above a MODSEQ.
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
