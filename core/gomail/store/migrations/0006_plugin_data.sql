-- gomail schema, version 6: small values plugins keep across restarts (Store.plugin_get/put).
--
-- One row per (namespace, key), namespace being the plugin's name: the MTA-STS plugin keeps
-- each domain's policy here (RFC 8461 3.3 asks senders to cache it). expires is a Unix time,
-- NULL for never; an expired row reads as absent.
CREATE TABLE plugin_data (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    updated   REAL NOT NULL,
    expires   REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
