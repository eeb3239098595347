-- Batches of settlements written by a gateway, recorded in the batch's own transaction by the
-- gateway's node id and the batch's first sequence number (`last_seq` its last): a batch written
-- again after its commit's acknowledgement was lost finds its record and is not charged twice.
-- `created_at` is the database's clock (Unix ms); records older than a day are pruned.
CREATE TABLE credit_batches (
    node_id TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (node_id, first_seq)
);
CREATE INDEX credit_batches_created_at ON credit_batches (created_at);
