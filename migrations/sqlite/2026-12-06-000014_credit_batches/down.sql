DROP TABLE credit_batches;
