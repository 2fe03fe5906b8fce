-- gomail schema, version 5: whether the sender of a queued message was told it is delayed.
--
-- The queue runner sends one "Action: delayed" DSN (RFC 3464) per transaction once an entry
-- has waited delivery.delay_notice; the flag is set for every entry of the transaction in the
-- same commit that stores the notice, so a restart never sends it twice.
ALTER TABLE queue ADD COLUMN delay_notified INTEGER NOT NULL DEFAULT 0;
