-- gomail schema, version 1.
--
-- Conventions: times are Unix epoch seconds (REAL); sizes are bytes; addresses and domains are
-- stored in the canonical form of gomail.address (lower-case IDNA A-label domains).
--
-- Derived values are kept by triggers, so that every writer (delivery, IMAP APPEND/COPY/
-- EXPUNGE/STORE, the queue) keeps them right without thinking about it:
--   * blobs.refcount counts the messages and queue rows that reference a blob; when it falls to
--     zero the blob row goes, and a blob kept as a file is noted in orphan_files so that the
--     store unlinks the file after the commit (see SqliteStore._collect_garbage);
--   * mailboxes.messages / unseen / bytes follow the messages of each folder, so STATUS,
--     unseen counts and quota usage are O(1).

CREATE TABLE domains (
    id      INTEGER PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    domain_id     INTEGER NOT NULL REFERENCES domains (id),
    password_hash TEXT NOT NULL,
    quota         INTEGER,              -- bytes; NULL means unlimited
    created       REAL NOT NULL
);
CREATE INDEX users_domain ON users (domain_id);

-- Administrators of the server (admin web pages, API), not mail accounts.
CREATE TABLE admins (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created       REAL NOT NULL
);

-- One row per (source, target). source is "name@domain" or "@domain" (catch-all).
CREATE TABLE aliases (
    id        INTEGER PRIMARY KEY,
    source    TEXT NOT NULL,
    target    TEXT NOT NULL,
    domain_id INTEGER NOT NULL REFERENCES domains (id),
    UNIQUE (source, target)
);
CREATE INDEX aliases_domain ON aliases (domain_id);

-- IMAP folders. uidnext is the UID the next message gets; highestmodseq is the folder's
-- CONDSTORE MODSEQ counter (every change to a message of the folder takes highestmodseq + 1
-- and stores it in messages.modseq). special_use is the RFC 6154 attribute ("\Sent", ...).
CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    special_use   TEXT,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    subscribed    INTEGER NOT NULL DEFAULT 1,
    messages      INTEGER NOT NULL DEFAULT 0,   -- kept by triggers
    unseen        INTEGER NOT NULL DEFAULT 0,   -- kept by triggers
    bytes         INTEGER NOT NULL DEFAULT 0,   -- kept by triggers
    UNIQUE (user_id, name)
);

-- Content-addressed message bodies: the raw message as delivered. data is NULL when the body
-- is a file under blobs/ab/cdef... (sha256 hex split after two characters).
CREATE TABLE blobs (
    sha256   TEXT PRIMARY KEY,
    size     INTEGER NOT NULL,
    data     BLOB,
    refcount INTEGER NOT NULL DEFAULT 0         -- kept by triggers
);

-- Blob files whose row went away; unlinked (if still unreferenced) after the commit.
CREATE TABLE orphan_files (
    sha256 TEXT PRIMARY KEY
) WITHOUT ROWID;

-- Messages in folders. flags is the IMAP flags and keywords separated by single spaces, in
-- their canonical spelling ("\Seen \Flagged $Forwarded"); seen is derived from it.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    mailbox_id   INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid          INTEGER NOT NULL,
    blob         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    internaldate REAL NOT NULL,
    flags        TEXT NOT NULL DEFAULT '',
    modseq       INTEGER NOT NULL,
    seen         INTEGER GENERATED ALWAYS AS ((' ' || flags || ' ') LIKE '% \Seen %') VIRTUAL,
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);

-- UIDs expunged from a folder and the MODSEQ of the expunge, for QRESYNC (VANISHED).
-- Written by whoever expunges; not by triggers.
CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;

-- The outbound queue: one row per (transaction, remote recipient). state is "queued",
-- "deferred" or "bounced"; a delivered recipient's row is deleted.
CREATE TABLE queue (
    id           INTEGER PRIMARY KEY,
    queue_id     TEXT NOT NULL,                 -- the SMTP transaction's id
    sender       TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    blob         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    created      REAL NOT NULL,
    next_attempt REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL DEFAULT 'queued',
    last_error   TEXT
);
CREATE INDEX queue_due ON queue (state, next_attempt);
CREATE INDEX queue_transaction ON queue (queue_id);

-- Small store-wide values (the last UIDVALIDITY handed out, backups in progress, ...).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;

-- Triggers: blob reference counts.

CREATE TRIGGER blobs_unreferenced AFTER UPDATE OF refcount ON blobs
WHEN NEW.refcount <= 0
BEGIN
    INSERT OR IGNORE INTO orphan_files (sha256) SELECT NEW.sha256 WHERE NEW.data IS NULL;
    DELETE FROM blobs WHERE sha256 = NEW.sha256;
END;

CREATE TRIGGER messages_insert AFTER INSERT ON messages
BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = NEW.blob;
    UPDATE mailboxes
       SET messages = messages + 1, bytes = bytes + NEW.size, unseen = unseen + (NOT NEW.seen)
     WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_delete AFTER DELETE ON messages
BEGIN
    UPDATE mailboxes
       SET messages = messages - 1, bytes = bytes - OLD.size, unseen = unseen - (NOT OLD.seen)
     WHERE id = OLD.mailbox_id;
    UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = OLD.blob;
END;

CREATE TRIGGER messages_flags AFTER UPDATE OF flags ON messages
WHEN OLD.seen != NEW.seen AND OLD.mailbox_id = NEW.mailbox_id AND OLD.size = NEW.size
BEGIN
    UPDATE mailboxes SET unseen = unseen + OLD.seen - NEW.seen WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_move AFTER UPDATE OF mailbox_id, size ON messages
WHEN OLD.mailbox_id != NEW.mailbox_id OR OLD.size != NEW.size
BEGIN
    UPDATE mailboxes
       SET messages = messages - 1, bytes = bytes - OLD.size, unseen = unseen - (NOT OLD.seen)
     WHERE id = OLD.mailbox_id;
    UPDATE mailboxes
       SET messages = messages + 1, bytes = bytes + NEW.size, unseen = unseen + (NOT NEW.seen)
     WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_blob AFTER UPDATE OF blob ON messages
WHEN OLD.blob != NEW.blob
BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = NEW.blob;
    UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = OLD.blob;
END;

-- A folder's messages go before the folder, through the triggers above.
CREATE TRIGGER mailboxes_delete BEFORE DELETE ON mailboxes
BEGIN
    DELETE FROM messages WHERE mailbox_id = OLD.id;
END;

CREATE TRIGGER queue_insert AFTER INSERT ON queue
BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = NEW.blob;
END;

CREATE TRIGGER queue_delete AFTER DELETE ON queue
BEGIN
    UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = OLD.blob;
END;

CREATE TRIGGER queue_blob AFTER UPDATE OF blob ON queue
WHEN OLD.blob != NEW.blob
BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = NEW.blob;
    UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = OLD.blob;
END;
