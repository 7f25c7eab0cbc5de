-- The aidant's charter (product.md §4.5), versioned: the newest published version is the
-- current one; each acceptance records the version and the time. And activation (§4.6): a
-- habilitation file whose training was attended, with a Pix result and the current charter
-- accepted, opens the aidant's account in its structure, once.

CREATE TABLE charter_versions (
    version      text PRIMARY KEY,
    body         text NOT NULL CHECK (length(btrim(body)) > 0),
    published_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO charter_versions (version, body, published_at) VALUES ('2026-11',
'Je n''agis pour une personne qu''avec son accord, dans le cadre du mandat qu''elle a signé avec ma structure et pour les seules démarches qu''il couvre.
Je ne conserve aucun identifiant ni mot de passe de la personne, et je ne me connecte à ses comptes qu''à travers Aidants Connect.
J''explique à la personne ce que je fais en son nom, je lui rends compte de chaque démarche et je respecte sa décision.
Je garde le secret sur tout ce que j''apprends de la personne et je ne communique ses données qu''aux services concernés par la démarche.
Je garde mon second facteur pour moi seul et je préviens aussitôt le référent de ma structure en cas de perte ou de doute.
Je signale au référent toute situation d''abus, de pression ou de conflit d''intérêts dont j''ai connaissance.',
'2026-11-01');

CREATE TABLE charter_acceptances (
    email       text NOT NULL CHECK (email = lower(email)),
    version     text NOT NULL REFERENCES charter_versions (version),
    accepted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (email, version)
);

-- Single-use links asking a trained aidant to accept the charter (7 days; SHA-256 only).
CREATE TABLE charter_links (
    token_hash  bytea PRIMARY KEY,
    email       text NOT NULL,
    version     text NOT NULL REFERENCES charter_versions (version),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    consumed_at timestamptz
);

CREATE TABLE habilitation_activations (
    file_id         uuid PRIMARY KEY REFERENCES habilitation_file_index (file_id),
    professional_id uuid NOT NULL REFERENCES professionals (id),
    activated_at    timestamptz NOT NULL DEFAULT now(),
    -- The territory's copy (file state, journal) written afterwards; a job completes it.
    synced_at       timestamptz
);
