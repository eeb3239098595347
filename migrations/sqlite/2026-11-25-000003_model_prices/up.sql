-- Model prices: credits (in micro-units) per 1,000,000 tokens, or per call / per image.
-- A model without a row here is refused by the gateway, never served for free.
CREATE TABLE model_prices (
    model             TEXT   PRIMARY KEY,
    input_price       BIGINT NOT NULL CHECK (input_price >= 0),
    output_price      BIGINT NOT NULL CHECK (output_price >= 0),
    cache_read_price  BIGINT CHECK (cache_read_price >= 0),
    cache_write_price BIGINT CHECK (cache_write_price >= 0),
    per_request_price BIGINT CHECK (per_request_price >= 0),
    per_image_price   BIGINT CHECK (per_image_price >= 0),
    updated_at        BIGINT NOT NULL
);
