DROP TABLE credit_leases;
