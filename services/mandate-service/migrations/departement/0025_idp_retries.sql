-- Idempotent redemption at the identity provider's token endpoint (issue 21 §1): a client
-- that sends its token request with an `Idempotency-Key` header and retries it (a network
-- error after sending) gets the first answer again, once, within a minute, instead of the
-- replay refusal that revokes the tokens. Stored with the redemption, in its transaction:
-- the key's hash, and the answer sealed with a key derived from the code and the idempotency
-- key, which only the client holds (the database keeps neither).
ALTER TABLE oidc_grants
    ADD COLUMN retry_key_hash bytea,
    ADD COLUMN retry_response bytea;
