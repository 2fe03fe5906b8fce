-- gomail schema, version 4: the Date header's own calendar day, for SENTBEFORE/SENTON/SENTSINCE.
--
-- message_meta.date is the Date header as Unix time (the true instant, which SORT DATE needs);
-- RFC 3501 has the SENT* search keys compare the date as written in the header, disregarding
-- time and zone, which the UTC date of that instant is not near midnight. sent_day keeps that
-- day as yyyymmdd (NULL when unknown: a bad Date header, or meta stored before this version,
-- for which SEARCH falls back to the UTC date of message_meta.date).
ALTER TABLE message_meta ADD COLUMN sent_day INTEGER;
