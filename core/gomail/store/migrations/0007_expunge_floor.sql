-- gomail schema, version 7: a bounded expunge history.
--
-- The expunged table keeps, per folder, only the most recent expunges (sqlite.EXPUNGE_HISTORY
-- rows); the write job that adds rows deletes the oldest beyond that. expunge_floor is the
-- highest MODSEQ whose expunges were forgotten (0: none): a client asking for the expunges
-- since a MODSEQ below it gets every UID below UIDNEXT that is not in the folder instead
-- (RFC 7162 3.2.5.2, 3.2.10 allow VANISHED (EARLIER) to name UIDs the client never saw).
ALTER TABLE mailboxes ADD COLUMN expunge_floor INTEGER NOT NULL DEFAULT 0;
