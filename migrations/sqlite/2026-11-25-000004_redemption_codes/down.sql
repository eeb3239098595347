DROP TABLE redemption_codes;
