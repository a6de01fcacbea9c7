-- Call history: one row per call (the call record Kamailio writes at the call's end), the
-- voicemails and faxes calls left, and the notifications sent about them. `calls` and
-- `recordings` are partitioned by month (routing/records/database.py makes the partitions as
-- rows arrive and drops whole months past the retention setting).

CREATE TABLE calls (
    started_at    timestamptz NOT NULL,
    call_id       text        NOT NULL,   -- ours (X-VO-Call): one per call
    ended_at      timestamptz NOT NULL,
    event_id      text        NOT NULL,   -- its entry in voffice:events
    account       text        NOT NULL,
    number        text        NOT NULL,
    caller        text        NOT NULL,
    status        text        NOT NULL,   -- answered, voicemail, fax, missed, failed
    rule          text        NOT NULL DEFAULT '',
    scenario      text        NOT NULL DEFAULT '',
    steps         jsonb       NOT NULL DEFAULT '[]',
    answered_by   text        NOT NULL DEFAULT '',
    setup_seconds real,
    talk_seconds  real,
    hung_up_by    text        NOT NULL DEFAULT '',
    note          text        NOT NULL DEFAULT '',
    sip_call_id   text        NOT NULL DEFAULT '',
    PRIMARY KEY (started_at, call_id)
) PARTITION BY RANGE (started_at);
CREATE INDEX calls_account ON calls (account, started_at);
CREATE INDEX calls_number ON calls (number, started_at);
CREATE INDEX calls_call_id ON calls (call_id);

CREATE TABLE recordings (
    created_at  timestamptz NOT NULL,
    event_id    text        NOT NULL,
    call_id     text        NOT NULL,
    kind        text        NOT NULL,     -- voicemail, fax
    account     text        NOT NULL,
    number      text        NOT NULL DEFAULT '',
    caller      text        NOT NULL DEFAULT '',
    status      text        NOT NULL,     -- stored, partial, failed
    path        text        NOT NULL DEFAULT '',
    pdf         text        NOT NULL DEFAULT '',
    duration    real,
    pages       integer,
    sha256      text        NOT NULL DEFAULT '',
    bytes       bigint,
    PRIMARY KEY (created_at, event_id)
) PARTITION BY RANGE (created_at);
CREATE INDEX recordings_call ON recordings (call_id);
CREATE INDEX recordings_account ON recordings (account, created_at);

CREATE TABLE deliveries (
    id              bigserial   PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    event_id        text        NOT NULL,
    call_id         text        NOT NULL,
    account         text        NOT NULL,
    kind            text        NOT NULL,   -- voicemail, fax, missed
    channel         text        NOT NULL,   -- email, webhook
    target          text        NOT NULL,   -- the address or URL
    status          text        NOT NULL DEFAULT 'pending',  -- pending, sent, failed
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    event           jsonb       NOT NULL,   -- what the notification is about
    -- one notice per call, kind and target: Kamailio re-sends a batch of records after a
    -- Redis timeout, and a record added twice has two entry ids but one call id
    UNIQUE (call_id, kind, channel, target)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_account ON deliveries (account, created_at);
