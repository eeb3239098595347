-- Batch records are how a gateway on PostgreSQL tells a batch whose commit's acknowledgement was
-- lost from one never written; a SQLite file's commits are in-process and never ambiguous so.
-- The table exists here so both schemas match.
CREATE TABLE credit_batches (
    node_id TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (node_id, first_seq)
);
CREATE INDEX credit_batches_created_at ON credit_batches (created_at);
